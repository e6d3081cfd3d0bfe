//! A YAML reader that keeps what AWSTOE documents need and serde drops:
//! the raw text of every scalar (`0777` stays `"0777"`, `1.0` stays `"1.0"`)
//! and the line and column of every node, so errors can point at them.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source text, both 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Unquoted.
    Plain,
    /// Single- or double-quoted.
    Quoted,
    /// A `|` or `>` block.
    Block,
}

/// A YAML node with its position.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: Value,
}

/// The content of a node.
#[derive(Clone, Debug)]
pub enum Value {
    /// A scalar, as written (after YAML unquoting and unescaping).
    Scalar(String, ScalarStyle),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct YamlError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it found wrong.
    pub message: String,
}

impl Node {
    /// Builds a plain scalar node (used for values computed at run time).
    pub fn scalar(text: impl Into<String>, pos: Pos) -> Node {
        Node {
            pos,
            value: Value::Scalar(text.into(), ScalarStyle::Quoted),
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// True for an explicit or implicit YAML null (`~`, `null`, or nothing).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, ScalarStyle::Plain)
            if s.is_empty() || s == "~" || s == "null" || s == "Null" || s == "NULL")
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A word for the node's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing (null)",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// Converts to JSON, every scalar as a string (null stays null).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            _ if self.is_null() => serde_json::Value::Null,
            Value::Scalar(s, _) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Builds a node tree from JSON; scalars become their text.
    pub fn from_json(value: &serde_json::Value, pos: Pos) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Scalar(String::new(), ScalarStyle::Plain),
            serde_json::Value::String(s) => Value::Scalar(s.clone(), ScalarStyle::Quoted),
            serde_json::Value::Bool(b) => Value::Scalar(b.to_string(), ScalarStyle::Plain),
            serde_json::Value::Number(n) => Value::Scalar(n.to_string(), ScalarStyle::Plain),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(|v| Node::from_json(v, pos)).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (Node::scalar(k.clone(), pos), Node::from_json(v, pos)))
                    .collect(),
            ),
        };
        Node { pos, value }
    }
}

fn pos_of(mark: &Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
    documents: usize,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, key)) => match key.take() {
                None => {
                    if let Some(k) = node.as_str() {
                        if self.error.is_none()
                            && entries.iter().any(|(e, _)| e.as_str() == Some(k))
                        {
                            self.error = Some(YamlError {
                                pos: node.pos,
                                message: format!("duplicate key `{k}` in a map"),
                            });
                        }
                    } else if self.error.is_none() {
                        self.error = Some(YamlError {
                            pos: node.pos,
                            message: "a map key must be a scalar".into(),
                        });
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(&mark);
        match ev {
            Event::DocumentStart => self.documents += 1,
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    TScalarStyle::Plain => ScalarStyle::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => ScalarStyle::Quoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => ScalarStyle::Block,
                };
                self.push_node(
                    Node {
                        pos,
                        value: Value::Scalar(text, style),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(pos, anchor, items)) => (
                        Node {
                            pos,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map(pos, anchor, entries, _)) => (
                        Node {
                            pos,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    pos,
                    value: Value::Scalar(String::new(), ScalarStyle::Plain),
                });
                self.push_node(node, 0);
            }
            _ => {}
        }
    }
}

/// Parses the first YAML document of `text` into a node tree.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(YamlError {
            pos: pos_of(m),
            message: e.info().to_string(),
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    if builder.documents > 1 {
        return Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: "the file holds several YAML documents (`---`); a component is one document"
                .into(),
        });
    }
    builder.root.ok_or(YamlError {
        pos: Pos { line: 1, column: 1 },
        message: "the document is empty".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_scalar_text_and_positions() {
        let n = parse("a: 0777\nb:\n  - 1.0\n  - 'x'\nc: |\n  line\n").unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.as_str(), Some("0777"));
        assert_eq!(a.pos, Pos { line: 1, column: 4 });
        let b = n.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[0].as_str(), Some("1.0"));
        assert_eq!(b[1].pos, Pos { line: 4, column: 5 });
        assert_eq!(n.get("c").unwrap().as_str(), Some("line\n"));
    }

    #[test]
    fn reports_duplicate_keys_and_syntax_errors() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{e}");
        assert_eq!(e.pos.line, 2);
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.pos.line >= 1);
    }

    #[test]
    fn nulls_and_aliases() {
        let n = parse("a:\nb: ~\nc: &x [1]\nd: *x\n").unwrap();
        assert!(n.get("a").unwrap().is_null());
        assert!(n.get("b").unwrap().is_null());
        assert_eq!(n.get("d").unwrap().as_seq().unwrap().len(), 1);
    }
}
