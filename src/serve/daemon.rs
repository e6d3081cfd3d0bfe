//! `kiln serve DIR`: the pipelines of a folder run on their schedules.
//!
//! Every tick the folder is read again (new, changed and removed pipeline
//! files are picked up; an invalid file is logged once and shown by the
//! API), [`super::scheduler::plan`] says what starts, and each run is
//! [`crate::pipeline::runner::run`] with the schedule as its trigger. The
//! last occurrence acted on per pipeline is kept in the catalog, so a
//! restarted scheduler catches up by the documented rule. Its own log gets
//! one line per event; each build still writes its own logs and events.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};

use super::http::{HttpError, Pipelines};
use super::scheduler::{self, Start};
use crate::catalog::{Catalog, CatalogError};
use crate::pipeline::runner::{self, RunError, RunOutcome, RunSettings, Trigger};
use crate::pipeline::{self, Pipeline, PipelineError, StartCondition};
use crate::util::redact;

/// A source of the current time (injectable for tests).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The pipeline folder cannot be read.
    #[error("cannot read the pipeline folder {}", path.display())]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log cannot be written.
    #[error("cannot write the log {}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// How the scheduler runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The folder of pipeline files (`*.yml`, `*.yaml`).
    pub dir: PathBuf,
    /// Builds at once.
    pub parallel: usize,
    /// How each run builds (its trigger is set per run).
    pub settings: RunSettings,
    /// How often the folder and the schedules are looked at.
    pub tick: Duration,
    /// The scheduler's own log.
    pub log: PathBuf,
}

/// How a run ended, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RunRecord {
    scheduled: DateTime<Utc>,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    outcome: &'static str,
    image: Option<String>,
    detail: String,
}

#[derive(Clone, Debug)]
struct Loaded {
    file: PathBuf,
    pipeline: Pipeline,
    running_since: Option<DateTime<Utc>>,
    last_run: Option<RunRecord>,
}

#[derive(Debug, Default)]
struct State {
    started_at: Option<DateTime<Utc>>,
    pipelines: BTreeMap<String, Loaded>,
    /// Invalid files and their problems.
    invalid: BTreeMap<PathBuf, String>,
}

