//! Step loops: `for` ranges, `forEach` lists and delimited strings.

use crate::util::diag::{did_you_mean, Diagnostics};
use crate::util::yaml::{Node, Pos};

/// Delimiters a `forEach.list` may be split on.
pub const DELIMITERS: &[char] = &['.', ',', ';', ':', '\n', '\t', ' ', '-', '_'];

/// A step's loop.
#[derive(Clone, Debug)]
pub struct Loop {
    /// The loop's name, if it has one (`{{ name.value }}`).
    pub name: Option<String>,
    /// Where the name is written.
    pub name_pos: Pos,
    /// What it iterates.
    pub kind: LoopKind,
}

/// The kinds of loop.
#[derive(Clone, Debug)]
pub enum LoopKind {
    /// An integer range, both ends included.
    For {
        /// First value.
        start: i64,
        /// Last value (inclusive bound).
        end: i64,
        /// Step; non-zero and towards `end`.
        update_by: i64,
    },
    /// An explicit list; items may hold expressions.
    ForEach(Vec<String>),
    /// A string split on a delimiter; the string may be an expression.
    ForEachSplit {
        /// The string to split.
        list: String,
        /// The delimiter.
        delimiter: char,
    },
}

impl Loop {
    /// The strings that may hold expressions.
    pub fn templates(&self) -> Vec<&str> {
        match &self.kind {
            LoopKind::For { .. } => Vec::new(),
            LoopKind::ForEach(items) => items.iter().map(String::as_str).collect(),
            LoopKind::ForEachSplit { list, .. } => vec![list.as_str()],
        }
    }
}

/// The values of a `for` loop.
pub fn range_values(start: i64, end: i64, update_by: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut v = start;
    while (update_by > 0 && v <= end) || (update_by < 0 && v >= end) {
        out.push(v.to_string());
        // past i64's range is past `end`
        match v.checked_add(update_by) {
            Some(next) => v = next,
            None => break,
        }
    }
    out
}

/// Splits a delimited `forEach.list`.
pub fn split_values(list: &str, delimiter: char) -> Vec<String> {
    list.split(delimiter).map(str::to_string).collect()
}

fn int_field(map: &Node, key: &str, field: &str, d: &mut Diagnostics) -> Option<i64> {
    let Some(v) = map.get(key) else {
        d.error(
            map.pos,
            "loop-for",
            format!("{field}.{key}"),
            format!("`for` needs `{key}`"),
            Some("a `for` loop has `start`, `end` and `updateBy`".into()),
        );
        return None;
    };
    let text = v.as_str().unwrap_or_default();
    if text.contains("{{") {
        d.error(
            v.pos,
            "loop-for",
            format!("{field}.{key}"),
            format!("`{key}` cannot hold an expression"),
            Some("`for` bounds are fixed integers; use `forEach.list` for computed values".into()),
        );
        return None;
    }
    match text.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            d.error(
                v.pos,
                "loop-for",
                format!("{field}.{key}"),
                format!(
                    "`{key}` must be an integer, found `{}`",
                    v.as_str().unwrap_or(v.kind_name())
                ),
                Some("`for` bounds are whole numbers, e.g. `start: 1`".into()),
            );
            None
        }
    }
}

/// True when `name` can be used as a loop name (`{{ name.value }}`).
pub fn valid_loop_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.contains(['.', '[', ']', '{', '}'])
}

