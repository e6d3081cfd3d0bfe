//! Conditions: the step-level `if` and the `Assert` action share one
//! expression language of comparison and logical operators.

use crate::util::diag::{did_you_mean, Diagnostics};
use crate::util::yaml::{Node, Pos};

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `stringIsEmpty`
    StringIsEmpty,
    /// `stringIsWhitespace`
    StringIsWhitespace,
    /// `stringEquals`
    StringEquals,
    /// `stringLessThan`
    StringLessThan,
    /// `stringLessThanEquals`
    StringLessThanEquals,
    /// `stringGreaterThan`
    StringGreaterThan,
    /// `stringGreaterThanEquals`
    StringGreaterThanEquals,
    /// `patternMatches`
    PatternMatches,
    /// `numberEquals`
    NumberEquals,
    /// `numberLessThan`
    NumberLessThan,
    /// `numberLessThanEquals`
    NumberLessThanEquals,
    /// `numberGreaterThan`
    NumberGreaterThan,
    /// `numberGreaterThanEquals`
    NumberGreaterThanEquals,
    /// `binaryExists`
    BinaryExists,
    /// `fileExists`
    FileExists,
    /// `folderExists`
    FolderExists,
    /// `fileMD5Equals`
    FileMd5Equals,
    /// `fileSHA1Equals`
    FileSha1Equals,
    /// `fileSHA256Equals`
    FileSha256Equals,
    /// `fileSHA512Equals`
    FileSha512Equals,
}

/// How many operands an operator takes besides its own value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Only the operator's value.
    Unary,
    /// The operator's value and `value`.
    Binary,
    /// The expected hash and the file (`path`, or `value`).
    FileHash,
}

const OPS: &[(&str, CmpOp, Arity)] = &[
    ("stringIsEmpty", CmpOp::StringIsEmpty, Arity::Unary),
    (
        "stringIsWhitespace",
        CmpOp::StringIsWhitespace,
        Arity::Unary,
    ),
    ("stringEquals", CmpOp::StringEquals, Arity::Binary),
    ("stringLessThan", CmpOp::StringLessThan, Arity::Binary),
    (
        "stringLessThanEquals",
        CmpOp::StringLessThanEquals,
        Arity::Binary,
    ),
    ("stringGreaterThan", CmpOp::StringGreaterThan, Arity::Binary),
    (
        "stringGreaterThanEquals",
        CmpOp::StringGreaterThanEquals,
        Arity::Binary,
    ),
    ("patternMatches", CmpOp::PatternMatches, Arity::Binary),
    ("numberEquals", CmpOp::NumberEquals, Arity::Binary),
    ("numberLessThan", CmpOp::NumberLessThan, Arity::Binary),
    (
        "numberLessThanEquals",
        CmpOp::NumberLessThanEquals,
        Arity::Binary,
    ),
    ("numberGreaterThan", CmpOp::NumberGreaterThan, Arity::Binary),
    (
        "numberGreaterThanEquals",
        CmpOp::NumberGreaterThanEquals,
        Arity::Binary,
    ),
    ("binaryExists", CmpOp::BinaryExists, Arity::Unary),
    ("fileExists", CmpOp::FileExists, Arity::Unary),
    ("folderExists", CmpOp::FolderExists, Arity::Unary),
    ("fileMD5Equals", CmpOp::FileMd5Equals, Arity::FileHash),
    ("fileSHA1Equals", CmpOp::FileSha1Equals, Arity::FileHash),
    ("fileSHA256Equals", CmpOp::FileSha256Equals, Arity::FileHash),
    ("fileSHA512Equals", CmpOp::FileSha512Equals, Arity::FileHash),
];

const LOGICAL: &[&str] = &["and", "or", "not"];

/// Logical operators may nest at most this deep.
pub const MAX_NESTING: usize = 4;

/// A condition expression. Operand strings may hold `{{ }}` expressions.
#[derive(Clone, Debug)]
pub enum Cond {
    /// A comparison.
    Cmp {
        /// The operator.
        op: CmpOp,
        /// The operator's own value (baseline, pattern, path, expected hash).
        operand: String,
        /// The second operand: `value`, or for file hashes the file path.
        value: Option<String>,
        /// Where the operator is written.
        pos: Pos,
    },
    /// All must hold; stops at the first false.
    And(Vec<Cond>),
    /// One must hold; stops at the first true.
    Or(Vec<Cond>),
    /// Negation of one expression.
    Not(Box<Cond>),
}

