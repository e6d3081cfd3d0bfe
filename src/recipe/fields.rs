//! Typed reading of a recipe's YAML tree: each accessor checks the shape of
//! one field and records a diagnostic naming the field when it is wrong.

use crate::util::diag::{did_you_mean, Diagnostics};
use crate::util::yaml::{Node, Pos};

/// Whether keys a map does not know are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Unknown keys are errors (kiln's own recipe form).
    Strict,
    /// Unknown keys are ignored (the JSON AWS prints, which grows new fields).
    Lenient,
}

/// A node and the field path that leads to it, e.g. `components[1].parameters`.
#[derive(Clone, Debug)]
pub(crate) struct Field<'n> {
    /// The node.
    pub node: &'n Node,
    /// Its field path.
    pub path: String,
    keys: Keys,
    /// Where problems with it are reported: the node, or the key of an
    /// empty value (an implicit null is placed where the next token starts).
    at: Pos,
}

/// A map node and its field path.
#[derive(Clone, Debug)]
pub(crate) struct Obj<'n> {
    /// The map node.
    pub node: &'n Node,
    /// Its field path.
    pub path: String,
    /// How unknown keys are treated in it and below it.
    pub keys: Keys,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'n> Field<'n> {
    /// A field at `path`, read with `keys`.
    pub fn new(node: &'n Node, path: impl Into<String>, keys: Keys) -> Self {
        Field {
            node,
            path: path.into(),
            keys,
            at: node.pos,
        }
    }

    /// Where the node starts (for an empty value: where its key is).
    pub fn pos(&self) -> Pos {
        self.at
    }

    /// The last part of the path, for messages (`value` of `components[0].parameters[1].value`).
    pub fn leaf(&self) -> &str {
        self.path.rsplit('.').next().unwrap_or(&self.path)
    }

    /// Records a problem with this field.
    pub fn error(
        &self,
        d: &mut Diagnostics,
        code: &'static str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        d.error(self.at, code, self.path.clone(), message, hint);
    }

    fn wrong_type(&self, d: &mut Diagnostics, expected: &str) {
        self.error(
            d,
            "wrong-type",
            format!(
                "`{}` must be {expected}, found {}",
                self.leaf(),
                self.node.kind_name()
            ),
            None,
        );
    }

    /// The text of a scalar that is not null.
    pub fn str(&self, d: &mut Diagnostics) -> Option<&'n str> {
        match self.node.as_str() {
            Some(s) if !self.node.is_null() => Some(s),
            _ => {
                self.wrong_type(d, "a string");
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn uint(&self, d: &mut Diagnostics, min: u64, max: u64) -> Option<u64> {
        let text = self.str(d)?;
        let n = text.parse::<u64>().ok().filter(|n| (min..=max).contains(n));
        if n.is_none() {
            self.error(
                d,
                "invalid-number",
                format!(
                    "`{}` must be a whole number from {min} to {max}, found `{text}`",
                    self.leaf()
                ),
                None,
            );
        }
        n
    }

    /// `true` or `false`.
    pub fn boolean(&self, d: &mut Diagnostics) -> Option<bool> {
        match self.str(d)? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.error(
                    d,
                    "wrong-type",
                    format!("`{}` must be true or false, found `{other}`", self.leaf()),
                    None,
                );
                None
            }
        }
    }

    /// A string that must be one of `allowed`; otherwise a `code` problem
    /// saying kiln does not support `what` with that value.
    pub fn one_of(
        &self,
        d: &mut Diagnostics,
        allowed: &[&str],
        code: &'static str,
        what: &str,
    ) -> Option<&'n str> {
        let text = self.str(d)?;
        if allowed.contains(&text) {
            return Some(text);
        }
        let hint = did_you_mean(text, allowed.iter().copied())
            .unwrap_or_else(|| format!("supported: {}", allowed.join(", ")));
        self.error(
            d,
            code,
            format!("kiln does not support {what} `{text}`"),
            Some(hint),
        );
        None
    }

    /// The items of a list, each with its indexed path.
    pub fn seq(&self, d: &mut Diagnostics) -> Option<Vec<Field<'n>>> {
        let Some(items) = self.node.as_seq() else {
            self.wrong_type(d, "a list");
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| Field::new(n, format!("{}[{i}]", self.path), self.keys))
                .collect(),
        )
    }

    /// A list of strings; `None` (with diagnostics) if any item is not one.
    pub fn strings(&self, d: &mut Diagnostics) -> Option<Vec<String>> {
        let items = self.seq(d)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match item.str(d) {
                Some(s) => out.push(s.to_string()),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// This node as a map.
    pub fn obj(&self, d: &mut Diagnostics) -> Option<Obj<'n>> {
        if self.node.as_map().is_none() {
            self.wrong_type(d, "a map");
            return None;
        }
        Some(Obj {
            node: self.node,
            path: self.path.clone(),
            keys: self.keys,
        })
    }
}