/// Parses a step's `loop` block.
pub fn parse_loop(node: &Node, field: &str, d: &mut Diagnostics) -> Option<Loop> {
    let Some(map) = node.as_map() else {
        d.error(
            node.pos,
            "loop-shape",
            field,
            format!("`loop` must be a map, found {}", node.kind_name()),
            Some("write `loop:` with `forEach: [a, b]` or `for: {start: 1, end: 3, updateBy: 1}` under it".into()),
        );
        return None;
    };
    let mut name = None;
    let mut name_pos = node.pos;
    let mut kinds = Vec::new();
    let mut unknown = false;
    for (k, v) in map {
        match k.as_str().unwrap_or_default() {
            "name" => {
                name = v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
                name_pos = v.pos;
                if v.as_str().is_none() || v.as_str().is_some_and(|s| !valid_loop_name(s)) {
                    d.error(
                        v.pos,
                        "loop-shape",
                        format!("{field}.name"),
                        format!(
                            "invalid loop name `{}`",
                            v.as_str().unwrap_or(v.kind_name())
                        ),
                        Some("a loop name is used as `{{ name.value }}`, so it cannot contain `.`, `[`, `]`, `{` or `}`".into()),
                    );
                }
            }
            "for" | "forEach" => kinds.push((k, v)),
            other => {
                unknown = true;
                d.error(
                    k.pos,
                    "loop-shape",
                    format!("{field}.{other}"),
                    format!("unknown loop field `{other}`"),
                    did_you_mean(other, ["name", "for", "forEach"]).or(Some(
                        "a loop has `name` and one of `for` or `forEach`".into(),
                    )),
                );
            }
        }
    }
    if kinds.len() > 1 {
        let (second, _) = kinds[1];
        d.error(
            second.pos,
            "loop-shape",
            format!("{field}.{}", second.as_str().unwrap_or_default()),
            "the loop has both `for` and `forEach`",
            Some("a step has one loop: keep one of them, or split the step in two".into()),
        );
        return None;
    }
    if kinds.is_empty() {
        if !unknown {
            d.error(
                node.pos,
                "loop-shape",
                field,
                "a loop needs `for` or `forEach`",
                Some("add `forEach: [a, b]` or `for: {start: 1, end: 3, updateBy: 1}`".into()),
            );
        }
        return None;
    }
    let (k, v) = kinds[0];
    let kfield = format!("{field}.{}", k.as_str().unwrap_or_default());
    let kind = if k.as_str() == Some("for") {
        if v.as_map().is_none() {
            d.error(
                v.pos,
                "loop-for",
                kfield,
                "`for` must be a map of start, end and updateBy",
                Some("write `for: {start: 1, end: 3, updateBy: 1}`".into()),
            );
            return None;
        }
        for (fk, _) in v.as_map().unwrap_or_default() {
            let key = fk.as_str().unwrap_or_default();
            if !["start", "end", "updateBy"].contains(&key) {
                d.error(
                    fk.pos,
                    "loop-for",
                    format!("{kfield}.{key}"),
                    format!("unknown `for` field `{key}`"),
                    did_you_mean(key, ["start", "end", "updateBy"]).or(Some(
                        "a `for` loop has `start`, `end` and `updateBy`".into(),
                    )),
                );
            }
        }
        let (start, end, update_by) = (
            int_field(v, "start", &kfield, d),
            int_field(v, "end", &kfield, d),
            int_field(v, "updateBy", &kfield, d),
        );
        let (start, end, update_by) = (start?, end?, update_by?);
        let upos = v.get("updateBy").map_or(v.pos, |n| n.pos);
        if update_by == 0 {
            d.error(
                upos,
                "loop-update-zero",
                format!("{kfield}.updateBy"),
                "`updateBy` is 0, so the loop would never end",
                Some(if end >= start {
                    "use `updateBy: 1` (or a larger step)".to_string()
                } else {
                    "use `updateBy: -1` to count down".to_string()
                }),
            );
            return None;
        }
        if start != end && (end - start).signum() != update_by.signum() {
            d.error(upos, "loop-direction", format!("{kfield}.updateBy"),
                format!("`updateBy: {update_by}` moves away from `end: {end}` (start {start}), so the loop would never end"),
                Some(format!("use `updateBy: {}`", -update_by)));
            return None;
        }
        LoopKind::For {
            start,
            end,
            update_by,
        }
    } else if let Some(items) = v.as_seq() {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => d.error(
                    item.pos,
                    "loop-foreach",
                    format!("{kfield}[{i}]"),
                    format!("loops iterate strings; this item is {}", item.kind_name()),
                    Some("quote items that start with `{`".into()),
                ),
            }
        }
        LoopKind::ForEach(out)
    } else if v.as_map().is_some() {
        for (fk, _) in v.as_map().unwrap_or_default() {
            let key = fk.as_str().unwrap_or_default();
            if key != "list" && key != "delimiter" {
                d.error(
                    fk.pos,
                    "loop-foreach",
                    format!("{kfield}.{key}"),
                    format!("unknown `forEach` field `{key}`"),
                    did_you_mean(key, ["list", "delimiter"]).or(Some(
                        "a delimited `forEach` has `list` and `delimiter`".into(),
                    )),
                );
            }
        }
        let Some(list) = v.get("list").and_then(Node::as_str) else {
            d.error(
                v.pos,
                "loop-foreach",
                format!("{kfield}.list"),
                "`forEach` needs `list`: a delimited string",
                Some("write `list: \"a,b,c\"` (and `delimiter:` if it is not a comma)".into()),
            );
            return None;
        };
        let delimiter = match v.get("delimiter") {
            None => ',',
            Some(dn) => {
                let text = dn.as_str().unwrap_or_default();
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if DELIMITERS.contains(&c) => c,
                    _ if text.contains("{{") => {
                        d.error(
                            dn.pos,
                            "loop-delimiter",
                            format!("{kfield}.delimiter"),
                            "`delimiter` cannot hold an expression",
                            Some(
                                "write the delimiter character itself, e.g. `delimiter: ';'`"
                                    .into(),
                            ),
                        );
                        return None;
                    }
                    _ => {
                        d.error(dn.pos, "loop-delimiter", format!("{kfield}.delimiter"),
                            format!("`delimiter` must be one character of . , ; : newline tab space - _, found {text:?}"),
                            Some("write e.g. `delimiter: ';'` or `delimiter: \"\\n\"`".into()));
                        return None;
                    }
                }
            }
        };
        LoopKind::ForEachSplit {
            list: list.to_string(),
            delimiter,
        }
    } else {
        d.error(
            v.pos,
            "loop-foreach",
            kfield,
            "`forEach` must be a list, or a map with `list` and `delimiter`",
            Some("write `forEach: [a, b]` or `forEach: {list: \"a,b\", delimiter: \",\"}`".into()),
        );
        return None;
    };
    Some(Loop {
        name,
        name_pos,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_both_ends() {
        assert_eq!(range_values(1, 5, 2), ["1", "3", "5"]);
        assert_eq!(range_values(3, 1, -1), ["3", "2", "1"]);
        assert_eq!(range_values(2, 2, 5), ["2"]);
        // an end at the edge of i64 overflowed (a panic in debug builds,
        // an endless loop in release ones)
        assert_eq!(range_values(i64::MAX - 1, i64::MAX, 1).len(), 2);
        assert_eq!(range_values(i64::MIN + 1, i64::MIN, -1).len(), 2);
        assert_eq!(range_values(i64::MAX - 3, i64::MAX, 5).len(), 1);
        assert_eq!(split_values("a;b;;c", ';'), ["a", "b", "", "c"]);
    }
}
