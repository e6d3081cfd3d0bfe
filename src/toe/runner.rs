//! Runs documents on a target: phases in document order, steps with `if`,
//! loops, retries, timeouts and `onFailure`; reboot requests either reboot
//! the target and go on, or stop the run with a resumable state.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::actions::spec::OsPlatform;
use super::actions::transfer::Clients;
use super::actions::{self, ActionContext, ActionError, Inputs, RebootRequest};
use super::condition::StepAction;
use super::console::Console;
use super::document::{Document, Step};
use super::load::{self, LoadedDocument, MAX_DOCUMENT_DEPTH};
use super::looping::{self, LoopKind};
use super::report::{now, DocumentReport, PhaseReport, RunReport, Status, StepReport};
use super::scope::{json_text, record_key, Scope};
use crate::target::{RebootOutcome, Target};
use crate::util::redact;
use crate::util::yaml::Node;

/// A document to run with its final parameter values.
#[derive(Clone, Debug)]
pub struct DocumentRun {
    /// The document.
    pub loaded: LoadedDocument,
    /// Every parameter's value (overrides, else defaults, else empty).
    pub parameters: BTreeMap<String, String>,
}

/// What chaining can read of a step that ran.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// The resolved inputs (of the last iteration, for loops).
    pub inputs: Vec<serde_json::Value>,
    /// The outputs.
    pub outputs: BTreeMap<String, String>,
}

/// One resolved chaining expression, for `chaining.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainEntry {
    /// The document.
    pub document: String,
    /// The phase and step that used the expression.
    pub step: String,
    /// The expression.
    pub expression: String,
    /// What it resolved to.
    pub value: String,
}

/// Where a run stopped for a reboot, and how to go on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Position {
    /// Document index.
    pub document: usize,
    /// Phase index in the document.
    pub phase: usize,
    /// Step index in the phase.
    pub step: usize,
    /// Attempt number (1-based) the step was on.
    pub attempt: u32,
    /// The loop iteration to continue at.
    pub iteration: usize,
    /// Outputs of the iterations done so far.
    pub partial_outputs: BTreeMap<String, String>,
    /// Inputs of the last iteration run.
    pub inputs: Vec<serde_json::Value>,
    /// When the step started.
    pub start_time: String,
}

/// Everything a run has done so far; saved when the run stops for a reboot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The result tree so far.
    pub report: RunReport,
    /// Chaining records, per document, keyed `phase\nstep`.
    pub records: Vec<BTreeMap<String, StepRecord>>,
    /// Resolved chaining expressions.
    pub chaining: Vec<ChainEntry>,
    /// Where to continue, when resuming.
    pub resume_at: Option<Position>,
}

impl Progress {
    /// The report of the document being run.
    fn document(&mut self) -> &mut DocumentReport {
        self.report
            .documents
            .last_mut()
            .expect("a document report was pushed first")
    }

    /// The report of the phase being run.
    fn phase(&mut self) -> &mut PhaseReport {
        self.document()
            .phases
            .last_mut()
            .expect("a phase report was pushed first")
    }