impl<'n> Obj<'n> {
    /// The field under `key`, if present.
    pub fn get(&self, key: &str) -> Option<Field<'n>> {
        let (k, v) = self
            .node
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))?;
        let mut field = Field::new(v, join(&self.path, key), self.keys);
        if v.is_null() {
            field.at = k.pos;
        }
        Some(field)
    }

    /// True when the map has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.node.get(key).is_some()
    }

    /// The field under `key`; records a `missing-field` problem when absent.
    pub fn require(&self, key: &str, d: &mut Diagnostics, hint: &str) -> Option<Field<'n>> {
        let field = self.get(key);
        if field.is_none() {
            let where_ = if self.path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", self.path)
            };
            d.error(
                self.node.pos,
                "missing-field",
                join(&self.path, key),
                format!("`{key}` is missing{where_}"),
                Some(hint.to_string()),
            );
        }
        field
    }

    /// Records an `unknown-key` problem for every key not in `allowed`
    /// (nothing in [`Keys::Lenient`] maps).
    pub fn check_keys(&self, allowed: &[&str], d: &mut Diagnostics) {
        if self.keys == Keys::Lenient {
            return;
        }
        for (k, _) in self.node.as_map().unwrap_or_default() {
            let key = k.as_str().unwrap_or_default();
            if allowed.contains(&key) {
                continue;
            }
            let in_ = if self.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in `{}`", self.path)
            };
            d.error(
                k.pos,
                "unknown-key",
                join(&self.path, key),
                format!("unknown key `{key}` {in_}"),
                did_you_mean(key, allowed.iter().copied())
                    .or_else(|| Some(format!("allowed here: {}", allowed.join(", ")))),
            );
        }
    }
}

/// Combines the reading of an optional field: `None` (absent) gives
/// `Some(None)`, `Some(None)` (given but invalid, already reported) gives
/// `None`, and a value gives `Some(Some(value))`.
pub(crate) fn optional<T>(read: Option<Option<T>>) -> Option<Option<T>> {
    match read {
        Some(v) => Some(Some(v?)),
        None => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::yaml::parse;

    fn obj(node: &Node) -> Obj<'_> {
        Obj {
            node,
            path: "top".into(),
            keys: Keys::Strict,
        }
    }

    #[test]
    fn typed_fields_report_the_field_and_position() {
        let n = parse("a: [x, {y: 1}]\nb: 0\nc: maybe\nd:\n").unwrap();
        let o = obj(&n);
        let mut d = Diagnostics::new("f.yml");
        assert_eq!(o.get("a").unwrap().strings(&mut d), None);
        assert_eq!(o.get("b").unwrap().uint(&mut d, 1, 9), None);
        assert_eq!(o.get("c").unwrap().boolean(&mut d), None);
        assert_eq!(o.get("d").unwrap().str(&mut d), None);
        assert!(o.require("e", &mut d, "add e").is_none());
        o.check_keys(&["a", "b", "c", "dd"], &mut d);
        let got: Vec<(String, usize, usize, String)> = d
            .into_vec()
            .into_iter()
            .map(|x| (x.field, x.pos.line, x.pos.column, x.message))
            .collect();
        let expected = [
            ("e", 1, 1, "`e` is missing in `top`"),
            ("top.a[1]", 1, 8, "`a[1]` must be a string, found a map"),
            (
                "top.b",
                2,
                4,
                "`b` must be a whole number from 1 to 9, found `0`",
            ),
            ("top.c", 3, 4, "`c` must be true or false, found `maybe`"),
            ("top.d", 4, 1, "`d` must be a string, found nothing (null)"),
            ("top.d", 4, 1, "unknown key `d` in `top`"),
        ];
        let expected: Vec<(String, usize, usize, String)> = expected
            .iter()
            .map(|(f, l, c, m)| {
                let f = if *f == "e" { "top.e" } else { f };
                (f.to_string(), *l, *c, m.to_string())
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn lenient_maps_accept_unknown_keys() {
        let n = parse("zzz: 1\n").unwrap();
        let o = Obj {
            keys: Keys::Lenient,
            ..obj(&n)
        };
        let mut d = Diagnostics::new("f.yml");
        o.check_keys(&["a"], &mut d);
        assert!(d.is_empty());
    }
}
