//! What a build tells people and machines while it runs: one line per stage
//! with the elapsed time on the terminal, or versioned JSON lines with
//! `--json`; every line also goes to the build's `kiln.log`, and every
//! event, as a JSON line, to the build's event file (`build-start`, the
//! stages, `build-finished`) whatever the terminal shows. Secrets are
//! redacted before anything is written.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::toe::console::Redactor;
use crate::util::redact;

/// The version of the JSON event lines (`"v"`).
pub const EVENT_VERSION: u32 = 1;

/// The stages of a build, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Making or fetching the parent image.
    Parent,
    /// The accelerator, settings and timeouts; the plan printed.
    Plan,
    /// VM #1: the build and validate phases.
    Build,
    /// Image Builder's cleanup, shutdown.
    Seal,
    /// The overlay flattened into a standalone image.
    Flatten,
    /// VM #2 from the new image: boot test, test phases, reboot test.
    Test,
    /// The tested image exported to the recipe's formats.
    Distribute,
    /// The output directory, published atomically.
    Publish,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Stage {
    /// The stage's name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Parent => "parent",
            Stage::Plan => "plan",
            Stage::Build => "build",
            Stage::Seal => "seal",
            Stage::Flatten => "flatten",
            Stage::Test => "test",
            Stage::Distribute => "distribute",
            Stage::Publish => "publish",
        }
    }
}

/// One event of a build, as written with `--json`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Event<'a> {
    /// [`EVENT_VERSION`].
    pub v: u32,
    /// UTC time, RFC 3339.
    pub time: String,
    /// Seconds since the build started.
    pub elapsed: f64,
    /// `build-start`, `stage-start`, `stage-end`, `stage-failed`, `info`,
    /// `warning`, `result`, `build-finished`.
    pub event: &'a str,
    /// The stage, when the event belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Human-readable text.
    pub message: String,
    /// Seconds the stage took (for `stage-end` and `stage-failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The build's identity and outcome (for `build-start` and
    /// `build-finished`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<&'a BuildFacts>,
}

/// What `build-start` and `build-finished` events say about the build.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildFacts {
    /// kiln's build id (the temporary folder's name).
    pub id: String,
    /// The image name.
    pub name: String,
    /// `x.y.z`.
    pub version: String,
    /// The catalog's build number, once assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<u64>,
    /// The pipeline running the build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// `success` or `failure` (`build-finished` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// The published folder (success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// The logs folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Writes the progress of one build.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    quiet: bool,
    start: Instant,
    log: Mutex<Option<std::fs::File>>,
    events: Mutex<Option<std::fs::File>>,
    redactor: Redactor,
}

/// The stages of one build so far: each finished stage's time, and the
/// stage a dropped guard left unfinished (the one that failed).
#[derive(Debug, Default)]
pub struct StageLog {
    timings: Mutex<Vec<super::manifest::StageTiming>>,
    failed: Mutex<Option<(Stage, Instant)>>,
}

impl StageLog {
    /// The finished stages' times, in order.
    pub fn timings(&self) -> Vec<super::manifest::StageTiming> {
        self.timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stage whose guard was dropped unfinished, and when it started.
    pub fn failed(&self) -> Option<(Stage, Instant)> {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stage under way: [`StageGuard::done`] records its end and time; a
/// guard dropped before that (an error, an interrupt) records the stage as
/// the failed one in its [`StageLog`].
#[derive(Debug)]
#[must_use = "a stage ends with done(); dropping the guard marks it failed"]
pub struct StageGuard<'a> {
    reporter: &'a Reporter,
    log: &'a StageLog,
    stage: Stage,
    started: Instant,
    finished: bool,
}

impl StageGuard<'_> {
    /// A line within this stage.
    pub fn info(&self, message: &str) {
        self.reporter.info(Some(self.stage), message);
    }

    /// A warning within this stage.
    pub fn warn(&self, message: &str) {
        self.reporter.warn(Some(self.stage), message);
    }

    /// The stage ended well.
    pub fn done(mut self, message: &str) {
        let took = self.started.elapsed();
        self.reporter.stage_end(self.stage, took, message);
        self.log
            .timings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(super::manifest::StageTiming {
                stage: self.stage.name().to_string(),
                seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            });
        self.finished = true;
    }
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.log.failed.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((self.stage, self.started));
        }
    }
}

/// Formats a duration as `12.3s` or `4m05s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

impl Reporter {
    /// A reporter printing text (or JSON lines when `json`) to the terminal.
    pub fn new(json: bool, redactor: Redactor) -> Self {
        Reporter {
            json,
            quiet: false,
            start: Instant::now(),
            log: Mutex::new(None),
            events: Mutex::new(None),
            redactor,
        }
    }

    /// A reporter that prints nothing (it still writes the log file once set).
    pub fn quiet() -> Self {
        Reporter {
            quiet: true,
            ..Reporter::new(false, Redactor::default())
        }
    }

