//! `kiln pipeline validate|run|prune`: pipeline files, running one, and
//! their retention.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::toe::invalid_report;
use super::{CliError, EXIT_FAILED, EXIT_SUCCESS};
use crate::build::run::OnError;
use crate::pipeline::runner::{self, RunError, RunOutcome, RunSettings, Trigger};
use crate::pipeline::{self, retention, Pipeline, PipelineError};
use crate::util::diag::Diagnostic;
use crate::vm::accel::AccelChoice;

/// `kiln pipeline` subcommands.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file (and an inline recipe), printing every problem with file:line:column.
    Validate {
        /// The pipeline file.
        file: PathBuf,
        /// Print the problems as a JSON array of diagnostics (`[]` when valid).
        #[arg(long)]
        json: bool,
    },
    /// Run the pipeline once: build (or, with --if-changed or `startCondition: ifChanged`, build only if the inputs differ from its last successful build, saying why it built or skipped), publish to OUTPUT/<name>/<version>/<build>/, copy to the other output directories and S3, notify, apply retention.
    Run(RunArgs),
    /// Apply the pipeline's retention: delete its old images (never one marked keep or the parent of an image that stays).
    Prune(PruneArgs),
}

/// Settings shared by `kiln pipeline run` and `kiln serve`.
#[derive(Debug, Clone, Args)]
pub struct RunnerArgs {
    /// Output folder for pipelines without `distribution.outputDirectories`; images go to OUTPUT/<name>/<version>/<build>/.
    #[arg(short, long, default_value = "output", env = "KILN_OUTPUT")]
    pub output: PathBuf,
    /// Accelerator (overrides the pipeline's infrastructure): `auto` uses KVM only when a probe VM boots within seconds, else TCG.
    #[arg(long, value_enum)]
    pub accel: Option<AccelChoice>,
    /// On a failure while a VM runs: `cleanup` stops it; `abort` keeps it running and prints the ssh command (Ctrl-C then cleans up).
    #[arg(long, value_enum, default_value_t = OnError::Cleanup)]
    pub on_error: OnError,
    /// Where QEMU, the cache and the catalog are.
    #[command(flatten)]
    pub host: super::host::HostArgs,
}

impl RunnerArgs {
    /// The run settings for `trigger`.
    pub fn settings(
        &self,
        if_changed: bool,
        json: bool,
        echo: bool,
        trigger: Trigger,
    ) -> Result<RunSettings, CliError> {
        Ok(RunSettings {
            catalog: self.host.catalog_path()?,
            cache: self.host.cache()?,
            qemu: self.host.qemu.clone(),
            output: self.output.clone(),
            if_changed,
            accel: self.accel,
            on_error: self.on_error,
            json,
            echo,
            quiet: false,
            trigger,
        })
    }
}

/// Arguments of `kiln pipeline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file.
    pub file: PathBuf,
    /// Build only if the inputs (recipe, parent image digest, component documents, parameters, export formats, AMI settings) differ from the pipeline's last successful build.
    #[arg(long)]
    pub if_changed: bool,
    /// Print progress as JSON lines, then the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Do not print the components' step output on the terminal (it is always in the logs).
    #[arg(long)]
    pub quiet_steps: bool,
    /// Where and how to build.
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// Arguments of `kiln pipeline prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The pipeline file.
    pub file: PathBuf,
    /// Only list what would be deleted and what stays, with why.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (and what was deleted) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Remove only the catalog entries, not the published folders.
    #[arg(long)]
    pub keep_files: bool,
    /// The catalog file (default: $KILN_DATA_DIR/catalog.sqlite, else $XDG_DATA_HOME/kiln/…, else ~/.local/share/kiln/…).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// The error of invalid input, its problems printed as JSON first with `json`.
fn invalid(diags: &[Diagnostic], json: bool) -> CliError {
    if !json {
        return CliError::Invalid(invalid_report(diags, &[]));
    }
    match serde_json::to_string_pretty(diags) {
        Ok(text) => {
            println!("{text}");
            CliError::Invalid(format!("{} problem(s) found", diags.len()))
        }
        Err(e) => CliError::Failed(e.into()),
    }
}

