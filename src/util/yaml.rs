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

/// What kind of problem a [`YamlIssue`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YamlIssueKind {
    /// The text is not valid YAML; nothing could be read.
    Syntax,
    /// A key appears twice in one map. Not fatal: the first value is kept.
    DuplicateKey,
    /// A map key that is not a scalar, usually an unquoted `{{ … }}`.
    ComplexKey,
    /// More than one YAML document (`---`) in the file.
    MultipleDocuments,
    /// No document at all.
    Empty,
}

/// A problem found while reading YAML, with the field path where it was
/// found (e.g. `phases[0].steps[1].action`) and a hint where one helps.
#[derive(Clone, Debug)]
pub struct YamlIssue {
    /// The kind of problem.
    pub kind: YamlIssueKind,
    /// Where it is.
    pub pos: Pos,
    /// The field path, empty at the top or when unknown.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl YamlIssue {
    /// True when the node tree is still usable despite this problem.
    pub fn is_fatal(&self) -> bool {
        self.kind != YamlIssueKind::DuplicateKey
    }
}

struct Builder<'t> {
    lines: Vec<&'t str>,
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    issues: Vec<YamlIssue>,
    documents: usize,
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Builder {
            lines: text.lines().collect(),
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            issues: Vec::new(),
            documents: 0,
        }
    }

    /// The field path of the node being built (the innermost open map or
    /// list, plus its pending key or next index).
    fn path(&self) -> String {
        let mut out = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq(_, _, items) => out.push_str(&format!("[{}]", items.len())),
                Frame::Map(_, _, _, Some(k)) => {
                    out = join_path(&out, k.as_str().unwrap_or_default());
                }
                Frame::Map(_, _, _, None) => {}
            }
        }
        out
    }

    fn text_at(&self, pos: Pos) -> &str {
        self.lines
            .get(pos.line.wrapping_sub(1))
            .and_then(|l| l.get(pos.column.saturating_sub(1)..))
            .unwrap_or_default()
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let path = self.path();
        let complex_at = match self.stack.last() {
            Some(Frame::Map(map_pos, _, _, None)) if node.as_str().is_none() => Some(*map_pos),
            _ => None,
        };
        if let Some(map_pos) = complex_at {
            let braces = self.text_at(map_pos).starts_with("{{");
            let (pos, message, hint) = if braces {
                let end = self.text_at(map_pos).find("}}").map_or(0, |i| i + 2);
                let expr = self.text_at(map_pos)[..end].to_string();
                (
                    map_pos,
                    format!("`{expr}` at the start of a value is read as a YAML map, not as text"),
                    format!("quote the whole value, e.g. `'{expr}'`"),
                )
            } else {
                (
                    node.pos,
                    "a map key must be a scalar".to_string(),
                    "quote values that start with `{` or `[`".to_string(),
                )
            };
            self.issues.push(YamlIssue {
                kind: YamlIssueKind::ComplexKey,
                pos,
                field: path.clone(),
                message,
                hint: Some(hint),
            });
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(map_pos, _, entries, key)) => match key.take() {
                None => {
                    // yaml-rust2 marks a block map at the `:` of its first
                    // key; the map starts at the key itself
                    if entries.is_empty() && node.pos < *map_pos {
                        *map_pos = node.pos;
                    }
                    if let Some(k) = node.as_str() {
                        if let Some((first, _)) =
                            entries.iter().find(|(e, _)| e.as_str() == Some(k))
                        {
                            self.issues.push(YamlIssue {
                                kind: YamlIssueKind::DuplicateKey,
                                pos: node.pos,
                                field: join_path(&path, k),
                                message: format!("duplicate key `{k}`"),
                                hint: Some(format!(
                                    "`{k}` is already given on line {}; keep only one of them",
                                    first.pos.line
                                )),
                            });
                        }
                    }
                    *key = Some(node);
                }
                Some(k) => {
                    // a repeated key keeps its first value
                    let repeated = k
                        .as_str()
                        .is_some_and(|ks| entries.iter().any(|(e, _)| e.as_str() == Some(ks)));
                    if !repeated {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
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

/// A hint for a syntax error message of the YAML scanner.
fn syntax_hint(message: &str) -> String {
    if message.contains("tab") {
        "indent with spaces; YAML does not allow tabs for indentation".into()
    } else if message.contains("mapping values are not allowed") {
        "a plain value cannot contain `: `; quote the value, or check the indentation of this line"
            .into()
    } else if message.contains("block") || message.contains("indentation") {
        "check that this line is indented like its siblings".into()
    } else if message.contains("flow") || message.contains("did not find expected") {
        "check for an unclosed `[`, `{` or quote; values that start with `{`, `[`, `*`, `&` or `:` must be quoted".into()
    } else {
        "check indentation, and quote values that start with `{`, `*`, `&` or `:`".into()
    }
}

/// Parses the first YAML document of `text`, reporting every problem found.
/// The node tree is returned unless a problem is fatal
/// ([`YamlIssue::is_fatal`]); duplicate keys keep their first value.
pub fn parse_checked(text: &str) -> (Option<Node>, Vec<YamlIssue>) {
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let mut pos = pos_of(e.marker());
        let message = e.info().to_string();
        if message.contains("tab") {
            // point at the tab itself, not after it
            if let Some(i) = builder
                .lines
                .get(pos.line.wrapping_sub(1))
                .and_then(|l| l.find('\t'))
            {
                pos.column = i + 1;
            }
        }
        return (
            None,
            vec![YamlIssue {
                kind: YamlIssueKind::Syntax,
                pos,
                field: String::new(),
                hint: Some(syntax_hint(&message)),
                message,
            }],
        );
    }
    let mut issues = std::mem::take(&mut builder.issues);
    if builder.documents > 1 {
        issues.push(YamlIssue {
            kind: YamlIssueKind::MultipleDocuments,
            pos: Pos { line: 1, column: 1 },
            field: String::new(),
            message: "the file holds several YAML documents (`---`); a component is one document"
                .into(),
            hint: Some("split it into one file per component".into()),
        });
    }
    if builder.root.is_none() {
        issues.push(YamlIssue {
            kind: YamlIssueKind::Empty,
            pos: Pos { line: 1, column: 1 },
            field: String::new(),
            message: "the document is empty".into(),
            hint: None,
        });
    }
    if issues.iter().any(YamlIssue::is_fatal) {
        (None, issues)
    } else {
        (builder.root, issues)
    }
}

/// Parses the first YAML document of `text` into a node tree. Any problem,
/// duplicate keys included, is an error (the first one found).
pub fn parse(text: &str) -> Result<Node, YamlError> {
    match parse_checked(text) {
        (Some(root), issues) if issues.is_empty() => Ok(root),
        (_, issues) => {
            let first = issues
                .into_iter()
                .min_by_key(|i| i.pos)
                .expect("a failed parse reports a problem");
            Err(YamlError {
                pos: first.pos,
                message: first.message,
            })
        }
    }
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