    /// A fresh run.
    pub fn new(execution_id: &str, documents: usize) -> Self {
        Progress {
            report: RunReport {
                execution_id: execution_id.to_string(),
                status: Status::Success,
                start_time: now(),
                end_time: String::new(),
                failure_message: String::new(),
                documents: Vec::new(),
            },
            records: vec![BTreeMap::new(); documents],
            chaining: Vec::new(),
            resume_at: None,
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// All requested phases ran (or an Abort stopped them).
    Finished(Progress),
    /// A step asked for a reboot the target cannot do now; resume with this.
    RebootDeferred(Progress),
}

/// Runs documents on a target.
pub struct Engine<'a> {
    /// Where steps run.
    pub target: &'a dyn Target,
    /// Where output goes.
    pub console: &'a Console,
    /// Network clients for transfer actions.
    pub clients: &'a Clients,
    /// Environment for the processes of steps.
    pub env: Vec<(String, String)>,
    /// A folder on the target for scripts.
    pub scratch_dir: String,
    /// The platform documents are checked against when ExecuteDocument loads one.
    pub os: OsPlatform,
    /// The log folder, reported as `logUrl`.
    pub log_url: String,
}

enum StepEnd {
    Done(Box<StepReport>, Option<StepRecord>),
    Deferred(Position),
}

enum AttemptEnd {
    Ok {
        inputs: Vec<serde_json::Value>,
        outputs: BTreeMap<String, String>,
        detailed: Option<RunReport>,
    },
    Reboot {
        request: RebootRequest,
        iteration: usize,
        inputs: Vec<serde_json::Value>,
        outputs: BTreeMap<String, String>,
    },
    Failed {
        message: String,
        inputs: Vec<serde_json::Value>,
        detailed: Option<RunReport>,
    },
}

/// A step's resolved inputs or outputs as the report shows them: JSON text
/// with every secret masked in the values (before encoding, so a secret
/// with characters JSON escapes is still found).
fn shown<T: Serialize + ?Sized>(value: &T) -> String {
    redact::to_json(value).to_string()
}

fn secs(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}

type BoxFuture<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

impl Engine<'_> {
    /// Runs (or resumes) `docs`, filtered to `phases` when given.
    pub async fn run(
        &self,
        docs: &[DocumentRun],
        phases: Option<&[String]>,
        mut progress: Progress,
    ) -> Outcome {
        let ancestors: Vec<String> = Vec::new();
        let deferred = self
            .run_inner(docs, phases, &mut progress, 0, &ancestors)
            .await;
        progress.report.end_time = now();
        progress.report.roll_up();
        if deferred {
            Outcome::RebootDeferred(progress)
        } else {
            progress.resume_at = None;
            Outcome::Finished(progress)
        }
    }