/// The scheduler's log: one timestamped line per event, to the file and
/// to standard error.
pub struct ServeLog {
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl ServeLog {
    /// Opens (appending; creating it and its folder) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, ServeError> {
        let err = |source| ServeError::Log {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(ServeLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line, every secret masked.
    pub fn line(&self, level: &str, message: &str) {
        // file names and failure texts quoted in messages may hold
        // control characters: shown escaped
        let line = format!(
            "{} {level:<5} {}",
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            crate::util::display::EscapedLines(&redact::text(message))
        );
        eprintln!("{line}");
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // the terminal got the line; a full disk must not stop the scheduler
        let _ = writeln!(f, "{line}");
    }
}

/// The scheduler.
pub struct Daemon {
    opts: ServeOptions,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
    log: Arc<ServeLog>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The pipeline files of `dir`, sorted.
fn pipeline_files(dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
    let err = |source| ServeError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err)? {
        let path = e.map_err(err)?.path();
        let yaml = path.extension().is_some_and(|x| x == "yml" || x == "yaml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl Daemon {
    /// A scheduler for `opts`, reading time from `clock`.
    pub fn new(opts: ServeOptions, clock: Arc<dyn Clock>) -> Result<Self, ServeError> {
        let log = Arc::new(ServeLog::open(&opts.log)?);
        Ok(Daemon {
            opts,
            clock,
            state: Arc::new(Mutex::new(State::default())),
            log,
        })
    }

    /// The scheduler's part of the HTTP API (health and pipelines).
    pub fn view(&self) -> StatusView {
        StatusView {
            state: self.state.clone(),
            clock: self.clock.clone(),
            parallel: self.opts.parallel,
        }
    }

    /// The scheduler's log.
    pub fn log(&self) -> Arc<ServeLog> {
        self.log.clone()
    }

    /// Reads the folder again: adds, replaces and drops pipelines (a running
    /// one stays until its run ends) and logs each invalid file once.
    fn reload(&self) -> Result<(), ServeError> {
        let files = pipeline_files(&self.opts.dir)?;
        let mut found: BTreeMap<String, (PathBuf, Pipeline)> = BTreeMap::new();
        let mut invalid = BTreeMap::new();
        for file in files {
            match pipeline::load(&file) {
                Ok(p) => match found.get(&p.name) {
                    Some((other, _)) => {
                        invalid.insert(
                            file.clone(),
                            format!(
                                "pipeline {} is also defined in {}; names must be unique",
                                p.name,
                                other.display()
                            ),
                        );
                    }
                    None => {
                        found.insert(p.name.clone(), (file, p));
                    }
                },
                Err(PipelineError::Invalid(d)) => {
                    let text = d.iter().map(ToString::to_string).collect::<Vec<_>>();
                    invalid.insert(file, text.join("\n"));
                }
                Err(e) => {
                    invalid.insert(file, runner::error_chain(&e));
                }
            }
        }
        let mut st = lock(&self.state);
        for (file, problem) in &invalid {
            if st.invalid.get(file) != Some(problem) {
                self.log.line(
                    "ERROR",
                    &format!(
                        "{} is invalid and is not scheduled:\n{problem}",
                        file.display()
                    ),
                );
            }
        }
        st.invalid = invalid;
        let gone: Vec<String> = st
            .pipelines
            .iter()
            .filter(|(name, l)| !found.contains_key(*name) && l.running_since.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            st.pipelines.remove(&name);
            self.log
                .line("INFO", &format!("pipeline {name}: removed from the folder"));
        }
        for (name, (file, p)) in found {
            match st.pipelines.get_mut(&name) {
                Some(l) => {
                    l.file = file;
                    l.pipeline = p;
                }
                None => {
                    self.log.line(
                        "INFO",
                        &format!("loaded {}: {}", file.display(), p.summary(self.clock.now())),
                    );
                    st.pipelines.insert(
                        name,
                        Loaded {
                            file,
                            pipeline: p,
                            running_since: None,
                            last_run: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// What to start now; remembers first sightings and started
    /// occurrences in the catalog.
    fn due(&self, catalog: &mut Catalog) -> Result<Vec<(Start, Pipeline)>, ServeError> {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        let mut schedules = BTreeMap::new();
        let mut last = BTreeMap::new();
        let mut running = BTreeSet::new();
        for (name, l) in &st.pipelines {
            if l.running_since.is_some() {
                running.insert(name.clone());
            }
            if let Some(s) = &l.pipeline.schedule {
                schedules.insert(name.clone(), s.clone());
                if let Some(t) = catalog.schedule_last(name)? {
                    last.insert(name.clone(), t);
                }
            }
        }
        let plan = scheduler::plan(&schedules, &last, &running, self.opts.parallel, now);
        for (name, t) in &plan.remember {
            catalog.set_schedule_last(name, *t)?;
        }
        let mut out = Vec::new();
        for s in plan.start {
            let Some(l) = st.pipelines.get_mut(&s.pipeline) else {
                continue;
            };
            l.running_since = Some(now);
            out.push((s, l.pipeline.clone()));
        }
        Ok(out)
    }

    fn finished(
        &self,
        start: &Start,
        started: DateTime<Utc>,
        result: Result<RunOutcome, RunError>,
    ) {
        let name = &start.pipeline;
        let (outcome, image, detail, level) = match &result {
            Ok(RunOutcome::Built {
                image,
                dir,
                reasons,
                ..
            }) => (
                "built",
                Some(image.clone()),
                format!(
                    "published {image} in {} ({})",
                    dir.display(),
                    reasons.join("; ")
                ),
                "INFO",
            ),
            Ok(RunOutcome::Skipped { reason }) => ("skipped", None, reason.clone(), "INFO"),
            Err(RunError::Busy { lock, .. }) => (
                "skipped",
                None,
                format!(
                    "another kiln process is running it (lock {})",
                    lock.display()
                ),
                "WARN",
            ),
            Err(e) => ("failed", None, runner::error_chain(e), "ERROR"),
        };
        // kept for the API's `lastRun.detail`: masked once, here
        let detail = redact::text(&detail);
        self.log
            .line(level, &format!("pipeline {name}: {outcome}: {detail}"));
        let mut st = lock(&self.state);
        if let Some(l) = st.pipelines.get_mut(name) {
            l.running_since = None;
            l.last_run = Some(RunRecord {
                scheduled: start.scheduled,
                started,
                finished: self.clock.now(),
                outcome,
                image,
                detail,
            });
        }
    }

    /// Runs until `shutdown` completes (or the future is dropped, on Ctrl-C).
    /// Runs still going then are dropped: their VMs are stopped and nothing
    /// of theirs is published.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let mut catalog = Catalog::open(&self.opts.settings.catalog)?;
        lock(&self.state).started_at = Some(self.clock.now());
        self.log.line(
            "INFO",
            &format!(
                "kiln serve {}: pipelines in {}, {} build(s) at once, catalog {}",
                env!("CARGO_PKG_VERSION"),
                self.opts.dir.display(),
                self.opts.parallel,
                self.opts.settings.catalog.display()
            ),
        );
        let mut runs = FuturesUnordered::new();
        tokio::pin!(shutdown);
        loop {
            self.reload()?;
            for (start, p) in self.due(&mut catalog)? {
                let missed = if start.missed > 0 {
                    format!(
                        " ({} earlier missed occurrence(s) coalesced into it)",
                        start.missed
                    )
                } else {
                    String::new()
                };
                self.log.line(
                    "INFO",
                    &format!(
                        "pipeline {}: starting the run scheduled for {}{missed}",
                        start.pipeline,
                        stamp(start.scheduled)
                    ),
                );
                let settings = RunSettings {
                    trigger: Trigger::Schedule {
                        scheduled: start.scheduled,
                        missed: start.missed,
                    },
                    quiet: true,
                    ..self.opts.settings.clone()
                };
                let started = self.clock.now();
                runs.push(async move {
                    let result = runner::run(&p, &settings).await;
                    (start, started, result)
                });
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some((start, started, result)) = runs.next(), if !runs.is_empty() => {
                    self.finished(&start, started, result);
                }
                _ = tokio::time::sleep(self.opts.tick) => {}
            }
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let st = lock(&self.state);
        let running: Vec<&str> = st
            .pipelines
            .iter()
            .filter(|(_, l)| l.running_since.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        self.log.line(
            "INFO",
            &if running.is_empty() {
                "kiln serve stopped".to_string()
            } else {
                format!(
                    "kiln serve stopped; the runs of {} were stopped (their VMs too) and publish nothing",
                    running.join(", ")
                )
            },
        );
    }
}

/// The scheduler's state as the HTTP API shows it.
#[derive(Clone)]
pub struct StatusView {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    parallel: usize,
}

fn pipeline_json(name: &str, l: &Loaded, now: DateTime<Utc>) -> Value {
    let p = &l.pipeline;
    json!({
        "name": name,
        "file": l.file,
        "description": p.description,
        "schedule": p.schedule.as_ref().map(|s| json!({
            "expression": s.expression(),
            "timezone": s.time_zone().name(),
            "next": s.next_after(now).map(stamp),
        })),
        "startCondition": match p.start_condition {
            StartCondition::Always => "always",
            StartCondition::IfChanged => "ifChanged",
        },
        "running": l.running_since.is_some(),
        "runningSince": l.running_since.map(stamp),
        "lastRun": l.last_run.as_ref().map(|r| json!({
            "scheduled": stamp(r.scheduled),
            "started": stamp(r.started),
            "finished": stamp(r.finished),
            "outcome": r.outcome,
            "image": r.image,
            "detail": r.detail,
        })),
    })
}

impl Pipelines for StatusView {
    fn health(&self) -> Result<Value, HttpError> {
        let st = lock(&self.state);
        let now = self.clock.now();
        let running = st
            .pipelines
            .values()
            .filter(|l| l.running_since.is_some())
            .count();
        Ok(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "startedAt": st.started_at.map(stamp),
            "uptimeSeconds": st.started_at.map(|s| (now - s).num_seconds()),
            "parallel": self.parallel,
            "running": running,
            "pipelines": st.pipelines.len(),
            "invalid": st.invalid.iter().map(|(f, e)| json!({"file": f, "error": e})).collect::<Vec<_>>(),
        }))
    }

    fn pipelines(&self) -> Result<Vec<Value>, HttpError> {
        let st = lock(&self.state);
        let now = self.clock.now();
        Ok(st
            .pipelines
            .iter()
            .map(|(n, l)| pipeline_json(n, l, now))
            .collect())
    }

    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError> {
        let st = lock(&self.state);
        Ok(st
            .pipelines
            .get(name)
            .map(|l| pipeline_json(name, l, self.clock.now())))
    }
}