pub(crate) fn load(file: &Path, json: bool) -> Result<Pipeline, CliError> {
    match pipeline::load(file) {
        Ok(p) => Ok(p),
        Err(PipelineError::Invalid(diags)) => Err(invalid(&diags, json)),
        Err(e @ PipelineError::Io { .. }) => Err(CliError::Invalid(format!(
            "error: {}\n  hint: give the path of a pipeline file (YAML)",
            runner::error_chain(&e)
        ))),
    }
}

/// Runs `kiln pipeline`.
pub async fn run(cmd: PipelineCommand) -> Result<u8, CliError> {
    match cmd {
        PipelineCommand::Validate { file, json } => {
            let p = load(&file, json)?;
            let problems = pipeline::check_recipe_file(&p);
            if !problems.is_empty() {
                return Err(invalid(&problems, json));
            }
            if json {
                println!("[]");
            } else {
                let line = format!(
                    "{}: valid: {}",
                    file.display(),
                    p.summary(chrono::Utc::now())
                );
                println!("{}", crate::util::display::EscapedLines(&line));
            }
            Ok(EXIT_SUCCESS)
        }
        PipelineCommand::Run(args) => run_once(args).await,
        PipelineCommand::Prune(args) => prune(args),
    }
}

/// The exit status of a run's error, printed.
pub fn run_error(e: RunError) -> CliError {
    if e.is_invalid_input() {
        CliError::Invalid(format!("error: {}", runner::error_chain(&e)))
    } else {
        CliError::Failed(anyhow::Error::new(e))
    }
}

async fn run_once(args: RunArgs) -> Result<u8, CliError> {
    let p = load(&args.file, false)?;
    let settings = args.runner.settings(
        args.if_changed,
        args.json,
        !args.json && !args.quiet_steps,
        Trigger::Manual,
    )?;
    let outcome = runner::run(&p, &settings).await.map_err(run_error)?;
    if args.json {
        let value = match &outcome {
            RunOutcome::Built {
                image,
                dir,
                reasons,
                copies,
                pruned,
            } => serde_json::json!({
                "pipeline": p.name, "outcome": "built", "image": image,
                "dir": dir, "reasons": reasons, "copies": copies, "pruned": pruned,
            }),
            RunOutcome::Skipped { reason } => serde_json::json!({
                "pipeline": p.name, "outcome": "skipped", "reason": reason,
            }),
        };
        println!("{value}");
    }
    Ok(EXIT_SUCCESS)
}

fn prune(args: PruneArgs) -> Result<u8, CliError> {
    let p = load(&args.file, false)?;
    if p.retention == retention::RetentionPolicy::default() {
        return Err(CliError::Invalid(format!(
            "error: {} has no retention policy\n  hint: add e.g. `retention: {{keepLast: 5, maxAgeDays: 90}}`",
            args.file.display()
        )));
    }
    let mut cat = super::images::open(args.catalog)?;
    let all = cat
        .list(None)
        .map_err(|e| CliError::Failed(anyhow::Error::new(e)))?;
    let plan = retention::plan(&p.name, &all, &p.retention, chrono::Utc::now());
    if args.dry_run {
        if args.json {
            let text = serde_json::to_string_pretty(&plan).map_err(anyhow::Error::from)?;
            println!("{text}");
        } else {
            for d in &plan.delete {
                println!("would delete {}: {}", d.image, d.reason);
            }
            for d in &plan.keep {
                println!("keeps {}: {}", d.image, d.reason);
            }
        }
        return Ok(EXIT_SUCCESS);
    }
    let done = runner::apply_retention(&mut cat, &plan, args.keep_files);
    for (image, e) in &done.failed {
        eprintln!("error: deleting {image}: {e}");
    }
    let failures: Vec<&String> = done.failed.iter().map(|(image, _)| image).collect();
    let deleted = &done.deleted;
    if !args.json {
        for d in deleted {
            println!("deleted {}: {}", d.image, d.reason);
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "deleted": deleted,
            "keep": plan.keep,
            "failed": failures,
        }))
        .map_err(anyhow::Error::from)?;
        println!("{text}");
    }
    Ok(if failures.is_empty() {
        EXIT_SUCCESS
    } else {
        EXIT_FAILED
    })
}
