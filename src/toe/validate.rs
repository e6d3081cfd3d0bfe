//! Checks across a whole document: unique names, and that every `{{ }}`
//! expression refers to something declared or to a step that has run.

use super::actions::spec;
use super::diag::{did_you_mean, Diagnostics};
use super::document::{Document, Step};
use super::expr::{self, Reference, Side};
use super::yaml::{Node, Pos};

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

/// Runs the document-wide checks, adding to `d`.
pub fn check_document(doc: &Document, d: &mut Diagnostics) {
    let mut phase_names: Vec<&str> = Vec::new();
    for (pi, phase) in doc.phases.iter().enumerate() {
        if phase_names.contains(&phase.name.as_str()) {
            d.error(
                phase.pos,
                "duplicate-phase",
                format!("phases[{pi}].name"),
                format!("phase `{}` is declared twice", phase.name),
                None,
            );
        }
        phase_names.push(&phase.name);
        let mut step_names: Vec<&str> = Vec::new();
        let mut loop_names: Vec<&str> = Vec::new();
        for (si, step) in phase.steps.iter().enumerate() {
            let field = format!("phases[{pi}].steps[{si}]");
            if step_names.contains(&step.name.as_str()) {
                d.error(
                    step.pos,
                    "duplicate-step",
                    format!("{field}.name"),
                    format!(
                        "step `{}` appears twice in phase `{}`",
                        step.name, phase.name
                    ),
                    Some("step names are unique within a phase".into()),
                );
            }
            step_names.push(&step.name);
            if let Some(name) = step
                .looping
                .as_ref()
                .and_then(|l| l.name.as_deref().map(|n| (n, l.name_pos)))
            {
                if loop_names.contains(&name.0) {
                    d.error(
                        name.1,
                        "duplicate-loop",
                        format!("{field}.loop.name"),
                        format!(
                            "loop name `{}` is used twice in phase `{}`",
                            name.0, phase.name
                        ),
                        None,
                    );
                }
                loop_names.push(name.0);
            }
            check_references(doc, pi, si, step, &field, d);
        }
    }
}

fn templates_of(step: &Step) -> Vec<(String, Pos, String)> {
    fn walk(n: &Node, path: String, out: &mut Vec<(String, Pos, String)>) {
        match &n.value {
            super::yaml::Value::Scalar(s, _) => out.push((s.clone(), n.pos, path)),
            super::yaml::Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    walk(it, format!("{path}[{i}]"), out);
                }
            }
            super::yaml::Value::Map(entries) => {
                for (k, v) in entries {
                    walk(v, format!("{path}.{}", k.as_str().unwrap_or_default()), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(inputs) = &step.inputs {
        walk(inputs, "inputs".into(), &mut out);
    }
    if let Some(c) = &step.condition {
        out.extend(
            c.cond
                .operands()
                .into_iter()
                .map(|s| (s.to_string(), step.pos, "if".to_string())),
        );
    }
    if let Some(l) = &step.looping {
        out.extend(
            l.templates()
                .into_iter()
                .map(|s| (s.to_string(), l.name_pos, "loop".to_string())),
        );
    }
    out
}

fn check_references(
    doc: &Document,
    pi: usize,
    si: usize,
    step: &Step,
    field: &str,
    d: &mut Diagnostics,
) {
    let declared = || {
        doc.parameters
            .iter()
            .map(|p| p.name.as_str())
            .chain(doc.constants.iter().map(|c| c.name.as_str()))
    };
    let own_loop = step.looping.as_ref().and_then(|l| l.name.as_deref());
    for (text, pos, sub) in templates_of(step) {
        let f = format!("{field}.{sub}");
        for occ in expr::occurrences(&text) {
            match &occ.reference {
                Reference::Var(name) => {
                    if !declared().any(|n| n == name) {
                        d.error(pos, "undeclared-variable", &f, format!("`{{{{ {name} }}}}` refers to no parameter or constant"),
                            did_you_mean(name, declared()).or(Some(format!("declare it under `parameters:` or `constants:`"))));
                    }
                }
                Reference::Loop { name, .. } => {
                    if name != "loop" && Some(name.as_str()) != own_loop {
                        let elsewhere = doc.phases.iter().flat_map(|p| &p.steps)
                            .any(|s| s.looping.as_ref().and_then(|l| l.name.as_deref()) == Some(name));
                        d.error(pos, "undeclared-loop", &f, format!("`{{{{ {} }}}}` refers to no loop of this step", occ.text),
                            Some(if elsewhere {
                                format!("a named loop can only be referred to inside its own step; `{name}` is another step's loop")
                            } else {
                                "name the step's loop (`loop: {name: …}`) or use `{{ loop.index }}` / `{{ loop.value }}`".to_string()
                            }));
                    }
                }
                Reference::Chain { phase, step: target, side, index, key } => {
                    let Some((tpi, tphase)) = doc.phases.iter().enumerate().find(|(_, p)| &p.name == phase) else {
                        d.error(pos, "chain-missing-step", &f, format!("`{{{{ {} }}}}`: there is no phase `{phase}` in this document", occ.text),
                            did_you_mean(phase, doc.phases.iter().map(|p| p.name.as_str())));
                        continue;
                    };
                    let Some((tsi, tstep)) = tphase.steps.iter().enumerate().find(|(_, s)| &s.name == target) else {
                        d.error(pos, "chain-missing-step", &f, format!("`{{{{ {} }}}}`: phase `{phase}` has no step `{target}`", occ.text),
                            did_you_mean(target, tphase.steps.iter().map(|s| s.name.as_str())));
                        continue;
                    };
                    if (tpi, tsi) >= (pi, si) {
                        d.error(pos, "chain-forward", &f, format!("`{{{{ {} }}}}` refers to a step that has not run yet", occ.text),
                            Some("chaining reads steps that run before this one".into()));
                        continue;
                    }
                    let ok = match side {
                        Side::Outputs => outputs_of(&tstep.action).contains(&key.as_str()),
                        Side::Inputs => spec::find(&tstep.action).is_some_and(|s| s.field(key).is_some()),
                    };
                    if !ok {
                        let (what, names): (&str, Vec<&str>) = match side {
                            Side::Outputs => ("output", outputs_of(&tstep.action).to_vec()),
                            Side::Inputs => ("input", spec::find(&tstep.action).map(|s| s.fields.iter().map(|f| f.name).collect()).unwrap_or_default()),
                        };
                        d.error(pos, "chain-missing-field", &f,
                            format!("`{{{{ {} }}}}`: `{}` ({}) has no {what} `{key}`", occ.text, target, tstep.action),
                            Some(if names.is_empty() { format!("`{}` has no {what}s", tstep.action) } else { format!("{what}s: {}", names.join(", ")) }));
                    }
                    if let (Some(i), Side::Inputs) = (index, side) {
                        let len = tstep.inputs.as_ref().and_then(Node::as_seq).map(<[Node]>::len);
                        if len.is_some_and(|n| *i >= n) || (len.is_none() && *i > 0) {
                            d.error(pos, "chain-missing-field", &f, format!("`{{{{ {} }}}}`: step `{target}` has no inputs[{i}]", occ.text), None);
                        }
                    }
                }
                Reference::Ssm(name) => d.error(pos, "unsupported-expression", &f,
                    format!("`{{{{ aws:ssm:resolve({name}) }}}}` needs AWS Systems Manager on the instance, which kiln does not use"),
                    Some("pass the value as a parameter instead (mark it secret in the recipe)".into())),
            }
        }
    }
}
