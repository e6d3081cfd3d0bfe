//! Checks across a whole document: unique names, and that every `{{ }}`
//! expression refers to something declared or to a step that has run.

use super::actions::spec;
use super::document::{Document, Phase, Step};
use super::expr::{self, Reference, Side};
use crate::util::diag::{did_you_mean, Diagnostics};
use crate::util::yaml::{Node, Pos, Value};

/// The output fields an action produces, for checking chained references.
pub fn outputs_of(action: &str) -> &'static [&'static str] {
    match action {
        "ExecuteBash" | "ExecuteBinary" | "ExecutePowerShell" => &["stdout"],
        "WebDownload" => &["destination"],
        "ListFiles" => &["files"],
        "ReadFile" => &["content"],
        "InstallMSI" | "UninstallMSI" => &["logFile", "msiExitCode", "stdout"],
        "ExecuteDocument" => &[
            "executedStepCount",
            "executionId",
            "failedStepCount",
            "failureMessage",
            "ignoredFailedStepCount",
            "logUrl",
            "status",
        ],
        _ => &[],
    }
}

/// Runs the document-wide checks, adding to `d`. Positions come from the
/// document's text, which is read again for them.
pub fn check_document(doc: &Document, d: &mut Diagnostics) {
    let root = crate::util::yaml::parse_checked(&doc.text).0;
    check_document_nodes(doc, root.as_ref(), d);
}

/// The raw nodes of one step, when the source tree is known.
struct RawStep<'a> {
    node: Option<&'a Node>,
    field: String,
}

fn raw_phase<'a>(root: Option<&'a Node>, phase: &Phase) -> Option<(usize, &'a Node)> {
    root?
        .get("phases")?
        .as_seq()?
        .iter()
        .enumerate()
        .find(|(_, n)| n.pos == phase.pos)
}

fn raw_step<'a>(
    phase: Option<(usize, &'a Node)>,
    step: &Step,
    pi: usize,
    si: usize,
) -> RawStep<'a> {
    let found = phase.and_then(|(rpi, pnode)| {
        pnode
            .get("steps")?
            .as_seq()?
            .iter()
            .enumerate()
            .find(|(_, n)| n.pos == step.pos)
            .map(|(rsi, n)| (rpi, rsi, n))
    });
    match found {
        Some((rpi, rsi, n)) => RawStep {
            node: Some(n),
            field: format!("phases[{rpi}].steps[{rsi}]"),
        },
        None => RawStep {
            node: None,
            field: format!("phases[{pi}].steps[{si}]"),
        },
    }
}

/// Like [`check_document`], with the document's parsed YAML tree (`root`)
/// for exact positions; without it, the positions kept in the document are
/// used.
pub fn check_document_nodes(doc: &Document, root: Option<&Node>, d: &mut Diagnostics) {
    let mut phase_names: Vec<(&str, Pos)> = Vec::new();
    for (pi, phase) in doc.phases.iter().enumerate() {
        let raw = raw_phase(root, phase);
        let pfield = raw.map_or(format!("phases[{pi}]"), |(i, _)| format!("phases[{i}]"));
        let name_pos = raw
            .and_then(|(_, n)| n.get("name"))
            .map_or(phase.pos, |n| n.pos);
        if let Some((_, first)) = phase_names.iter().find(|(n, _)| *n == phase.name) {
            d.error(
                name_pos,
                "duplicate-phase",
                format!("{pfield}.name"),
                format!("phase `{}` is declared twice", phase.name),
                Some(format!(
                    "`{}` is first declared on line {}; put all of its steps in one phase",
                    phase.name, first.line
                )),
            );
        }
        phase_names.push((&phase.name, name_pos));
        let mut step_names: Vec<(&str, Pos)> = Vec::new();
        let mut loop_names: Vec<(&str, Pos)> = Vec::new();
        for (si, step) in phase.steps.iter().enumerate() {
            let rs = raw_step(raw, step, pi, si);
            let name_pos = rs
                .node
                .and_then(|n| n.get("name"))
                .map_or(step.pos, |n| n.pos);
            if let Some((_, first)) = step_names.iter().find(|(n, _)| *n == step.name) {
                d.error(
                    name_pos,
                    "duplicate-step",
                    format!("{}.name", rs.field),
                    format!(
                        "step `{}` appears twice in phase `{}`",
                        step.name, phase.name
                    ),
                    Some(format!(
                        "the first `{}` is on line {}; step names are unique within a phase",
                        step.name, first.line
                    )),
                );
            }
            step_names.push((&step.name, name_pos));
            if let Some((name, pos)) = step
                .looping
                .as_ref()
                .and_then(|l| l.name.as_deref().map(|n| (n, l.name_pos)))
            {
                if let Some((_, first)) = loop_names.iter().find(|(n, _)| *n == name) {
                    d.error(
                        pos,
                        "duplicate-loop",
                        format!("{}.loop.name", rs.field),
                        format!("loop name `{name}` is used twice in phase `{}`", phase.name),
                        Some(format!(
                            "the first loop `{name}` is on line {}; loop names are unique within a phase",
                            first.line
                        )),
                    );
                }
                loop_names.push((name, pos));
            }
            check_references(doc, pi, si, step, &rs, d);
        }
    }
}

