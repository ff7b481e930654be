//! Where each value of a YAML document stands, so that errors found after
//! parsing (a route naming a missing cluster, a duplicate name) can still
//! point at `FILE:LINE:COL`.
//!
//! serde_yaml reports positions only for its own errors, so the document is
//! read once more as a stream of marked events and every node's path
//! (`listeners.0.routes.1.cluster`) is recorded with its marker.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Paths of a document's nodes to their 1-based line and column.
#[derive(Debug, Default)]
pub struct Positions {
    at: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    at: HashMap<String, (usize, usize)>,
}

impl Recorder {
    /// The path of the node that starts now, advancing its parent.
    fn next_path(&mut self, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = join(path, &index.to_string());
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key: remember it; it has no path itself.
                    *key = Some(scalar.unwrap_or("?").to_owned());
                    let p = join(path, scalar.unwrap_or("?"));
                    // Record the key's own position too, for unknown fields.
                    Some(format!("{p}#key"))
                }
            },
        }
    }
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_owned()
    } else {
        format!("{base}.{seg}")
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(p) = self.next_path(Some(&value)) {
                    self.at.entry(p).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_path(Some("*")) {
                    self.at.entry(p).or_insert(pos);
                }
            }
            Event::SequenceStart(..) => {
                let path = self.next_path(None).unwrap_or_default();
                self.at.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.next_path(None).unwrap_or_default();
                self.at.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Indexes `text`; a document that does not parse yields an empty index
    /// (serde_yaml reports that error with its own position).
    pub fn index(text: &str) -> Self {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut rec, false).is_err() {
            return Positions::default();
        }
        Positions { at: rec.at }
    }

    /// The position of the node at `path`, or of its nearest ancestor.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(at) = self.at.get(p) {
                return Some(*at);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.at.get("").copied(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nested keys and list items resolve to the line and column where
    /// their value starts.
    #[test]
    fn finds_nested_values() {
        let doc = "listeners:\n  - name: a\n    routes:\n      - cluster: nope\n";
        let p = Positions::index(doc);
        assert_eq!(p.find("listeners.0.routes.0.cluster"), Some((4, 18)));
        assert_eq!(p.find("listeners.0.name"), Some((2, 11)));
        // Unknown child falls back to its parent.
        assert_eq!(p.find("listeners.0.name.x"), Some((2, 11)));
    }
}