/// What `then`/`else` do with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StepAction {
    /// Run the step.
    Execute,
    /// Skip it; counts as success.
    Skip,
    /// Fail it.
    Abort,
}

/// A step's `if` block.
#[derive(Clone, Debug)]
pub struct IfClause {
    /// The condition.
    pub cond: Cond,
    /// What to do when it holds (default Execute).
    pub then: StepAction,
    /// What to do when it does not (default Skip).
    pub otherwise: StepAction,
}

impl Cond {
    /// Every operand string, for reference checks.
    pub fn operands(&self) -> Vec<&str> {
        match self {
            Cond::Cmp { operand, value, .. } => {
                let mut v = vec![operand.as_str()];
                v.extend(value.as_deref());
                v
            }
            Cond::And(items) | Cond::Or(items) => items.iter().flat_map(Cond::operands).collect(),
            Cond::Not(inner) => inner.operands(),
        }
    }

    /// Every operand string with the position of its comparison operator.
    pub fn operands_at(&self) -> Vec<(&str, Pos)> {
        match self {
            Cond::Cmp {
                operand,
                value,
                pos,
                ..
            } => {
                let mut v = vec![(operand.as_str(), *pos)];
                v.extend(value.as_deref().map(|s| (s, *pos)));
                v
            }
            Cond::And(items) | Cond::Or(items) => {
                items.iter().flat_map(Cond::operands_at).collect()
            }
            Cond::Not(inner) => inner.operands_at(),
        }
    }
}

fn op_named(name: &str) -> Option<(CmpOp, Arity)> {
    OPS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, op, a)| (*op, *a))
}

fn all_names() -> impl Iterator<Item = &'static str> {
    OPS.iter()
        .map(|(n, _, _)| *n)
        .chain(LOGICAL.iter().copied())
}

fn scalar_text(node: &Node) -> Option<String> {
    node.as_str().map(str::to_string)
}

/// Parses the `if` block of a step.
pub fn parse_if(node: &Node, field: &str, d: &mut Diagnostics) -> Option<IfClause> {
    let map = match node.as_map() {
        Some(m) => m,
        None => {
            d.error(
                node.pos,
                "if-shape",
                field,
                format!("`if` must be a map, found {}", node.kind_name()),
                Some("write e.g. `if: {fileExists: /etc/x}`".into()),
            );
            return None;
        }
    };
    let mut then = StepAction::Execute;
    let mut otherwise = StepAction::Skip;
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default();
        if key == "then" || key == "else" {
            let parsed = match v.as_str() {
                Some("Execute") => Some(StepAction::Execute),
                Some("Skip") => Some(StepAction::Skip),
                Some("Abort") => Some(StepAction::Abort),
                _ => None,
            };
            match parsed {
                Some(a) if key == "then" => then = a,
                Some(a) => otherwise = a,
                None => d.error(
                    v.pos,
                    "if-step-action",
                    format!("{field}.{key}"),
                    format!(
                        "`{key}` must be Execute, Skip or Abort, found `{}`",
                        v.as_str().unwrap_or("a non-scalar")
                    ),
                    v.as_str()
                        .and_then(|s| did_you_mean(s, ["Execute", "Skip", "Abort"]))
                        .or(Some(
                            "Execute runs the step, Skip skips it (a success), Abort fails it"
                                .into(),
                        )),
                ),
            }
        }
    }
    let cond = parse_cond(node, field, d, 1, true)?;
    Some(IfClause {
        cond,
        then,
        otherwise,
    })
}