fn walk(n: &Node, path: String, out: &mut Vec<(String, Pos, String)>) {
    match &n.value {
        Value::Scalar(s, _) => out.push((s.clone(), n.pos, path)),
        Value::Seq(items) => {
            for (i, it) in items.iter().enumerate() {
                walk(it, format!("{path}[{i}]"), out);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                walk(v, format!("{path}.{}", k.as_str().unwrap_or_default()), out);
            }
        }
    }
}

/// Every string of a step that may hold `{{ }}` expressions, with its
/// position and field path (relative to the step).
fn templates_of(step: &Step, raw: Option<&Node>) -> Vec<(String, Pos, String)> {
    let mut out = Vec::new();
    if let Some(inputs) = &step.inputs {
        walk(inputs, "inputs".into(), &mut out);
    }
    match raw.and_then(|n| n.get("if")) {
        Some(cond) => walk(cond, "if".into(), &mut out),
        None => {
            if let Some(c) = &step.condition {
                out.extend(
                    c.cond
                        .operands_at()
                        .into_iter()
                        .map(|(s, pos)| (s.to_string(), pos, "if".to_string())),
                );
            }
        }
    }
    let raw_each = raw
        .and_then(|n| n.get("loop"))
        .and_then(|l| l.get("forEach"));
    match raw_each {
        Some(each) => walk(each, "loop.forEach".into(), &mut out),
        None => {
            if let Some(l) = &step.looping {
                out.extend(
                    l.templates()
                        .into_iter()
                        .map(|s| (s.to_string(), l.name_pos, "loop".to_string())),
                );
            }
        }
    }
    out
}

/// Finds `needle` (an expression as written inside a scalar) in the source,
/// searching from `cursor` through the lines the scalar can span, and
/// moves the cursor past it. `None` when it cannot be found verbatim (for
/// example when YAML escapes changed its text).
fn locate(lines: &[&str], cursor: &mut Pos, needle: &str, scalar: &str) -> Option<Pos> {
    let span = scalar.lines().count() + 2;
    for line_no in cursor.line..cursor.line + span {
        let line = lines.get(line_no.checked_sub(1)?)?;
        let from = if line_no == cursor.line {
            line.char_indices()
                .nth(cursor.column.saturating_sub(1))
                .map_or(line.len(), |(i, _)| i)
        } else {
            0
        };
        if let Some(i) = line[from..].find(needle) {
            let start = from + i;
            let column = line[..start].chars().count() + 1;
            let found = Pos {
                line: line_no,
                column,
            };
            *cursor = Pos {
                line: line_no,
                column: column + needle.chars().count(),
            };
            return Some(found);
        }
    }
    None
}

fn names_hint(what: &str, key: &str, names: &[&str], none: String) -> String {
    if names.is_empty() {
        return none;
    }
    match did_you_mean(key, names.iter().copied()) {
        Some(dym) => format!("{dym} ({what}s: {})", names.join(", ")),
        None => format!("{what}s: {}", names.join(", ")),
    }
}

