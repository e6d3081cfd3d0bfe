//! `kiln pipeline validate|prune`: pipeline files and their retention.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::toe::invalid_report;
use super::{CliError, EXIT_FAILED, EXIT_SUCCESS};
use crate::catalog;
use crate::pipeline::{self, retention, Pipeline, PipelineError, RecipeSource, StartCondition};

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
    /// Apply the pipeline's retention: delete its old images (never one marked keep or the parent of an image that stays).
    Prune(PruneArgs),
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

fn load(file: &Path, json: bool) -> Result<Pipeline, CliError> {
    match pipeline::load(file) {
        Ok(p) => Ok(p),
        Err(PipelineError::Invalid(diags)) => {
            if json {
                let text = serde_json::to_string_pretty(&diags).map_err(anyhow::Error::from)?;
                println!("{text}");
                Err(CliError::Invalid(format!(
                    "{} problem(s) found",
                    diags.len()
                )))
            } else {
                Err(CliError::Invalid(invalid_report(&diags, &[])))
            }
        }
        Err(e @ PipelineError::Io { .. }) => Err(CliError::Invalid(format!(
            "error: {e}\n  hint: give the path of a pipeline file (YAML)"
        ))),
    }
}

/// One line saying what a valid pipeline is.
pub fn summary(p: &Pipeline, now: chrono::DateTime<chrono::Utc>) -> String {
    let recipe = match &p.recipe {
        RecipeSource::Path(path) => format!("recipe {}", path.display()),
        RecipeSource::Inline(r) => format!("inline recipe {} {}", r.name, r.version),
    };
    let schedule = match &p.schedule {
        Some(s) => format!(
            "schedule `{}` {} (next {})",
            s.expression(),
            s.time_zone().name(),
            s.next_after(now).map_or("never".into(), |t| t
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        ),
        None => "no schedule".into(),
    };
    let start = match p.start_condition {
        StartCondition::Always => "always builds",
        StartCondition::IfChanged => "builds if changed",
    };
    let mut retention = Vec::new();
    if let Some(n) = p.retention.keep_last {
        retention.push(format!("keep last {n}"));
    }
    if let Some(a) = p.retention.max_age {
        retention.push(format!("max age {} days", a.num_days()));
    }
    format!(
        "pipeline {}: {recipe}; {schedule}; {start}; {} notification(s); retention: {}",
        p.name,
        p.notifications.len(),
        if retention.is_empty() {
            "none".into()
        } else {
            retention.join(", ")
        }
    )
}

/// Runs `kiln pipeline`.
pub fn run(cmd: PipelineCommand) -> Result<u8, CliError> {
    match cmd {
        PipelineCommand::Validate { file, json } => {
            let p = load(&file, json)?;
            if json {
                println!("[]");
            } else {
                println!(
                    "{}: valid: {}",
                    file.display(),
                    summary(&p, chrono::Utc::now())
                );
            }
            Ok(EXIT_SUCCESS)
        }
        PipelineCommand::Prune(args) => prune(args),
    }
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
    let mut failures = Vec::new();
    let mut deleted = Vec::new();
    for d in &plan.delete {
        let result = cat.delete(d.id).and_then(|gone| {
            if args.keep_files {
                Ok(())
            } else {
                catalog::files::remove_published(&gone).map(|_| ())
            }
        });
        match result {
            Ok(()) => {
                if !args.json {
                    println!("deleted {}: {}", d.image, d.reason);
                }
                deleted.push(d.clone());
            }
            Err(e) => {
                eprintln!("error: deleting {}: {e}", d.image);
                failures.push(d.image.clone());
            }
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