/// Parses a condition expression (the inputs of `Assert`, or an `if` body).
/// `top` allows the `then`/`else` keys of a step's `if`.
pub fn parse_cond(
    node: &Node,
    field: &str,
    d: &mut Diagnostics,
    depth: usize,
    top: bool,
) -> Option<Cond> {
    let Some(map) = node.as_map() else {
        d.error(
            node.pos,
            "condition-shape",
            field,
            format!(
                "a condition must be a map with one operator, found {}",
                node.kind_name()
            ),
            Some(if node.as_seq().is_some() {
                "remove the leading `-`: a condition is one map, e.g. `fileExists: /path`".into()
            } else {
                "write a map with one operator, e.g. `fileExists: /path`".into()
            }),
        );
        return None;
    };
    let mut operator: Option<(&Node, &Node)> = None;
    let mut value: Option<&Node> = None;
    let mut path: Option<&Node> = None;
    let mut ok = true;
    for (k, v) in map {
        let key = k.as_str().unwrap_or_default();
        match key {
            "then" | "else" if top => {}
            "then" | "else" => {
                d.error(
                    k.pos,
                    "unknown-operator",
                    format!("{field}.{key}"),
                    format!("`{key}` belongs to a step's `if`, not inside a condition"),
                    Some(format!(
                        "move `{key}:` beside the top-level operator of the step's `if:`"
                    )),
                );
                ok = false;
            }
            "value" => value = Some(v),
            "path" => path = Some(v),
            _ if op_named(key).is_some() || LOGICAL.contains(&key) => {
                if let Some((first, _)) = operator {
                    d.error(
                        k.pos,
                        "condition-operators",
                        format!("{field}.{key}"),
                        format!(
                            "a condition holds exactly one operator, found `{}` and `{key}`",
                            first.as_str().unwrap_or_default()
                        ),
                        Some("combine several checks with `and:` or `or:`".into()),
                    );
                    ok = false;
                } else {
                    operator = Some((k, v));
                }
            }
            _ => {
                d.error(
                    k.pos,
                    "unknown-operator",
                    format!("{field}.{key}"),
                    format!("unknown condition operator or field `{key}`"),
                    did_you_mean(key, all_names().chain(["value", "then", "else"])).or(Some(
                        "operators compare (stringEquals, numberLessThan, fileExists, …) or combine (and, or, not); operator names are case-sensitive"
                            .into(),
                    )),
                );
                ok = false;
            }
        }
    }
    let Some((opk, opv)) = operator else {
        if ok {
            d.error(
                node.pos,
                "condition-operators",
                field,
                "a condition needs exactly one operator, found none",
                Some("e.g. `stringEquals: 'x'` with `value: '{{ … }}'`, or `and: [...]`".into()),
            );
        }
        return None;
    };
    let name = opk.as_str().unwrap_or_default();
    let fpath = format!("{field}.{name}");
    if LOGICAL.contains(&name) {
        if depth > MAX_NESTING {
            d.error(
                opk.pos,
                "condition-nesting",
                fpath,
                format!(
                    "logical operators nest {depth} levels deep; at most {MAX_NESTING} are allowed"
                ),
                Some(
                    "flatten the condition: `and`/`or` take several conditions, and `not` of `not` cancels out"
                        .into(),
                ),
            );
            return None;
        }
        if let Some(v) = value.or(path) {
            d.error(
                v.pos,
                "condition-shape",
                field,
                format!("`{name}` takes no `value`/`path`"),
                None,
            );
        }
        if name == "not" {
            if opv.as_seq().is_some() {
                d.error(
                    opv.pos,
                    "condition-shape",
                    fpath,
                    "`not` takes one condition, found a list",
                    Some("write the condition under `not:` without the `-`".into()),
                );
                return None;
            }
            return parse_cond(opv, &fpath, d, depth + 1, false).map(|c| Cond::Not(Box::new(c)));
        }
        let Some(items) = opv.as_seq() else {
            d.error(
                opv.pos,
                "condition-shape",
                fpath,
                format!(
                    "`{name}` takes a list of conditions, found {}",
                    opv.kind_name()
                ),
                Some(format!(
                    "write each condition as a list item under `{name}:`, e.g. `- fileExists: /a`"
                )),
            );
            return None;
        };
        if items.len() < 2 {
            d.error(
                opv.pos,
                "condition-shape",
                fpath.clone(),
                format!(
                    "`{name}` needs at least two conditions, found {}",
                    items.len()
                ),
                Some("use the single condition directly".into()),
            );
        }
        let parsed: Vec<Cond> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| parse_cond(item, &format!("{fpath}[{i}]"), d, depth + 1, false))
            .collect();
        if parsed.len() != items.len() {
            return None;
        }
        return Some(if name == "and" {
            Cond::And(parsed)
        } else {
            Cond::Or(parsed)
        });
    }
    let (op, arity) = op_named(name).expect("checked above");
    let Some(operand) = scalar_text(opv) else {
        d.error(
            opv.pos,
            "condition-shape",
            fpath,
            format!("`{name}` takes a single value, found {}", opv.kind_name()),
            Some("quote the value if it starts with `{` or `[`".into()),
        );
        return None;
    };
    let value = match arity {
        Arity::Unary => {
            if let Some(v) = value.or(path) {
                d.error(
                    v.pos,
                    "condition-shape",
                    field,
                    format!("`{name}` takes no second operand"),
                    Some(format!(
                        "`{name}` checks its own value only; remove this line"
                    )),
                );
            }
            None
        }
        Arity::Binary => {
            if let Some(p) = path {
                d.error(
                    p.pos,
                    "condition-shape",
                    field,
                    format!("`{name}` compares with `value`, not `path`"),
                    Some("rename `path:` to `value:`".into()),
                );
            }
            match value.map(|v| (v, scalar_text(v))) {
                Some((_, Some(s))) => Some(s),
                Some((v, None)) => {
                    d.error(
                        v.pos,
                        "condition-shape",
                        format!("{field}.value"),
                        format!("`value` must be a single value, found {}", v.kind_name()),
                        Some("quote the value if it starts with `{` or `[`".into()),
                    );
                    return None;
                }
                None => {
                    d.error(
                        opk.pos,
                        "condition-value-missing",
                        field,
                        format!("`{name}` needs a `value` to compare with"),
                        Some(format!("add `value: '{{{{ … }}}}'` beside `{name}`")),
                    );
                    return None;
                }
            }
        }
        Arity::FileHash => match path.or(value).map(scalar_text) {
            Some(Some(s)) => Some(s),
            _ => {
                d.error(
                    opk.pos,
                    "condition-value-missing",
                    field,
                    format!("`{name}` needs the file to hash in `path`"),
                    Some(format!(
                        "write `{name}: <expected hash>` and `path: /the/file`"
                    )),
                );
                return None;
            }
        },
    };
    if op == CmpOp::PatternMatches && !operand.contains("{{") {
        if let Err(e) = regex::Regex::new(&operand) {
            d.error(
                opv.pos,
                "bad-pattern",
                fpath,
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
                Some(
                    "patternMatches takes an RE2-style regular expression; escape special characters with `\\`"
                        .into(),
                ),
            );
        }
    }
    Some(Cond::Cmp {
        op,
        operand,
        value,
        pos: opk.pos,
    })
}

