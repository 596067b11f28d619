//! Maps field paths of a YAML document (`axes.data_fraction[2]`) to the line and
//! column where that node starts, so validation errors can point into the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

/// Field path → location of the node's value, built from the YAML event stream.
#[derive(Debug, Default)]
pub(crate) struct LocationIndex {
    by_path: HashMap<String, Location>,
}

enum Frame {
    Mapping { path: String, pending_key: Option<String> },
    Sequence { path: String, next_index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    index: LocationIndex,
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

impl Builder {
    /// The path of a value node that starts now, advancing the parent frame.
    /// Returns `None` when the node is a mapping key, not a value.
    fn value_path(&mut self, scalar_key: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next_index }) => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                Some(item)
            }
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(join_key(path, &key)),
                None => {
                    *pending_key = Some(scalar_key.unwrap_or("<complex key>").to_string());
                    None
                }
            },
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        if path.is_empty() {
            // The document itself is reported at 1:1, where people look first.
            return;
        }
        let location = Location { line: mark.line(), column: mark.col() + 1 };
        self.index.by_path.entry(path.to_string()).or_insert(location);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                if let Some(path) = self.value_path(Some(&value)) {
                    self.record(&path, mark);
                }
            }
            Event::Alias(..) => {
                if let Some(path) = self.value_path(None) {
                    self.record(&path, mark);
                }
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(None).unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Sequence { path, next_index: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.value_path(None).unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Mapping { path, pending_key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl LocationIndex {
    /// Index a YAML document. A document that does not parse yields an empty
    /// index: serde reports the syntax error with its own location.
    pub(crate) fn build(source: &str) -> Self {
        let mut builder = Builder { stack: Vec::new(), index: LocationIndex::default() };
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut builder, false).is_err() {
            return LocationIndex::default();
        }
        builder.index
    }

    /// The location of `path`, or of its nearest ancestor that is in the file
    /// (a missing field is reported where its parent mapping starts).
    pub(crate) fn locate(&self, path: &str) -> Location {
        let mut candidate = path.to_string();
        loop {
            if let Some(location) = self.by_path.get(&candidate) {
                return *location;
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate.truncate(cut),
                None => break,
            }
        }
        self.by_path.get("").copied().unwrap_or(Location { line: 1, column: 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\naxes:\n  modulus: [7, 11]\n  seed:\n    - 1\n    - 2\ntraining:\n  lr: 0.001\n";

    #[test]
    fn locates_scalars_sequences_and_flow_items() {
        let index = LocationIndex::build(DOC);
        assert_eq!(index.locate("name"), Location { line: 1, column: 7 });
        assert_eq!(index.locate("axes.modulus"), Location { line: 3, column: 12 });
        assert_eq!(index.locate("axes.modulus[1]"), Location { line: 3, column: 16 });
        assert_eq!(index.locate("axes.seed[1]"), Location { line: 6, column: 7 });
        assert_eq!(index.locate("training.lr"), Location { line: 8, column: 7 });
    }

    #[test]
    fn missing_path_falls_back_to_nearest_ancestor() {
        let index = LocationIndex::build(DOC);
        assert_eq!(index.locate("training.epochs"), index.locate("training"));
        assert_eq!(index.locate("nothing.here"), Location { line: 1, column: 1 });
    }
}