    /// Returns true when the run stopped for a deferred reboot.
    fn run_inner<'f>(
        &'f self,
        docs: &'f [DocumentRun],
        phases: Option<&'f [String]>,
        progress: &'f mut Progress,
        depth: usize,
        ancestors: &'f [String],
    ) -> BoxFuture<'f, bool> {
        Box::pin(async move {
            let resume = progress.resume_at.take();
            let start_doc = resume.as_ref().map_or(0, |p| p.document);
            for (di, run) in docs.iter().enumerate().skip(start_doc) {
                let doc = &run.loaded.doc;
                if progress.report.documents.len() <= di {
                    progress.report.documents.push(DocumentReport {
                        name: doc.name.clone().unwrap_or_default(),
                        file_path: doc.file.clone(),
                        status: Status::Success,
                        description: doc.description.clone().unwrap_or_default(),
                        start_time: now(),
                        end_time: String::new(),
                        failure_message: String::new(),
                        phases: Vec::new(),
                    });
                    self.console.line(&format!("Document {}", doc.file));
                }
                let mut aborted = false;
                for (pi, phase) in doc.phases.iter().enumerate() {
                    let resuming_here = resume
                        .as_ref()
                        .filter(|p| p.document == di && p.phase == pi);
                    if resume
                        .as_ref()
                        .is_some_and(|p| p.document == di && pi < p.phase)
                    {
                        continue;
                    }
                    if phases.is_some_and(|f| !f.iter().any(|n| n == &phase.name)) {
                        continue;
                    }
                    if resuming_here.is_none() {
                        progress.document().phases.push(PhaseReport {
                            name: phase.name.clone(),
                            status: Status::Success,
                            start_time: now(),
                            end_time: String::new(),
                            failure_message: String::new(),
                            steps: Vec::new(),
                        });
                        self.console.line(&format!("Phase {}", phase.name));
                    }
                    let start_step = resuming_here.map_or(0, |p| p.step);
                    for (si, step) in phase.steps.iter().enumerate().skip(start_step) {
                        let pos = resuming_here.filter(|p| p.step == si).cloned();
                        let end = self
                            .run_step(
                                run,
                                di,
                                pi,
                                si,
                                &phase.name,
                                step,
                                pos,
                                progress,
                                depth,
                                ancestors,
                            )
                            .await;
                        match end {
                            StepEnd::Deferred(position) => {
                                progress.resume_at = Some(position);
                                return true;
                            }
                            StepEnd::Done(report, record) => {
                                let report = *report;
                                let failed_abort = report.status == Status::Failed
                                    && step.on_failure == super::document::OnFailure::Abort;
                                if let Some(rec) = record {
                                    progress.records[di]
                                        .insert(record_key(&phase.name, &step.name), rec);
                                }
                                progress.phase().steps.push(report);
                                if failed_abort {
                                    aborted = true;
                                    break;
                                }
                            }
                        }
                    }
                    progress.phase().end_time = now();
                    if aborted {
                        break;
                    }
                }
                progress.document().end_time = now();
                if aborted {
                    break;
                }
            }
            false
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        run: &DocumentRun,
        di: usize,
        pi: usize,
        si: usize,
        phase: &str,
        step: &Step,
        resume: Option<Position>,
        progress: &mut Progress,
        depth: usize,
        ancestors: &[String],
    ) -> StepEnd {
        let started = Instant::now();
        let start_time = resume.as_ref().map_or_else(now, |p| p.start_time.clone());
        let label = format!("{phase}/{}", step.name);
        let mut report = StepReport {
            name: step.name.clone(),
            status: Status::Success,
            failure_message: String::new(),
            timeout_seconds: step.timeout_seconds,
            on_failure: step.on_failure.as_str().to_string(),
            max_attempts: step.max_attempts,
            action: step.action.clone(),
            start_time,
            end_time: String::new(),
            inputs: "[]".into(),
            outputs: "[]".into(),
            looping: step
                .looping
                .as_ref()
                .map(|l| serde_json::json!({"name": l.name.clone().unwrap_or_default()})),
            detailed_output: None,
        };
        let mut chain_log = Vec::new();
        let finish = |mut report: StepReport,
                      status: Status,
                      message: String,
                      progress: &mut Progress,
                      chain_log: Vec<(String, String)>| {
            report.status = match status {
                Status::Failed if step.on_failure == super::document::OnFailure::Ignore => {
                    Status::IgnoredFailure
                }
                s => s,
            };
            report.failure_message = redact::text(&message);
            report.end_time = now();
            for (expression, value) in chain_log {
                progress.chaining.push(ChainEntry {
                    document: run.loaded.doc.file.clone(),
                    step: format!("{phase}.{}", step.name),
                    expression,
                    value: self.console.redactor().redact(&value),
                });
            }
            report
        };

        // `if` is evaluated once; a resumed step already passed it.
        if resume.is_none() {
            if let Some(clause) = &step.condition {
                let scope = Scope {
                    doc: run,
                    records: &progress.records[di],
                    loop_name: None,
                    iteration: None,
                };
                let choice =
                    match super::evaluate::eval(self.target, &clause.cond, &scope, &mut chain_log)
                        .await
                    {
                        Ok(true) => clause.then,
                        Ok(false) => clause.otherwise,
                        Err(e) => {
                            self.console
                                .line(&format!("Step {label}: condition failed: {e}"));
                            let r = finish(
                                report,
                                Status::Failed,
                                format!("condition: {e}"),
                                progress,
                                chain_log,
                            );
                            return StepEnd::Done(Box::new(r), None);
                        }
                    };
                match choice {
                    StepAction::Execute => {}
                    StepAction::Skip => {
                        self.console
                            .line(&format!("Step {label}: skipped by its condition"));
                        return StepEnd::Done(
                            Box::new(finish(
                                report,
                                Status::Skipped,
                                String::new(),
                                progress,
                                chain_log,
                            )),
                            None,
                        );
                    }
                    StepAction::Abort => {
                        self.console
                            .line(&format!("Step {label}: the condition chose Abort"));
                        let r = finish(
                            report,
                            Status::Failed,
                            "the step's `if` chose Abort".into(),
                            progress,
                            chain_log,
                        );
                        return StepEnd::Done(Box::new(r), None);
                    }
                }
            }
        }
        self.console
            .line(&format!("Step {label} ({}) started", step.action));
        let mut attempt = resume.as_ref().map_or(1, |p| p.attempt);
        let mut iteration = resume.as_ref().map_or(0, |p| p.iteration);
        let mut partial = resume
            .as_ref()
            .map(|p| p.partial_outputs.clone())
            .unwrap_or_default();
        loop {
            let scope = Scope {
                doc: run,
                records: &progress.records[di],
                loop_name: step.looping.as_ref().and_then(|l| l.name.as_deref()),
                iteration: None,
            };
            let attempt_fut = self.attempt(
                run,
                &scope,
                step,
                iteration,
                partial.clone(),
                &mut chain_log,
                depth,
                ancestors,
            );
            let end = if step.timeout_seconds > 0 {
                match tokio::time::timeout(
                    Duration::from_secs(step.timeout_seconds as u64),
                    attempt_fut,
                )
                .await
                {
                    Ok(end) => end,
                    Err(_) => AttemptEnd::Failed {
                        message: if step.looping.is_some() {
                            format!("the loop timed out after {} seconds", step.timeout_seconds)
                        } else {
                            format!("timed out after {} seconds", step.timeout_seconds)
                        },
                        inputs: Vec::new(),
                        detailed: None,
                    },
                }
            } else {
                attempt_fut.await
            };
            match end {
                AttemptEnd::Ok {
                    inputs,
                    outputs,
                    detailed,
                } => {
                    report.inputs = shown(&inputs);
                    report.outputs = shown(&[&outputs]);
                    report.detailed_output = detailed.map(Box::new);
                    if let Some(l) = report.looping.as_mut() {
                        l["iterations"] = serde_json::json!(self
                            .loop_len(step, &scope, &mut Vec::new())
                            .unwrap_or(0));
                    }
                    self.console
                        .line(&format!("Step {label}: success ({})", secs(started)));
                    let record = StepRecord { inputs, outputs };
                    return StepEnd::Done(
                        Box::new(finish(
                            report,
                            Status::Success,
                            String::new(),
                            progress,
                            chain_log,
                        )),
                        Some(record),
                    );
                }
                AttemptEnd::Reboot {
                    request,
                    iteration: at,
                    inputs,
                    outputs,
                } => {
                    let (delay, next_iteration) = match request {
                        RebootRequest::RerunStep => (0, at),
                        RebootRequest::NextStep { delay_seconds } => (delay_seconds, at + 1),
                    };
                    self.console
                        .line(&format!("Step {label}: reboot requested ({request:?})"));
                    match self.target.reboot(delay).await {
                        Ok(RebootOutcome::Rebooted) => {
                            self.console.line(&format!(
                                "Step {label}: {} rebooted; continuing",
                                self.target.describe()
                            ));
                            // a boot may empty the scratch folder (systemd
                            // cleans /tmp); the next scripts go there
                            if let Err(e) = self.target.create_dir_all(&self.scratch_dir).await {
                                let msg = format!(
                                    "cannot recreate {} after the reboot: {e}",
                                    self.scratch_dir
                                );
                                return StepEnd::Done(
                                    Box::new(finish(
                                        report,
                                        Status::Failed,
                                        msg,
                                        progress,
                                        chain_log,
                                    )),
                                    None,
                                );
                            }
                            iteration = next_iteration;
                            partial = outputs;
                            continue;
                        }
                        Ok(RebootOutcome::Deferred) if depth == 0 => {
                            return StepEnd::Deferred(Position {
                                document: di,
                                phase: pi,
                                step: si,
                                attempt,
                                iteration: next_iteration,
                                partial_outputs: outputs,
                                inputs,
                                start_time: report.start_time.clone(),
                            });
                        }
                        Ok(RebootOutcome::Deferred) => {
                            let msg = "a reboot requested inside ExecuteDocument cannot be resumed on this target".to_string();
                            return StepEnd::Done(
                                Box::new(finish(report, Status::Failed, msg, progress, chain_log)),
                                None,
                            );
                        }
                        Err(e) => {
                            let msg = format!("reboot failed: {e}");
                            return StepEnd::Done(
                                Box::new(finish(report, Status::Failed, msg, progress, chain_log)),
                                None,
                            );
                        }
                    }
                }
                AttemptEnd::Failed {
                    message,
                    inputs,
                    detailed,
                } => {
                    report.inputs = shown(&inputs);
                    report.detailed_output = detailed.map(Box::new);
                    if attempt < step.max_attempts {
                        self.console.line(&format!(
                            "Step {label}: attempt {attempt} of {} failed: {message}; retrying",
                            step.max_attempts
                        ));
                        attempt += 1;
                        iteration = 0;
                        partial.clear();
                        continue;
                    }
                    self.console.line(&format!(
                        "Step {label}: failed ({}): {message}",
                        secs(started)
                    ));
                    return StepEnd::Done(
                        Box::new(finish(report, Status::Failed, message, progress, chain_log)),
                        None,
                    );
                }
            }
        }
    }

    fn loop_len(
        &self,
        step: &Step,
        scope: &Scope<'_>,
        chain_log: &mut Vec<(String, String)>,
    ) -> Result<usize, String> {
        self.loop_values(step, scope, chain_log)
            .map(|v| v.map_or(1, |v| v.len()))
    }

    fn loop_values(
        &self,
        step: &Step,
        scope: &Scope<'_>,
        chain_log: &mut Vec<(String, String)>,
    ) -> Result<Option<Vec<String>>, String> {
        let Some(l) = &step.looping else {
            return Ok(None);
        };
        Ok(Some(match &l.kind {
            LoopKind::For {
                start,
                end,
                update_by,
            } => looping::range_values(*start, *end, *update_by),
            LoopKind::ForEach(items) => items
                .iter()
                .map(|i| scope.render(i, chain_log))
                .collect::<Result<_, _>>()?,
            LoopKind::ForEachSplit { list, delimiter } => {
                looping::split_values(&scope.render(list, chain_log)?, *delimiter)
            }
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        run: &DocumentRun,
        base: &Scope<'_>,
        step: &Step,
        from_iteration: usize,
        mut outputs: BTreeMap<String, String>,
        chain_log: &mut Vec<(String, String)>,
        depth: usize,
        ancestors: &[String],
    ) -> AttemptEnd {
        let values = match self.loop_values(step, base, chain_log) {
            Ok(v) => v,
            Err(message) => {
                return AttemptEnd::Failed {
                    message: format!("loop: {message}"),
                    inputs: Vec::new(),
                    detailed: None,
                }
            }
        };
        let count = values.as_ref().map_or(1, Vec::len);
        let mut last_inputs = Vec::new();
        let mut detailed = None;
        for i in from_iteration..count {
            let scope = Scope {
                doc: base.doc,
                records: base.records,
                loop_name: base.loop_name,
                iteration: values.as_ref().map(|v| (i, v[i].as_str())),
            };
            let in_loop = |m: String| {
                if values.is_some() {
                    format!("loop iteration {i} failed: {m}")
                } else {
                    m
                }
            };
            let resolved = match step
                .inputs
                .as_ref()
                .map(|n| scope.render_node(n, chain_log))
                .transpose()
            {
                Ok(v) => v,
                Err(e) => {
                    return AttemptEnd::Failed {
                        message: in_loop(e),
                        inputs: last_inputs,
                        detailed,
                    }
                }
            };
            let items: Vec<serde_json::Value> = match &resolved {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(a)) => a.clone(),
                Some(other) => vec![other.clone()],
            };
            last_inputs = items.clone();
            let result = match step.action.as_str() {
                "Assert" => match step.inputs.as_ref() {
                    Some(node) => self.assert(node, &scope, chain_log).await,
                    None => Err("Assert needs inputs".into()),
                },
                "ExecuteDocument" => {
                    let inputs = Inputs(
                        items
                            .first()
                            .and_then(|v| v.as_object().cloned())
                            .unwrap_or_default(),
                    );
                    let (res, report) = self.execute_document(run, &inputs, depth, ancestors).await;
                    detailed = report;
                    res
                }
                action => {
                    let inputs: Vec<Inputs> = items
                        .iter()
                        .map(|v| Inputs(v.as_object().cloned().unwrap_or_default()))
                        .collect();
                    let ctx = ActionContext {
                        target: self.target,
                        console: self.console,
                        scratch_dir: &self.scratch_dir,
                        quiet: step.disable_logging,
                        env: &self.env,
                        clients: self.clients,
                    };
                    actions::run(action, &inputs, &ctx)
                        .await
                        .map_err(|e: ActionError| e.to_string())
                }
            };
            match result {
                Ok(outcome) => {
                    for (k, v) in outcome.outputs {
                        outputs
                            .entry(k)
                            .and_modify(|e| {
                                e.push('\n');
                                e.push_str(&v);
                            })
                            .or_insert(v);
                    }
                    if let Some(request) = outcome.reboot {
                        return AttemptEnd::Reboot {
                            request,
                            iteration: i,
                            inputs: last_inputs,
                            outputs,
                        };
                    }
                }
                Err(message) => {
                    return AttemptEnd::Failed {
                        message: in_loop(message),
                        inputs: last_inputs,
                        detailed,
                    }
                }
            }
        }
        AttemptEnd::Ok {
            inputs: last_inputs,
            outputs,
            detailed,
        }
    }

    async fn assert(
        &self,
        node: &Node,
        scope: &Scope<'_>,
        chain_log: &mut Vec<(String, String)>,
    ) -> Result<actions::ActionOutcome, String> {
        let mut d = crate::util::diag::Diagnostics::new("");
        let cond = super::condition::parse_cond(node, "inputs", &mut d, 1, false)
            .ok_or("invalid Assert inputs")?;
        if super::evaluate::eval(self.target, &cond, scope, chain_log).await? {
            Ok(actions::ActionOutcome::default())
        } else {
            Err("the assertion is false".into())
        }
    }

    async fn execute_document(
        &self,
        parent: &DocumentRun,
        inputs: &Inputs,
        depth: usize,
        ancestors: &[String],
    ) -> (Result<actions::ActionOutcome, String>, Option<RunReport>) {
        let reference = match inputs.required("document") {
            Ok(r) => r.to_string(),
            Err(e) => return (Err(e.to_string()), None),
        };
        if depth + 1 > MAX_DOCUMENT_DEPTH {
            return (Err(format!("ExecuteDocument `{reference}`: nesting deeper than {MAX_DOCUMENT_DEPTH} levels")), None);
        }
        let loaded = match load::load(&reference, parent.loaded.base_dir.as_deref(), self.os) {
            Ok(l) => l,
            Err(e) => {
                let e = crate::util::display::chain(&e);
                return (Err(format!("ExecuteDocument `{reference}`: {e}")), None);
            }
        };
        let mut chain: Vec<String> = ancestors.to_vec();
        chain.push(parent.loaded.id.clone());
        if chain.contains(&loaded.id) {
            return (
                Err(format!(
                    "ExecuteDocument `{reference}`: the document is already running (a cycle)"
                )),
                None,
            );
        }
        let mut overrides = BTreeMap::new();
        if let Some(serde_json::Value::Array(params)) = inputs.0.get("parameters") {
            for p in params {
                let name = p.get("name").map(json_text).unwrap_or_default();
                let value = match p.get("value") {
                    Some(serde_json::Value::Array(vals)) => {
                        vals.iter().map(json_text).collect::<Vec<_>>().join(",")
                    }
                    Some(v) => json_text(v),
                    None => String::new(),
                };
                overrides.insert(name, value);
            }
        }
        let parameters = match resolve_parameters(&loaded.doc, &overrides) {
            Ok(p) => p,
            Err(e) => return (Err(format!("ExecuteDocument `{reference}`: {e}")), None),
        };
        let phases: Option<Vec<String>> = inputs
            .str("phases")
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.split(',').map(|s| s.trim().to_string()).collect());
        let child = [DocumentRun { loaded, parameters }];
        let execution_id = uuid::Uuid::new_v4().to_string();
        let mut progress = Progress::new(&execution_id, 1);
        self.console.line(&format!(
            "ExecuteDocument {reference} (execution {execution_id})"
        ));
        let deferred = self
            .run_inner(&child, phases.as_deref(), &mut progress, depth + 1, &chain)
            .await;
        progress.report.end_time = now();
        progress.report.roll_up();
        if deferred {
            return (
                Err(
                    "a reboot requested inside ExecuteDocument cannot be resumed on this target"
                        .into(),
                ),
                Some(progress.report),
            );
        }
        let s = progress.report.summary(&self.log_url);
        let outputs: BTreeMap<String, String> = [
            ("executedStepCount", s.executed_step_count.to_string()),
            ("executionId", s.execution_id.clone()),
            ("failedStepCount", s.failed_step_count.to_string()),
            ("failureMessage", s.failure_message.clone()),
            (
                "ignoredFailedStepCount",
                s.ignored_failed_step_count.to_string(),
            ),
            ("logUrl", s.log_url.clone()),
            (
                "status",
                serde_json::to_value(s.status)
                    .ok()
                    .map(|v| json_text(&v))
                    .unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if s.status == Status::Failed {
            (
                Err(format!(
                    "document {reference} failed: {}",
                    s.failure_message
                )),
                Some(progress.report),
            )
        } else {
            (
                Ok(actions::ActionOutcome {
                    outputs,
                    reboot: None,
                }),
                Some(progress.report),
            )
        }
    }
}

/// Works out every parameter's value: an override, else the default, else
/// empty (as a local awstoe run does). Overrides for undeclared names are
/// ignored. Values outside `allowedValues` are an error.
pub fn resolve_parameters(
    doc: &Document,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for p in &doc.parameters {
        let value = overrides
            .get(&p.name)
            .cloned()
            .or_else(|| p.default.clone())
            .unwrap_or_default();
        if let Some(allowed) = &p.allowed_values {
            if !allowed.contains(&value) {
                return Err(format!(
                    "parameter `{}`: `{value}` is not one of the allowed values ({})",
                    p.name,
                    allowed.join(", ")
                ));
            }
        }
        out.insert(p.name.clone(), value);
    }
    Ok(out)
}
