//! A YAML reader that keeps what AWSTOE documents need and serde drops:
//! the raw text of every scalar (`0777` stays `"0777"`, `1.0` stays `"1.0"`)
//! and the line and column of every node, so errors can point at them.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
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

/// The most nodes a YAML file may hold once its aliases are expanded (an
/// alias counts every node it copies, an anchor the copy kept of its node).
pub const MAX_NODES: usize = 1_000_000;
/// The most nodes the aliases of one file may copy in all: far more than
/// any real document needs, far less than a "billion laughs" bomb makes.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// The most bytes of scalar text a file may hold once its aliases are expanded.
pub const MAX_TEXT_BYTES: usize = 64 << 20;
/// The deepest nesting of lists and maps (aliases expanded).
pub const MAX_DEPTH: usize = 128;
/// The most problems one parse reports; the rest are left out.
pub const MAX_ISSUES: usize = 100;

/// The size of a node and everything in it.
#[derive(Clone, Copy, Debug, Default)]
struct Extent {
    /// Nodes, the node itself included.
    nodes: usize,
    /// Bytes of scalar text.
    bytes: usize,
    /// Levels of lists and maps (0 for a scalar).
    height: usize,
}

enum Body {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        /// The key whose value comes next.
        key: Option<Node>,
        /// The scalar keys already in `entries`, with where they are.
        seen: HashMap<String, Pos>,
    },
}

