//! Running component phases in a guest through the toe engine, as Image
//! Builder runs AWSTOE: one run per stage, documents in recipe order,
//! phases in document order. Scripts go to the guest's working directory
//! (`TOE_*`, which the seal removes); the logs stay on the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::target::Target;
use crate::toe::actions::spec::OsPlatform;
use crate::toe::actions::transfer::Clients;
use crate::toe::console::{Console, Redactor};
use crate::toe::logs;
use crate::toe::report::{RunReport, Status};
use crate::toe::runner::{DocumentRun, Engine, Outcome, Progress};

/// Errors that stop a phase run before it reports (a failed step is not one:
/// it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    /// The host log folder could not be written.
    #[error("the toe log folder")]
    Logs(#[from] logs::LogError),
    /// The scratch folder in the guest could not be made.
    #[error("cannot create {path} in the guest")]
    Scratch {
        /// The folder.
        path: String,
        /// The cause.
        #[source]
        source: crate::target::TargetError,
    },
    /// The phases took longer than allowed.
    #[error("the {phases} phases did not finish within {seconds} s (the step running then was stopped); raise build.timeouts in the recipe or the timeout flags")]
    Timeout {
        /// Which phases.
        phases: String,
        /// The limit.
        seconds: u64,
    },
    /// A step asked for a reboot that the target could not do.
    #[error("a step asked for a reboot, and the guest could not be rebooted and reached again")]
    RebootDeferred,
}

/// What to run.
pub struct PhaseRun<'a> {
    /// The guest.
    pub target: &'a dyn Target,
    /// The documents with their parameters.
    pub docs: &'a [DocumentRun],
    /// The phases (a filter; document order applies).
    pub phases: &'a [&'a str],
    /// Host folder in which the `TOE_*` log folder is made.
    pub log_dir: &'a Path,
    /// The guest's working directory.
    pub working_directory: &'a str,
    /// Secret values to mask in the console log.
    pub redactor: Redactor,
    /// Also print the steps' output on stderr.
    pub echo: bool,
    /// Limit for the whole run.
    pub timeout: Duration,
}

/// What a phase run did.
pub struct PhaseResult {
    /// awstoe's detailed report.
    pub report: RunReport,
    /// The host log folder.
    pub log_folder: PathBuf,
    /// For each failed step: `document: phase/step: message` and its output.
    pub failures: Vec<String>,
}

impl PhaseResult {
    /// Whether the run failed (`Continue` failures too; only `Ignore` is tolerated).
    pub fn failed(&self) -> bool {
        self.report.status == Status::Failed
    }
}

impl PhaseRun<'_> {
    /// Runs the phases and writes awstoe's log folder.
    pub async fn run(self) -> Result<PhaseResult, PhaseError> {
        let execution_id = uuid::Uuid::new_v4().to_string();
        let folder_name = logs::folder_name(&execution_id);
        let log_folder = self.log_dir.join(&folder_name);
        std::fs::create_dir_all(&log_folder).map_err(|source| logs::LogError::Io {
            path: log_folder.display().to_string(),
            source,
        })?;
        logs::write_documents(&log_folder, self.docs)?;
        let scratch = format!(
            "{}/{folder_name}/scripts",
            self.working_directory.trim_end_matches('/')
        );
        self.target
            .create_dir_all(&scratch)
            .await
            .map_err(|source| PhaseError::Scratch {
                path: scratch.clone(),
                source,
            })?;
        let console_path = log_folder.join("console.log");
        let console_file =
            std::fs::File::create(&console_path).map_err(|source| logs::LogError::Io {
                path: console_path.display().to_string(),
                source,
            })?;
        let console = Console::new(Some(console_file), self.echo, self.redactor.clone());
        let clients = Clients::default();
        let engine = Engine {
            target: self.target,
            console: &console,
            clients: &clients,
            env: Vec::new(),
            scratch_dir: scratch,
            os: OsPlatform::Linux,
            log_url: log_folder.display().to_string(),
        };
        let phases: Vec<String> = self.phases.iter().map(|p| p.to_string()).collect();
        let progress = Progress::new(&execution_id, self.docs.len());
        let outcome =
            tokio::time::timeout(self.timeout, engine.run(self.docs, Some(&phases), progress))
                .await
                .map_err(|_| PhaseError::Timeout {
                    phases: self.phases.join(", "),
                    seconds: self.timeout.as_secs(),
                })?;
        let progress = match outcome {
            Outcome::Finished(p) => p,
            Outcome::RebootDeferred(_) => return Err(PhaseError::RebootDeferred),
        };
        logs::write_json(&log_folder.join("detailedoutput.json"), &progress.report)?;
        logs::write_json(&log_folder.join("chaining.json"), &progress.chaining)?;
        let console_text = std::fs::read_to_string(&console_path).unwrap_or_default();
        let failures = failures(&progress.report, &console_text);
        Ok(PhaseResult {
            report: progress.report,
            log_folder,
            failures,
        })
    }
}

/// Each failed step of a report, with its output cut from the console.
pub fn failures(report: &RunReport, console: &str) -> Vec<String> {
    let mut out = Vec::new();
    for d in &report.documents {
        for p in &d.phases {
            for s in p.steps.iter().filter(|s| s.status == Status::Failed) {
                let label = format!("{}/{}", p.name, s.name);
                let mut text = format!("{}: step {label} failed: {}", d.name, s.failure_message);
                if let Some(output) = logs::step_output(console, &label, 40) {
                    if !output.trim().is_empty() {
                        text.push_str("\n  output (last lines):\n");
                        for line in output.lines() {
                            text.push_str("    ");
                            text.push_str(line);
                            text.push('\n');
                        }
                    }
                }
                out.push(text.trim_end().to_string());
            }
        }
    }
    out
}
