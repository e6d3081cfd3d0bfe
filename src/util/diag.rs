//! Validation diagnostics: each names the file, line, column and field, says
//! what is wrong, and gives a hint where one helps.

use std::fmt;

use super::yaml::{Pos, YamlIssue, YamlIssueKind};
use crate::util::display::Escaped;

/// One problem found in a document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The document's path as given by the user.
    pub file: String,
    /// Where the problem is.
    pub pos: Pos,
    /// A stable identifier of the kind of problem, e.g. `unknown-action`.
    pub code: &'static str,
    /// The field path, e.g. `phases[0].steps[2].inputs.path`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if there is something useful to say.
    pub hint: Option<String>,
}

/// One line per part; the file name, message, field and hint quote what
/// the file holds, so their control characters are shown escaped.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {}",
            Escaped(&self.file),
            self.pos.line,
            self.pos.column,
            self.code,
            Escaped(&self.message)
        )?;
        if !self.field.is_empty() {
            write!(f, "\n  field: {}", Escaped(&self.field))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", Escaped(hint))?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file while a document is read.
#[derive(Debug)]
pub struct Diagnostics {
    file: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Starts an empty list for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Diagnostics {
            file: file.into(),
            items: Vec::new(),
        }
    }

    /// The file these diagnostics are about.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem.
    pub fn error(
        &mut self,
        pos: Pos,
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            pos,
            code,
            field: field.into(),
            message: message.into(),
            hint,
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The recorded problems, sorted by position.
    pub fn into_vec(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| d.pos);
        self.items
    }

    /// Moves the problems of `other` into this list.
    pub fn extend(&mut self, other: Vec<Diagnostic>) {
        self.items.extend(other);
    }
}

/// Levenshtein-based suggestion: the closest candidate within distance 3.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Records the problems found while reading YAML: syntax errors, complex
/// keys and duplicate keys the same way for every kind of file; the shape
/// problems (several documents, an empty file) under `shape_code`, worded by
/// `shape` (which gets the issue and returns the message and hint).
pub fn record_yaml_issues(
    d: &mut Diagnostics,
    issues: Vec<YamlIssue>,
    shape_code: &'static str,
    shape: impl Fn(YamlIssue) -> (String, Option<String>),
) {
    for issue in issues {
        let (pos, field) = (issue.pos, issue.field.clone());
        let (code, message, hint) = match issue.kind {
            YamlIssueKind::Syntax => (
                "yaml-syntax",
                format!("YAML syntax error: {}", issue.message),
                issue.hint,
            ),
            YamlIssueKind::ComplexKey => ("yaml-syntax", issue.message, issue.hint),
            YamlIssueKind::DuplicateKey => ("duplicate-key", issue.message, issue.hint),
            YamlIssueKind::Limit => ("yaml-limit", issue.message, issue.hint),
            YamlIssueKind::MultipleDocuments | YamlIssueKind::Empty => {
                let (message, hint) = shape(issue);
                (shape_code, message, hint)
            }
        };
        d.error(pos, code, field, message, hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("ExecuteBsh", ["ExecuteBash", "Reboot"]).as_deref(),
            Some("did you mean `ExecuteBash`?")
        );
        assert_eq!(did_you_mean("zzzzzzzz", ["ExecuteBash"]), None);
    }
}
