//! tracing setup: human or JSON lines, level from `RUST_LOG` (default info).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    #[default]
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    // Colours only for a person at a terminal, never in files or pipelines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(fmt).try_init();
}

/// The filter `RUST_LOG` asks for (`info` when unset, empty or invalid).
/// A bare level (`warn`, what a sidecar is usually given) is a plain
/// [`LevelFilter`], which means the same as the `EnvFilter` of that level
/// without parsing directives at startup (its parser's code and regular
/// expressions stay out of memory: about 0.15 MiB of RSS).
fn filter(spec: Option<&str>) -> Box<dyn Layer<Registry> + Send + Sync> {
    let spec = spec.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("info");
    if let Ok(level) = spec.parse::<LevelFilter>() {
        return level.boxed();
    }
    EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info")).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare level, in any case or as a number, is a level; anything
    /// naming a target or a span is an `EnvFilter` (as before), and an
    /// unset or unparsable `RUST_LOG` means `info`.
    #[test]
    fn rust_log_specs() {
        let is_level = |spec: Option<&str>, want: LevelFilter| {
            let f = filter(spec);
            assert_eq!(f.max_level_hint(), Some(want), "{spec:?}");
        };
        is_level(None, LevelFilter::INFO);
        is_level(Some(""), LevelFilter::INFO);
        is_level(Some("warn"), LevelFilter::WARN);
        is_level(Some("DEBUG"), LevelFilter::DEBUG);
        is_level(Some("off"), LevelFilter::OFF);
        is_level(Some("5"), LevelFilter::TRACE);
        is_level(Some("not a [valid spec"), LevelFilter::INFO);
        // Directives keep EnvFilter's meaning: the most verbose one bounds it.
        is_level(Some("info,outrigger::access=off"), LevelFilter::INFO);
        is_level(Some("warn,outrigger=debug"), LevelFilter::DEBUG);
    }
}