fn check_references(
    doc: &Document,
    pi: usize,
    si: usize,
    step: &Step,
    raw: &RawStep<'_>,
    d: &mut Diagnostics,
) {
    let declared = || {
        doc.parameters
            .iter()
            .map(|p| p.name.as_str())
            .chain(doc.constants.iter().map(|c| c.name.as_str()))
    };
    let own_loop = step.looping.as_ref().and_then(|l| l.name.as_deref());
    let lines: Vec<&str> = doc.text.lines().collect();
    for (text, node_pos, sub) in templates_of(step, raw.node) {
        let f = format!("{}.{sub}", raw.field);
        let mut cursor = node_pos;
        for occ in expr::occurrences(&text) {
            // point at the `{{` itself; at the value when it cannot be found
            // verbatim (YAML escapes)
            let pos =
                locate(&lines, &mut cursor, &text[occ.range.clone()], &text).unwrap_or(node_pos);
            let shown = format!("`{{{{ {} }}}}`", occ.text);
            match &occ.reference {
                Reference::Var(name) => {
                    if !declared().any(|n| n == name) {
                        d.error(
                            pos,
                            "undeclared-variable",
                            &f,
                            format!("{shown} refers to no parameter or constant"),
                            did_you_mean(name, declared()).or(Some(format!(
                                "declare it under `parameters:` (`- {name}: {{type: string}}`) or `constants:`"
                            ))),
                        );
                    }
                }
                Reference::Loop { name, .. } => {
                    if name != "loop" && Some(name.as_str()) != own_loop {
                        let elsewhere = doc.phases.iter().flat_map(|p| &p.steps).any(|s| {
                            s.looping.as_ref().and_then(|l| l.name.as_deref())
                                == Some(name.as_str())
                        });
                        d.error(
                            pos,
                            "undeclared-loop",
                            &f,
                            format!("{shown} refers to no loop of this step"),
                            Some(if elsewhere {
                                format!("a named loop can only be referred to inside its own step; `{name}` is another step's loop")
                            } else {
                                "name the step's loop (`loop: {name: …}`) or use `{{ loop.index }}` / `{{ loop.value }}`".to_string()
                            }),
                        );
                    }
                }
                Reference::Chain {
                    phase,
                    step: target,
                    side,
                    index,
                    key,
                } => {
                    let Some((tpi, tphase)) = doc
                        .phases
                        .iter()
                        .enumerate()
                        .find(|(_, p)| &p.name == phase)
                    else {
                        let names: Vec<&str> = doc.phases.iter().map(|p| p.name.as_str()).collect();
                        d.error(
                            pos,
                            "chain-missing-phase",
                            &f,
                            format!("{shown}: there is no phase `{phase}` in this document"),
                            Some(names_hint(
                                "phase",
                                phase,
                                &names,
                                "chaining cannot reach other documents".into(),
                            )),
                        );
                        continue;
                    };
                    let Some((tsi, tstep)) = tphase
                        .steps
                        .iter()
                        .enumerate()
                        .find(|(_, s)| &s.name == target)
                    else {
                        let names: Vec<&str> =
                            tphase.steps.iter().map(|s| s.name.as_str()).collect();
                        d.error(
                            pos,
                            "chain-missing-step",
                            &f,
                            format!("{shown}: phase `{phase}` has no step `{target}`"),
                            Some(names_hint(
                                "step",
                                target,
                                &names,
                                format!("phase `{phase}` has no steps"),
                            )),
                        );
                        continue;
                    };
                    if (tpi, tsi) == (pi, si) {
                        d.error(
                            pos,
                            "chain-forward",
                            &f,
                            format!("{shown} refers to the step itself, which has not run yet"),
                            Some("chaining reads steps that run before this one; use `{{ loop.value }}` for the current iteration".into()),
                        );
                        continue;
                    }
                    if (tpi, tsi) > (pi, si) {
                        d.error(
                            pos,
                            "chain-forward",
                            &f,
                            format!("{shown} refers to a step that has not run yet"),
                            Some(format!(
                                "chaining reads steps that run before this one; `{phase}.{target}` runs later"
                            )),
                        );
                        continue;
                    }
                    let names: Vec<&str> = match side {
                        Side::Outputs => outputs_of(&tstep.action).to_vec(),
                        Side::Inputs => spec::find(&tstep.action)
                            .map(|s| s.fields.iter().map(|f| f.name).collect())
                            .unwrap_or_default(),
                    };
                    let what = match side {
                        Side::Outputs => "output",
                        Side::Inputs => "input",
                    };
                    if !names.contains(&key.as_str()) {
                        d.error(
                            pos,
                            "chain-missing-field",
                            &f,
                            format!(
                                "{shown}: `{target}` ({}) has no {what} `{key}`",
                                tstep.action
                            ),
                            Some(names_hint(
                                what,
                                key,
                                &names,
                                format!("`{}` has no {what}s", tstep.action),
                            )),
                        );
                        continue;
                    }
                    if let (Some(i), Side::Inputs) = (index, side) {
                        let len = tstep
                            .inputs
                            .as_ref()
                            .and_then(Node::as_seq)
                            .map(<[Node]>::len);
                        if len.is_some_and(|n| *i >= n) || (len.is_none() && *i > 0) {
                            d.error(
                                pos,
                                "chain-missing-field",
                                &f,
                                format!("{shown}: step `{target}` has no inputs[{i}]"),
                                Some(match len {
                                    Some(1) | None => "the step has one input item: use `inputs[0]`".to_string(),
                                    Some(n) => format!("the step has {n} input items: inputs[0] to inputs[{}]", n - 1),
                                }),
                            );
                        }
                    }
                }
                Reference::Ssm(name) => d.error(
                    pos,
                    "unsupported-expression",
                    &f,
                    format!("`{{{{ aws:ssm:resolve({name}) }}}}` needs AWS Systems Manager on the instance, which kiln does not use"),
                    Some("pass the value as a parameter instead (mark it secret in the recipe)".into()),
                ),
            }
        }
    }
}
