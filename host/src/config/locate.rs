//! Maps a configuration path (`pipelines[1].sink.token`) to its line and column in the YAML
//! text, so any error found after parsing can point at the spot.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::scanner::TScalarStyle;

/// 1-based line and column.
pub type Pos = (usize, usize);

/// Positions of every mapping key and sequence item, by path; and which scalar values were
/// written plain (unquoted), which `${VAR}` expansion needs to type its result.
#[derive(Debug, Default)]
pub struct Locator {
    positions: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
    plain: HashSet<String>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
    plain: HashSet<String>,
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// Called when a node starts; returns the node's path (None when it is a mapping key).
    fn node_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.positions.entry(p.clone()).or_insert(pos);
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let k = scalar.unwrap_or("?").to_string();
                    let p = child(path, &k);
                    self.positions.entry(p).or_insert(pos);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(child(path, &k)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref v, style, ..) => {
                if let Some(path) = self.node_path(Some(v), mark) {
                    self.values
                        .entry(path.clone())
                        .or_insert((mark.line(), mark.col() + 1));
                    if style == TScalarStyle::Plain {
                        self.plain.insert(path);
                    }
                }
            }
            Event::Alias(_) => {
                let _ = self.node_path(None, mark);
            }
            Event::MappingStart(..) => {
                let path = self.node_path(None, mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(None, mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Locator {
    /// Indexes `text`. A text that does not parse yields an empty index (the YAML parser's
    /// own error already carries a position).
    pub fn new(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        Locator {
            positions: b.positions,
            values: b.values,
            plain: b.plain,
        }
    }

    /// Position of a scalar value itself (not its key), else as [`Locator::find`].
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied().or_else(|| self.find(path))
    }

    /// Whether the scalar at `path` was written without quotes.
    pub fn is_plain(&self, path: &str) -> bool {
        self.plain.contains(path)
    }

    /// Position of the path, or of its closest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        if let Some(i) = p.find('?') {
            p = p[..i].trim_end_matches('.');
        }
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "host:\n  data_dir: x\npipelines:\n  - name: a\n    source: { type: generator, count: 5 }\n  - name: b\n    sink:\n      type: file\n";
        let l = Locator::new(text);
        assert_eq!(l.find("host.data_dir"), Some((2, 3)));
        assert_eq!(l.find("pipelines[0].source.count"), Some((5, 32)));
        assert_eq!(l.find("pipelines[1].name"), Some((6, 5)));
        assert_eq!(l.find("pipelines[1].sink.type"), Some((8, 7)));
        // Unknown sub-path falls back to the closest ancestor.
        assert_eq!(l.find("pipelines[1].sink.nope"), Some((7, 5)));
        assert_eq!(l.value("pipelines[1].sink.type"), Some((8, 13)));
        assert!(l.is_plain("pipelines[1].sink.type"));
        assert!(!Locator::new("a: \"x\"\n").is_plain("a"));
    }
}
