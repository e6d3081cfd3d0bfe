//! `{{ }}` expressions: parameters and constants, chaining to earlier steps'
//! inputs and outputs, and loop variables. Expressions are substring
//! substitutions inside string values, applied after YAML parsing.

use std::sync::OnceLock;

use regex::Regex;

/// Which side of a step a chaining expression reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The step's resolved inputs.
    Inputs,
    /// The step's outputs.
    Outputs,
}

/// Which loop variable is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopField {
    /// 0-based iteration index.
    Index,
    /// The iteration value.
    Value,
}

/// A parsed `{{ }}` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A parameter or constant, `{{ Name }}`.
    Var(String),
    /// `{{ phase.step.inputs[0].key }}` or `{{ phase.step.outputs.key }}`.
    Chain {
        /// Phase name.
        phase: String,
        /// Step name.
        step: String,
        /// Inputs or outputs.
        side: Side,
        /// The list index, when given.
        index: Option<usize>,
        /// The field name.
        key: String,
    },
    /// `{{ loop.index }}`, `{{ loop.value }}` or the same on a named loop.
    Loop {
        /// `loop` or the loop's name.
        name: String,
        /// Index or value.
        field: LoopField,
    },
    /// `{{ aws:ssm:resolve(name) }}`: needs AWS Systems Manager on the instance.
    Ssm(String),
}

/// One occurrence of a reference in a string.
#[derive(Clone, Debug)]
pub struct Occurrence {
    /// Byte range of the whole `{{ … }}` in the string.
    pub range: std::ops::Range<usize>,
    /// The text between the braces, trimmed.
    pub text: String,
    /// What it refers to.
    pub reference: Reference,
}

fn braces() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\{\{(.*?)\}\}").expect("valid regex"))
}

fn classify(inner: &str) -> Option<Reference> {
    static VAR: OnceLock<Regex> = OnceLock::new();
    static LOOP: OnceLock<Regex> = OnceLock::new();
    static CHAIN: OnceLock<Regex> = OnceLock::new();
    static SSM: OnceLock<Regex> = OnceLock::new();
    let var = VAR.get_or_init(|| Regex::new(r"^[A-Za-z0-9_-]+$").expect("valid regex"));
    let lp =
        LOOP.get_or_init(|| Regex::new(r"^([^.\[\]{}]+)\.(index|value)$").expect("valid regex"));
    let chain = CHAIN.get_or_init(|| {
        Regex::new(r"^([^.\[\]{}]+)\.([^.\[\]{}]+)\.(inputs|outputs)(?:\[(\d+)\])?\.([^.\[\]{}]+)$")
            .expect("valid regex")
    });
    let ssm = SSM.get_or_init(|| Regex::new(r"^aws:ssm:resolve\((.*)\)$").expect("valid regex"));
    if var.is_match(inner) {
        return Some(Reference::Var(inner.to_string()));
    }
    if let Some(c) = lp.captures(inner) {
        let field = if &c[2] == "index" {
            LoopField::Index
        } else {
            LoopField::Value
        };
        return Some(Reference::Loop {
            name: c[1].to_string(),
            field,
        });
    }
    if let Some(c) = chain.captures(inner) {
        return Some(Reference::Chain {
            phase: c[1].to_string(),
            step: c[2].to_string(),
            side: if &c[3] == "inputs" {
                Side::Inputs
            } else {
                Side::Outputs
            },
            index: c.get(4).and_then(|m| m.as_str().parse().ok()),
            key: c[5].to_string(),
        });
    }
    ssm.captures(inner)
        .map(|c| Reference::Ssm(c[1].trim().to_string()))
}

/// Every reference in `text`. Text between braces that is not a reference
/// (for example a Go template in a file being written) is not returned and
/// stays as it is.
pub fn occurrences(text: &str) -> Vec<Occurrence> {
    braces()
        .captures_iter(text)
        .filter_map(|c| {
            let whole = c.get(0).expect("group 0");
            let inner = c[1].trim();
            classify(inner).map(|reference| Occurrence {
                range: whole.range(),
                text: inner.to_string(),
                reference,
            })
        })
        .collect()
}

/// What a resolver says about one reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Substitute this value.
    Value(String),
    /// Leave the `{{ … }}` text in place (a loop variable outside a loop).
    Keep,
    /// The reference cannot be resolved; the message says why.
    Error(String),
}

/// Substitutes every reference in `text`.
pub fn render(
    text: &str,
    resolve: &mut dyn FnMut(&Reference) -> Resolved,
) -> Result<String, String> {
    let occs = occurrences(text);
    if occs.is_empty() {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for occ in occs {
        out.push_str(&text[last..occ.range.start]);
        match resolve(&occ.reference) {
            Resolved::Value(v) => out.push_str(&v),
            Resolved::Keep => out.push_str(&text[occ.range.clone()]),
            Resolved::Error(e) => return Err(format!("`{{{{ {} }}}}`: {e}", occ.text)),
        }
        last = occ.range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_references() {
        let o = occurrences("a {{Name}} b {{ build.Step one.outputs.stdout }} {{ loop.value }} {{ x.inputs[1].path }}");
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].reference, Reference::Var("Name".into()));
        assert_eq!(
            o[1].reference,
            Reference::Chain {
                phase: "build".into(),
                step: "Step one".into(),
                side: Side::Outputs,
                index: None,
                key: "stdout".into()
            }
        );
        assert_eq!(
            o[2].reference,
            Reference::Loop {
                name: "loop".into(),
                field: LoopField::Value
            }
        );
        let o = occurrences("{{ build.Dl.inputs[1].destination }} {{ .Values.x }}");
        assert_eq!(o.len(), 1);
        assert!(matches!(
            o[0].reference,
            Reference::Chain { index: Some(1), .. }
        ));
    }

    #[test]
    fn renders_and_keeps() {
        let out = render("x={{ A }} i={{loop.index}}", &mut |r| match r {
            Reference::Var(_) => Resolved::Value("1".into()),
            _ => Resolved::Keep,
        })
        .unwrap();
        assert_eq!(out, "x=1 i={{loop.index}}");
        let err = render("{{ B }}", &mut |_| Resolved::Error("undeclared".into())).unwrap_err();
        assert!(err.contains("undeclared"));
    }
}
