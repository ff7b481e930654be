//! Config: read YAML, check everything, report every error with its place.
//!
//! `raw` is the file as serde reads it; `validate` turns it into
//! `settings`; `position` lets errors found after parsing still name
//! `FILE:LINE:COL`; `reload` watches for changes.

pub mod duration;
pub mod position;
pub mod raw;
pub mod reload;
pub mod settings;
mod validate;

use std::fmt;
use std::path::Path;

pub use settings::Settings;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<inline>`).
    pub file: String,
    /// 1-based line and column where known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.file, line, col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError { file: name.clone(), position: None, message: format!("cannot read: {e}") }])
    })?;
    let mut settings = parse(&text, &name)?;
    settings.path = Some(path.to_path_buf());
    Ok(settings)
}

/// Parses and validates config text; `name` is used in messages.
pub fn parse(text: &str, name: &str) -> Result<Settings, ConfigErrors> {
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| {
        let position = e.location().map(|l| (l.line(), l.column()));
        ConfigErrors(vec![ConfigError { file: name.to_owned(), position, message: strip_location(&e.to_string()) }])
    })?;
    let positions = position::Positions::index(text);
    validate::validate(raw, name, &positions)
}

/// serde_yaml appends " at line L column C" to its messages; the position
/// is already in front, so drop the tail.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown field is reported with the file, line and column of the
    /// field, and names the field.
    #[test]
    fn unknown_field_has_position() {
        let text = "listeners:\n  - name: a\n    address: 127.0.0.1:0\n    bogus: 1\nclusters: []\n";
        let errs = parse(text, "x.yaml").unwrap_err();
        assert_eq!(errs.0.len(), 1);
        let e = &errs.0[0];
        assert_eq!(e.position.map(|p| p.0), Some(4));
        assert!(e.message.contains("bogus"), "{e}");
        assert!(e.to_string().starts_with("x.yaml:4:"), "{e}");
    }

    /// Semantic errors are all reported at once, each at its place.
    #[test]
    fn all_semantic_errors_at_once() {
        let text = "\
listeners:
  - name: a
    address: 127.0.0.1:0
    routes:
      - name: r
        cluster: missing
      - name: r
        cluster: c
        match: {path_regex: '('}
clusters:
  - name: c
    endpoints: [not-an-address]
  - name: c
    endpoints: []
";
        let errs = parse(text, "x.yaml").unwrap_err();
        let all = errs.to_string();
        assert!(all.contains("x.yaml:6:18: route \"r\" names cluster \"missing\""), "{all}");
        assert!(all.contains("duplicate route name \"r\""), "{all}");
        assert!(all.contains("path_regex"), "{all}");
        assert!(all.contains("not-an-address"), "{all}");
        assert!(all.contains("duplicate cluster name \"c\""), "{all}");
        assert!(all.contains("no endpoints"), "{all}");
        assert!(errs.0.len() >= 6, "{all}");
    }

    /// A cluster's connection keeping: defaults, explicit values, and a
    /// zero idle_timeout refused at its place.
    #[test]
    fn cluster_idle_connection_settings() {
        let cluster = |extra: &str| format!("clusters:\n  - name: c\n    endpoints: [127.0.0.1:1]\n{extra}");
        let s = parse(&cluster(""), "x.yaml").unwrap();
        assert_eq!(s.clusters[0].idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!(s.clusters[0].max_idle_connections, None);
        let s = parse(&cluster("    idle_timeout: 5s\n    max_idle_connections: 8\n"), "x.yaml").unwrap();
        assert_eq!(s.clusters[0].idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(s.clusters[0].max_idle_connections, Some(8));
        let errs = parse(&cluster("    idle_timeout: 0s\n"), "x.yaml").unwrap_err();
        assert!(errs.to_string().contains("x.yaml:4:"), "{errs}");
        assert!(errs.to_string().contains("idle_timeout must be greater than zero"), "{errs}");
    }

    /// A duration without a unit is refused with a hint.
    #[test]
    fn duration_needs_unit() {
        let text = "drain_timeout: 10\n";
        let errs = parse(text, "x.yaml").unwrap_err();
        assert!(errs.to_string().contains("no unit"), "{errs}");
        assert_eq!(errs.0[0].position.map(|p| p.0), Some(1));
    }
}