/// A list or map being read.
struct Frame {
    pos: Pos,
    anchor: usize,
    extent: Extent,
    body: Body,
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
    /// The document is too large or too deep once its aliases are expanded
    /// ([`MAX_NODES`], [`MAX_ALIAS_NODES`], [`MAX_TEXT_BYTES`],
    /// [`MAX_DEPTH`]); reading stopped there.
    Limit,
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
    text: &'t str,
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, (Node, Extent)>,
    issues: Vec<YamlIssue>,
    documents: usize,
    /// Nodes and text made so far, copies included.
    total: Extent,
    /// Nodes copied by aliases so far.
    aliased: usize,
    /// Set when a limit is reached: reading stops.
    stopped: bool,
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

const ALIAS_HINT: &str =
    "an alias (`*name`) copies the whole node its anchor (`&name`) names; write the values out instead of nesting aliases of aliases";

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Builder {
            text,
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            issues: Vec::new(),
            documents: 0,
            total: Extent::default(),
            aliased: 0,
            stopped: false,
        }
    }

    /// Records a problem (at most [`MAX_ISSUES`]).
    fn issue(&mut self, issue: YamlIssue) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(issue);
        }
    }

    /// Records a limit that was reached and stops reading.
    fn limit(&mut self, pos: Pos, message: String, hint: &str) {
        let field = self.path();
        self.issues.push(YamlIssue {
            kind: YamlIssueKind::Limit,
            pos,
            field,
            message,
            hint: Some(hint.to_string()),
        });
        self.stopped = true;
    }

    /// Accounts for `extent` more nodes and text; false (and stopped) past
    /// a limit. `alias` says the nodes are an alias's copy.
    fn grow(&mut self, extent: Extent, pos: Pos, alias: bool) -> bool {
        let what = if alias { "this alias makes " } else { "" };
        self.total.nodes = self.total.nodes.saturating_add(extent.nodes);
        self.total.bytes = self.total.bytes.saturating_add(extent.bytes);
        if alias {
            self.aliased = self.aliased.saturating_add(extent.nodes);
            if self.aliased > MAX_ALIAS_NODES {
                self.limit(
                    pos,
                    format!("this alias makes the aliases of the document copy more than {MAX_ALIAS_NODES} nodes (a YAML alias bomb?)"),
                    ALIAS_HINT,
                );
                return false;
            }
        }
        let hint = if alias {
            ALIAS_HINT
        } else {
            "split the file; documents, recipes and pipelines are far smaller than this"
        };
        if self.total.nodes > MAX_NODES {
            self.limit(
                pos,
                format!("{what}the document hold more than {MAX_NODES} YAML nodes"),
                hint,
            );
            return false;
        }
        if self.total.bytes > MAX_TEXT_BYTES {
            self.limit(
                pos,
                format!(
                    "{what}the document hold more than {} MiB of text",
                    MAX_TEXT_BYTES >> 20
                ),
                hint,
            );
            return false;
        }
        true
    }

    /// False (and stopped) when a node `height` levels high cannot be
    /// placed at the current depth.
    fn fits(&mut self, height: usize, pos: Pos) -> bool {
        if self.stack.len() + height > MAX_DEPTH {
            self.limit(
                pos,
                format!("lists and maps are nested more than {MAX_DEPTH} levels deep here"),
                "flatten the structure; no kiln file needs this much nesting",
            );
            return false;
        }
        true
    }

    /// The field path of the node being built (the innermost open map or
    /// list, plus its pending key or next index).
    fn path(&self) -> String {
        let mut out = String::new();
        for frame in &self.stack {
            match &frame.body {
                Body::Seq(items) => out.push_str(&format!("[{}]", items.len())),
                Body::Map { key: Some(k), .. } => {
                    out = join_path(&out, k.as_str().unwrap_or_default());
                }
                Body::Map { key: None, .. } => {}
            }
        }
        out
    }

    /// Line `line` (1-based) of the text.
    fn line(&self, line: usize) -> Option<&'t str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    fn text_at(&self, pos: Pos) -> &'t str {
        self.line(pos.line)
            .and_then(|l| l.get(pos.column.saturating_sub(1)..))
            .unwrap_or_default()
    }

    /// The problem of a map key that is not a scalar, at the map `map_pos`.
    fn complex_key(&self, node: &Node, map_pos: Pos) -> YamlIssue {
        let at = self.text_at(map_pos);
        let (pos, message, hint) = if at.starts_with("{{") {
            let end = at.find("}}").map_or(0, |i| i + 2);
            let expr = &at[..end];
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
        YamlIssue {
            kind: YamlIssueKind::ComplexKey,
            pos,
            field: self.path(),
            message,
            hint: Some(hint),
        }
    }

    fn push_node(&mut self, node: Node, extent: Extent, anchor: usize) {
        if anchor > 0 {
            // the copy kept for aliases costs as much as the node
            if !self.grow(extent, node.pos, false) {
                return;
            }
            self.anchors.insert(anchor, (node.clone(), extent));
        }
        let complex_at = match self.stack.last() {
            Some(Frame {
                pos,
                body: Body::Map { key: None, .. },
                ..
            }) if node.as_str().is_none() => Some(*pos),
            _ => None,
        };
        if let Some(map_pos) = complex_at {
            let issue = self.complex_key(&node, map_pos);
            self.issue(issue);
        }
        let duplicate = match self.stack.last() {
            Some(Frame {
                body: Body::Map {
                    key: None, seen, ..
                },
                ..
            }) => node
                .as_str()
                .and_then(|k| seen.get(k).map(|first| (k, first.line))),
            _ => None,
        };
        if let Some((k, first_line)) = duplicate {
            let issue = YamlIssue {
                kind: YamlIssueKind::DuplicateKey,
                pos: node.pos,
                field: join_path(&self.path(), k),
                message: format!("duplicate key `{k}`"),
                hint: Some(format!(
                    "`{k}` is already given on line {first_line}; keep only one of them"
                )),
            };
            self.issue(issue);
        }
        let Some(frame) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        frame.extent.nodes = frame.extent.nodes.saturating_add(extent.nodes);
        frame.extent.bytes = frame.extent.bytes.saturating_add(extent.bytes);
        frame.extent.height = frame.extent.height.max(extent.height + 1);
        match &mut frame.body {
            Body::Seq(items) => items.push(node),
            Body::Map { entries, key, seen } => match key.take() {
                None => {
                    // yaml-rust2 marks a block map at the `:` of its first
                    // key; the map starts at the key itself
                    if entries.is_empty() && node.pos < frame.pos {
                        frame.pos = node.pos;
                    }
                    *key = Some(node);
                }
                // a repeated key keeps its first value
                Some(k) => match k.as_str() {
                    Some(ks) if seen.contains_key(ks) => {}
                    Some(ks) => {
                        seen.insert(ks.to_string(), k.pos);
                        entries.push((k, node));
                    }
                    None => entries.push((k, node)),
                },
            },
        }
    }

    fn open(&mut self, pos: Pos, anchor: usize, body: Body) {
        let one = Extent {
            nodes: 1,
            bytes: 0,
            height: 1,
        };
        if self.fits(1, pos) && self.grow(one, pos, false) {
            self.stack.push(Frame {
                pos,
                anchor,
                extent: one,
                body,
            });
        }
    }

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
                let extent = Extent {
                    nodes: 1,
                    bytes: text.len(),
                    height: 0,
                };
                if self.grow(extent, pos, false) {
                    let node = Node {
                        pos,
                        value: Value::Scalar(text, style),
                    };
                    self.push_node(node, extent, anchor);
                }
            }
            Event::SequenceStart(anchor, _) => self.open(pos, anchor, Body::Seq(Vec::new())),
            Event::MappingStart(anchor, _) => self.open(
                pos,
                anchor,
                Body::Map {
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                },
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let value = match frame.body {
                    Body::Seq(items) => Value::Seq(items),
                    Body::Map { entries, .. } => Value::Map(entries),
                };
                let node = Node {
                    pos: frame.pos,
                    value,
                };
                self.push_node(node, frame.extent, frame.anchor);
            }
            Event::Alias(id) => {
                let Some(&(_, extent)) = self.anchors.get(&id) else {
                    let node = Node {
                        pos,
                        value: Value::Scalar(String::new(), ScalarStyle::Plain),
                    };
                    self.push_node(node, Extent::default(), 0);
                    return;
                };
                if self.fits(extent.height, pos) && self.grow(extent, pos, true) {
                    let node = self.anchors[&id].0.clone();
                    self.push_node(node, extent, 0);
                }
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
    // events are pulled one by one (yaml-rust2's `load` recurses once per
    // nesting level) so that a limit stops the reading at once
    while !builder.stopped {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => builder.on_event(ev, mark),
            Err(e) => {
                let mut pos = pos_of(e.marker());
                let message = e.info().to_string();
                if message.contains("tab") {
                    // point at the tab itself, not after it
                    if let Some(i) = builder.line(pos.line).and_then(|l| l.find('\t')) {
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
        }
    }
    if builder.stopped {
        let limit = builder.issues.pop().expect("a stop records its limit");
        return (None, vec![limit]);
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

    /// The classic "billion laughs": nine levels of nine aliases.
    pub(crate) fn alias_bomb() -> String {
        let mut t = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let refs = vec![format!("*{prev}"); 9].join(",");
            t.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        t
    }

    #[test]
    fn an_alias_bomb_stops_at_the_alias_that_crosses_the_budget() {
        let text = alias_bomb();
        assert!(text.len() < 500, "{}", text.len());
        let started = std::time::Instant::now();
        let (root, issues) = parse_checked(&text);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(root.is_none());
        assert_eq!(issues.len(), 1, "{issues:?}");
        let i = &issues[0];
        assert_eq!(i.kind, YamlIssueKind::Limit);
        assert!(i.message.contains("alias bomb"), "{}", i.message);
        // the level whose aliases cross 100 000 copied nodes (9^6 > 10^5)
        assert!(
            text.lines()
                .nth(i.pos.line - 1)
                .unwrap()
                .starts_with("f: &f"),
            "{i:?}"
        );
        assert_eq!(
            &text.lines().nth(i.pos.line - 1).unwrap()[i.pos.column - 1..][..2],
            "*e"
        );
    }

    #[test]
    fn big_scalars_copied_by_aliases_count_their_text() {
        let big = "x".repeat(1 << 20);
        let refs = vec!["*s"; 100].join(",");
        let text = format!("s: &s {big}\nl: [{refs}]\n");
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("MiB of text"), "{e}");
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn nesting_is_bounded_block_and_flow() {
        let block = "- ".repeat(100_000) + "x\n";
        let e = parse(&block).unwrap_err();
        assert!(e.message.contains("nested more than 128 levels"), "{e}");
        let flow = "[".repeat(200) + &"]".repeat(200);
        let e = parse(&flow).unwrap_err();
        assert!(e.message.contains("nested more than 128 levels"), "{e}");
        // an alias cannot push a deep node deeper than the limit
        let deep = "[".repeat(100) + &"]".repeat(100);
        let e = parse(&format!(
            "a: &a {deep}\nb: {}*a{}\n",
            "[".repeat(40),
            "]".repeat(40)
        ))
        .unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
        assert_eq!(e.pos.line, 2);
        // 128 levels are fine
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        parse(&ok).unwrap();
    }

    #[test]
    fn many_keys_and_many_nodes() {
        let started = std::time::Instant::now();
        let text: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
        let n = parse(&text).unwrap();
        assert_eq!(n.as_map().unwrap().len(), 100_000);
        let dup = format!("{text}k5: again\n");
        let e = parse(&dup).unwrap_err();
        assert!(e.message.contains("duplicate key `k5`"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let items = "- a\n".repeat(MAX_NODES + 1);
        let e = parse(&items).unwrap_err();
        assert!(e.message.contains("more than 1000000 YAML nodes"), "{e}");
    }
}