/// The text comparisons of AWSTOE: case-insensitive, untrimmed.
pub fn compare_strings(op: CmpOp, baseline: &str, value: &str) -> bool {
    let a = value.to_lowercase();
    let b = baseline.to_lowercase();
    match op {
        CmpOp::StringEquals => a == b,
        CmpOp::StringLessThan => a < b,
        CmpOp::StringLessThanEquals => a <= b,
        CmpOp::StringGreaterThan => a > b,
        CmpOp::StringGreaterThanEquals => a >= b,
        _ => false,
    }
}

/// Number comparisons: a value that does not parse makes the comparison false.
pub fn compare_numbers(op: CmpOp, baseline: &str, value: &str) -> bool {
    let (Ok(b), Ok(a)) = (baseline.trim().parse::<f64>(), value.trim().parse::<f64>()) else {
        return false;
    };
    match op {
        CmpOp::NumberEquals => a == b,
        CmpOp::NumberLessThan => a < b,
        CmpOp::NumberLessThanEquals => a <= b,
        CmpOp::NumberGreaterThan => a > b,
        CmpOp::NumberGreaterThanEquals => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_and_number_semantics() {
        assert!(compare_strings(CmpOp::StringEquals, "S3", "s3"));
        assert!(!compare_strings(CmpOp::StringEquals, "s3", " s3"));
        // "value < baseline": the variable is compared against the baseline
        assert!(compare_strings(CmpOp::StringLessThan, "b", "a"));
        assert!(compare_numbers(CmpOp::NumberEquals, "1", "1.0"));
        assert!(!compare_numbers(CmpOp::NumberEquals, "10", "a10"));
        assert!(compare_numbers(CmpOp::NumberGreaterThan, "5", "7"));
    }
}
