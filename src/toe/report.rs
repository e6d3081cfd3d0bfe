//! Run results in AWSTOE's shapes: the `detailedoutput.json` tree, the
//! summary printed at the end, and how statuses roll up.

use serde::{Deserialize, Serialize};

/// The status of a step, phase, document or run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything succeeded.
    Success,
    /// Something failed.
    Failed,
    /// A step failed with `onFailure: Ignore`.
    #[serde(rename = "ignoredfailure")]
    IgnoredFailure,
    /// Succeeded, with ignored failures inside.
    #[serde(rename = "successwithignoredfailure")]
    SuccessWithIgnoredFailure,
    /// A step whose `if` skipped it (counts as success).
    Skipped,
}

impl Status {
    /// True for the statuses that count as success.
    pub fn is_success(self) -> bool {
        !matches!(self, Status::Failed)
    }

    /// Rolls child statuses up: failed if any failed, with-ignored if any was
    /// ignored, success otherwise.
    pub fn roll_up(children: impl IntoIterator<Item = Status>) -> Status {
        let mut out = Status::Success;
        for s in children {
            match s {
                Status::Failed => return Status::Failed,
                Status::IgnoredFailure | Status::SuccessWithIgnoredFailure => {
                    out = Status::SuccessWithIgnoredFailure
                }
                _ => {}
            }
        }
        out
    }
}

/// One step's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// Status.
    pub status: Status,
    /// Why it failed.
    pub failure_message: String,
    /// Effective timeout.
    pub timeout_seconds: i64,
    /// Effective failure handling.
    pub on_failure: String,
    /// Effective attempts.
    pub max_attempts: u32,
    /// Action name.
    pub action: String,
    /// RFC 3339 start time.
    pub start_time: String,
    /// RFC 3339 end time.
    pub end_time: String,
    /// Resolved inputs: a JSON-encoded list.
    pub inputs: String,
    /// Outputs: a JSON-encoded list of one map.
    pub outputs: String,
    /// The loop, if any: name and iteration count.
    #[serde(rename = "loop")]
    pub looping: Option<serde_json::Value>,
    /// The child run of ExecuteDocument.
    pub detailed_output: Option<Box<RunReport>>,
}

/// One phase's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// Status.
    pub status: Status,
    /// Start time.
    pub start_time: String,
    /// End time.
    pub end_time: String,
    /// Why it failed.
    pub failure_message: String,
    /// Steps that ran (or were skipped).
    pub steps: Vec<StepReport>,
}

/// One document's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReport {
    /// Document name.
    pub name: String,
    /// Where it was read from.
    pub file_path: String,
    /// Status.
    pub status: Status,
    /// Description.
    pub description: String,
    /// Start time.
    pub start_time: String,
    /// End time.
    pub end_time: String,
    /// Why it failed.
    pub failure_message: String,
    /// Phases that ran.
    pub phases: Vec<PhaseReport>,
}

/// The whole run (`detailedoutput.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Execution id.
    pub execution_id: String,
    /// Status.
    pub status: Status,
    /// Start time.
    pub start_time: String,
    /// End time.
    pub end_time: String,
    /// Why it failed.
    pub failure_message: String,
    /// Documents in order.
    pub documents: Vec<DocumentReport>,
}

/// The summary `awstoe run` prints.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Execution id.
    pub execution_id: String,
    /// Status.
    pub status: Status,
    /// Steps that failed (Abort or Continue).
    pub failed_step_count: usize,
    /// Steps that ran (skipped ones excluded).
    pub executed_step_count: usize,
    /// Steps that failed with `onFailure: Ignore`.
    pub ignored_failed_step_count: usize,
    /// Why it failed.
    pub failure_message: String,
    /// The log folder.
    pub log_url: String,
}

impl RunReport {
    /// Every step of every document.
    pub fn steps(&self) -> impl Iterator<Item = &StepReport> {
        self.documents
            .iter()
            .flat_map(|d| &d.phases)
            .flat_map(|p| &p.steps)
    }

    /// The summary of this run.
    pub fn summary(&self, log_url: &str) -> Summary {
        let count = |f: &dyn Fn(Status) -> bool| self.steps().filter(|s| f(s.status)).count();
        Summary {
            execution_id: self.execution_id.clone(),
            status: self.status,
            failed_step_count: count(&|s| s == Status::Failed),
            executed_step_count: count(&|s| s != Status::Skipped),
            ignored_failed_step_count: count(&|s| s == Status::IgnoredFailure),
            failure_message: self.failure_message.clone(),
            log_url: log_url.to_string(),
        }
    }

    /// Recomputes phase, document and run statuses and messages from the steps.
    pub fn roll_up(&mut self) {
        for doc in &mut self.documents {
            for phase in &mut doc.phases {
                phase.status = Status::roll_up(phase.steps.iter().map(|s| s.status));
                phase.failure_message = phase
                    .steps
                    .iter()
                    .filter(|s| s.status == Status::Failed)
                    .map(|s| format!("Step {} failed: {}", s.name, s.failure_message))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            doc.status = Status::roll_up(doc.phases.iter().map(|p| p.status));
            doc.failure_message = if doc.status == Status::Failed {
                format!("Document {} failed!", doc.file_path)
            } else {
                String::new()
            };
        }
        self.status = Status::roll_up(self.documents.iter().map(|d| d.status));
        self.failure_message = self
            .documents
            .iter()
            .filter(|d| d.status == Status::Failed)
            .map(|d| d.failure_message.clone())
            .collect::<Vec<_>>()
            .join(" ");
    }
}

/// The current local time in RFC 3339 with the local offset.
pub fn now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_rules() {
        use Status::*;
        assert_eq!(Status::roll_up([Success, Skipped]), Success);
        assert_eq!(
            Status::roll_up([Success, IgnoredFailure]),
            SuccessWithIgnoredFailure
        );
        assert_eq!(Status::roll_up([IgnoredFailure, Failed]), Failed);
        assert_eq!(
            serde_json::to_string(&SuccessWithIgnoredFailure).unwrap(),
            "\"successwithignoredfailure\""
        );
    }
}
