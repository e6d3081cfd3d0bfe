//! What `{{ }}` expressions of a step resolve against: the document's
//! parameters and constants, earlier steps' records, and the loop iteration.

use std::collections::BTreeMap;

use super::expr::{self, LoopField, Reference, Resolved, Side};
use super::runner::{DocumentRun, StepRecord};
use crate::util::yaml::{Node, Value};

/// A step's view of everything its expressions can name.
pub(crate) struct Scope<'s> {
    pub(crate) doc: &'s DocumentRun,
    pub(crate) records: &'s BTreeMap<String, StepRecord>,
    pub(crate) loop_name: Option<&'s str>,
    pub(crate) iteration: Option<(usize, &'s str)>,
}

pub(crate) fn record_key(phase: &str, step: &str) -> String {
    format!("{phase}\n{step}")
}

pub(crate) fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Scope<'_> {
    pub(crate) fn resolve(&self, r: &Reference) -> Resolved {
        match r {
            Reference::Var(name) => {
                if let Some(v) = self.doc.parameters.get(name) {
                    return Resolved::Value(v.clone());
                }
                match self
                    .doc
                    .loaded
                    .doc
                    .constants
                    .iter()
                    .find(|c| &c.name == name)
                {
                    Some(c) => Resolved::Value(c.value.clone()),
                    None => Resolved::Error("no such parameter or constant".into()),
                }
            }
            Reference::Loop { name, field } => match self.iteration {
                Some((i, v)) if name == "loop" || Some(name.as_str()) == self.loop_name => {
                    Resolved::Value(if *field == LoopField::Index {
                        i.to_string()
                    } else {
                        v.to_string()
                    })
                }
                _ => Resolved::Keep,
            },
            Reference::Chain {
                phase,
                step,
                side,
                index,
                key,
            } => {
                let Some(rec) = self.records.get(&record_key(phase, step)) else {
                    return Resolved::Error(format!("step `{phase}.{step}` has not run (it was skipped, failed, or comes later)"));
                };
                match side {
                    Side::Outputs => match rec.outputs.get(key) {
                        Some(v) => Resolved::Value(v.clone()),
                        None => {
                            Resolved::Error(format!("step `{phase}.{step}` has no output `{key}`"))
                        }
                    },
                    Side::Inputs => {
                        match rec.inputs.get(index.unwrap_or(0)).and_then(|m| m.get(key)) {
                            Some(v) => Resolved::Value(json_text(v)),
                            None => Resolved::Error(format!(
                                "step `{phase}.{step}` has no input `{key}`"
                            )),
                        }
                    }
                }
            }
            Reference::Ssm(_) => Resolved::Error("aws:ssm:resolve is not available".into()),
        }
    }

    pub(crate) fn render(
        &self,
        text: &str,
        chain_log: &mut Vec<(String, String)>,
    ) -> Result<String, String> {
        expr::render(text, &mut |r| {
            let out = self.resolve(r);
            if let (Reference::Chain { .. }, Resolved::Value(v)) = (r, &out) {
                chain_log.push((format!("{r:?}"), v.clone()));
            }
            out
        })
    }

    pub(crate) fn render_node(
        &self,
        node: &Node,
        chain_log: &mut Vec<(String, String)>,
    ) -> Result<serde_json::Value, String> {
        Ok(match &node.value {
            _ if node.is_null() => serde_json::Value::Null,
            Value::Scalar(s, _) => serde_json::Value::String(self.render(s, chain_log)?),
            Value::Seq(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.render_node(i, chain_log))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.as_str().unwrap_or_default().to_string(),
                            self.render_node(v, chain_log)?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}
