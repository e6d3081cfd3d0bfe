//! Waiting for a VM Import/Export task: a pure state machine fed with one
//! observation per Describe call, and the loop that drives it.
//!
//! Success is judged only by the top-level status (`completed`) and the
//! result id; `deleting`/`deleted` fail at once with the status message
//! verbatim. Instead of a wall-clock limit (imports take tens of minutes),
//! a task whose status, message and progress stay the same for
//! `stall_polls` polls in a row is reported as stalled.

use std::time::Duration;

use super::AwsError;

/// One observation of a task (ImportImage, ImportSnapshot or ExportImage).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task id.
    pub task_id: String,
    /// Top-level status: `active`, `completed`, `deleting`, `deleted`.
    pub status: String,
    /// The status message (`validating`, `ClientError: …`), verbatim.
    pub message: Option<String>,
    /// Progress in percent, when reported.
    pub progress: Option<u8>,
    /// The result: the AMI id (ImportImage), snapshot id (ImportSnapshot),
    /// or the task id again (ExportImage).
    pub result_id: Option<String>,
}

impl TaskStatus {
    /// A one-line description, e.g. `active: converting (28%)`.
    pub fn line(&self) -> String {
        let mut s = self.status.clone();
        if let Some(m) = &self.message {
            s.push_str(": ");
            s.push_str(m);
        }
        if let Some(p) = self.progress {
            s.push_str(&format!(" ({p}%)"));
        }
        s
    }
}

/// Parses a progress string (`"28"`, `"28%"`).
pub fn parse_progress(s: Option<&str>) -> Option<u8> {
    s.and_then(|s| s.trim().trim_end_matches('%').parse::<u8>().ok())
}

/// What the poller decided after an observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still running; `changed` when status, message or progress moved.
    Running {
        /// Whether anything changed since the last observation.
        changed: bool,
    },
    /// Completed with this result id.
    Done(String),
    /// Failed: the status and the message, verbatim.
    Failed {
        /// `deleting` or `deleted` (or `completed` without a result).
        status: String,
        /// The status message.
        message: String,
    },
    /// No change for too many polls.
    Stalled {
        /// Polls without change.
        polls: u32,
    },
}

/// The polling state machine.
#[derive(Clone, Debug)]
pub struct Poller {
    last: Option<TaskStatus>,
    unchanged: u32,
    stall_polls: u32,
}

impl Poller {
    /// A poller that reports a stall after `stall_polls` unchanged polls.
    pub fn new(stall_polls: u32) -> Self {
        Poller {
            last: None,
            unchanged: 0,
            stall_polls: stall_polls.max(1),
        }
    }

    /// Feeds one observation.
    pub fn observe(&mut self, s: &TaskStatus) -> Verdict {
        let status = s.status.to_ascii_lowercase();
        if status == "deleting" || status == "deleted" || status == "error" {
            return Verdict::Failed {
                status,
                message: s
                    .message
                    .clone()
                    .unwrap_or_else(|| "(no status message)".into()),
            };
        }
        if status == "completed" {
            return match &s.result_id {
                Some(id) => Verdict::Done(id.clone()),
                None => Verdict::Failed {
                    status,
                    message: "the task completed without a result id".into(),
                },
            };
        }
        let changed = self.last.as_ref() != Some(s);
        if changed {
            self.unchanged = 0;
        } else {
            self.unchanged += 1;
        }
        self.last = Some(s.clone());
        if self.unchanged >= self.stall_polls {
            return Verdict::Stalled {
                polls: self.unchanged,
            };
        }
        Verdict::Running { changed }
    }
}

/// How to poll.
#[derive(Clone, Copy, Debug)]
pub struct PollOptions {
    /// Pause between Describe calls.
    pub interval: Duration,
    /// Unchanged polls before giving up as stalled.
    pub stall_polls: u32,
}

impl Default for PollOptions {
    /// 10 s between polls; stalled after 2 h without any change.
    fn default() -> Self {
        PollOptions {
            interval: Duration::from_secs(10),
            stall_polls: 720,
        }
    }
}

/// Polls `describe` until the task completes (returns the result id),
/// fails, or stalls. `on_change` sees every observation that differs from
/// the previous one.
pub async fn wait<F, Fut>(
    opts: PollOptions,
    mut describe: F,
    on_change: &(dyn Fn(&TaskStatus) + Sync),
) -> Result<String, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<TaskStatus, AwsError>>,
{
    let mut poller = Poller::new(opts.stall_polls);
    loop {
        let s = describe().await?;
        match poller.observe(&s) {
            Verdict::Running { changed } => {
                if changed {
                    on_change(&s);
                }
            }
            Verdict::Done(id) => {
                on_change(&s);
                return Ok(id);
            }
            Verdict::Failed { status, message } => {
                on_change(&s);
                return Err(AwsError::TaskFailed {
                    task_id: s.task_id,
                    status,
                    message,
                });
            }
            Verdict::Stalled { polls } => {
                return Err(AwsError::Stalled {
                    task_id: s.task_id.clone(),
                    polls,
                    last: s.line(),
                })
            }
        }
        tokio::time::sleep(opts.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: &str, msg: Option<&str>, p: Option<u8>, id: Option<&str>) -> TaskStatus {
        TaskStatus {
            task_id: "import-ami-0123".into(),
            status: status.into(),
            message: msg.map(Into::into),
            progress: p,
            result_id: id.map(Into::into),
        }
    }

    #[test]
    fn runs_through_to_done() {
        let mut p = Poller::new(3);
        assert_eq!(
            p.observe(&st("active", Some("pending"), Some(2), None)),
            Verdict::Running { changed: true }
        );
        assert_eq!(
            p.observe(&st("active", Some("converting"), Some(28), None)),
            Verdict::Running { changed: true }
        );
        assert_eq!(
            p.observe(&st("completed", None, None, Some("ami-1"))),
            Verdict::Done("ami-1".into())
        );
    }

    #[test]
    fn deleting_fails_at_once_with_the_message_verbatim() {
        let mut p = Poller::new(3);
        let msg = "ClientError: Disk validation failed [Unsupported VMDK File Format]";
        assert_eq!(
            p.observe(&st("deleting", Some(msg), None, None)),
            Verdict::Failed {
                status: "deleting".into(),
                message: msg.into()
            }
        );
        // snapshot details may say completed: only the top level counts
        assert!(matches!(
            p.observe(&st("completed", None, None, None)),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn unchanged_polls_stall_and_a_change_resets_the_count() {
        let mut p = Poller::new(2);
        let a = st("active", Some("updating"), Some(39), None);
        assert_eq!(p.observe(&a), Verdict::Running { changed: true });
        assert_eq!(p.observe(&a), Verdict::Running { changed: false });
        let b = st("active", Some("updating"), Some(40), None);
        assert_eq!(p.observe(&b), Verdict::Running { changed: true });
        assert_eq!(p.observe(&b), Verdict::Running { changed: false });
        assert_eq!(p.observe(&b), Verdict::Stalled { polls: 2 });
    }

    #[test]
    fn progress_strings() {
        assert_eq!(parse_progress(Some("28")), Some(28));
        assert_eq!(parse_progress(Some("85%")), Some(85));
        assert_eq!(parse_progress(Some("x")), None);
        assert_eq!(parse_progress(None), None);
        assert_eq!(
            st("active", Some("booting"), Some(59), None).line(),
            "active: booting (59%)"
        );
    }
}