    /// Also writes every line (as text) to `path`, from now on.
    pub fn log_to(&self, path: &Path) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        Ok(())
    }

    /// Also writes every event as a JSON line to `path` (created with its
    /// folder; appended to), from now on and to the end of the build.
    pub fn events_to(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        Ok(())
    }

    /// Stops writing the log file (the terminal still gets every line): the
    /// log's digest goes into the manifest, so it must not change after.
    pub fn close_log(&self) {
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the secrets to redact.
    pub fn set_redactor(&mut self, redactor: Redactor) {
        self.redactor = redactor;
    }

    /// The redactor in use.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Time since the build started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn emit(&self, event: &str, stage: Option<Stage>, message: &str, seconds: Option<f64>) {
        self.emit_with(event, stage, message, seconds, None);
    }

    fn emit_with(
        &self,
        event: &str,
        stage: Option<Stage>,
        message: &str,
        seconds: Option<f64>,
        build: Option<&BuildFacts>,
    ) {
        let message = self.redactor.redact(message);
        let elapsed = self.start.elapsed();
        let prefix = stage.map(|s| format!("{}: ", s.name())).unwrap_or_default();
        // names and failure texts in the message may hold control characters
        let shown = crate::util::display::EscapedLines(&message);
        let text = match event {
            "warning" => format!("[{:>7}] {prefix}warning: {shown}", human(elapsed)),
            _ => format!("[{:>7}] {prefix}{shown}", human(elapsed)),
        };
        let structured = Event {
            v: EVENT_VERSION,
            time: chrono::Utc::now().to_rfc3339(),
            elapsed: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            event,
            stage,
            message,
            seconds,
            build,
        };
        // the build facts (failure text, folders) are masked with the message
        let line = Some(redact::to_json(&structured).to_string());
        if let (Some(f), Some(line)) = (
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut(),
            &line,
        ) {
            // a lost event line must not fail the build; kiln.log has it too
            let _ = writeln!(f, "{line}");
        }
        let terminal = build.is_none();
        if terminal {
            if let Some(f) = self.log.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                let _ = writeln!(f, "{} {text}", chrono::Utc::now().to_rfc3339());
            }
        }
        if self.quiet || (!terminal && !self.json) {
            return;
        }
        if self.json {
            if let Some(line) = line {
                println!("{line}");
            }
        } else if event == "warning" || event == "stage-failed" {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// The build starts (an event; no terminal line).
    pub fn build_start(&self, facts: &BuildFacts) {
        let message = format!("{} {}", facts.name, facts.version);
        self.emit_with("build-start", None, &message, None, Some(facts));
    }

    /// The build ended, published or failed (an event; no terminal line).
    /// It is the event file's last line: the file is closed after it.
    pub fn build_finished(&self, facts: &BuildFacts) {
        let message = facts.outcome.unwrap_or_default().to_string();
        self.emit_with("build-finished", None, &message, None, Some(facts));
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A stage begins; the guard ends it (see [`StageGuard`]).
    pub fn stage<'a>(&'a self, log: &'a StageLog, stage: Stage, message: &str) -> StageGuard<'a> {
        self.emit("stage-start", Some(stage), message, None);
        StageGuard {
            reporter: self,
            log,
            stage,
            started: Instant::now(),
            finished: false,
        }
    }

    /// A stage ended well after `took`.
    fn stage_end(&self, stage: Stage, took: Duration, message: &str) {
        let message = format!("{message} ({})", human(took));
        self.emit("stage-end", Some(stage), &message, Some(took.as_secs_f64()));
    }

    /// A stage failed after `took`.
    pub fn stage_failed(&self, stage: Stage, took: Duration, message: &str) {
        let message = format!("failed after {}: {message}", human(took));
        self.emit(
            "stage-failed",
            Some(stage),
            &message,
            Some(took.as_secs_f64()),
        );
    }

    /// Something worth a line, within a stage or not.
    pub fn info(&self, stage: Option<Stage>, message: &str) {
        self.emit("info", stage, message, None);
    }

    /// Something the user should look at.
    pub fn warn(&self, stage: Option<Stage>, message: &str) {
        self.emit("warning", stage, message, None);
    }

    /// The final result line.
    pub fn result(&self, message: &str) {
        self.emit("result", None, message, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(245)), "4m05s");
    }

    #[test]
    fn a_guard_times_its_stage_or_names_it_failed() {
        let r = Reporter::quiet();
        let stages = StageLog::default();
        r.stage(&stages, Stage::Parent, "resolving").done("ok");
        assert!(stages.failed().is_none());
        {
            let g = r.stage(&stages, Stage::Build, "booting");
            g.info("SSH up");
            // an error returns early: the guard is dropped unfinished
        }
        let timings = stages.timings();
        assert_eq!(timings.len(), 1);
        assert_eq!(timings[0].stage, "parent");
        assert_eq!(stages.failed().map(|(s, _)| s), Some(Stage::Build));
    }

    #[test]
    fn log_lines_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kiln.log");
        let r = Reporter {
            quiet: true,
            ..Reporter::new(false, Redactor::new(["hunter2".to_string()]))
        };
        r.log_to(&log).unwrap();
        let stages = StageLog::default();
        r.stage(&stages, Stage::Build, "password is hunter2")
            .done("done");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("build: password is"), "{text}");
        assert!(text.contains("build: done (0.0s)"), "{text}");
    }

    #[test]
    fn the_event_file_gets_every_event_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events/b1.jsonl");
        let r = Reporter {
            quiet: true,
            ..Reporter::new(false, Redactor::new(["hunter2".to_string()]))
        };
        r.events_to(&events).unwrap();
        let mut facts = BuildFacts {
            id: "b1".into(),
            name: "web".into(),
            version: "1.0.0".into(),
            ..BuildFacts::default()
        };
        r.build_start(&facts);
        let stages = StageLog::default();
        r.stage(&stages, Stage::Parent, "token hunter2")
            .done("done");
        facts.outcome = Some("failure");
        facts.failure = Some("boom: https://u:pw@h/ hunter2".into());
        r.build_finished(&facts);
        r.info(None, "after the build: not in its event file");
        let text = std::fs::read_to_string(&events).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["build-start", "stage-start", "stage-end", "build-finished"]
        );
        assert_eq!(lines[0]["build"]["name"], "web");
        assert_eq!(lines[1]["stage"], "parent");
        assert_eq!(lines[3]["build"]["outcome"], "failure");
        assert_eq!(lines[3]["build"]["failure"], "boom: https://u:***@h/ ***");
    }
}
