//! `kiln toe validate` and `kiln toe run`: AWSTOE's CLI on this host.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{CliError, EXIT_FAILED, EXIT_REBOOT, EXIT_SUCCESS};
use crate::target::local::LocalTarget;
use crate::toe::actions::spec::OsPlatform;
use crate::toe::actions::transfer::Clients;
use crate::toe::console::{Console, Redactor};
use crate::toe::load::{self, LoadError, LoadedDocument};
use crate::toe::logs;
use crate::toe::report::Status;
use crate::toe::runner::{resolve_parameters, DocumentRun, Engine, Outcome, Progress};
use crate::toe::state::SavedRun;
use crate::util::diag::Diagnostic;
use crate::util::display::Escaped;

/// `kiln toe` subcommands.
#[derive(Debug, Subcommand)]
pub enum ToeCommand {
    /// Check documents without running them; reports every error in every document.
    Validate(ValidateArgs),
    /// Run documents on this host, writing awstoe's log folder and printing its JSON summary.
    Run(RunArgs),
}

/// Arguments of `kiln toe validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Comma-separated documents: paths, or AWS-managed component ARNs of kiln's built-ins.
    #[arg(short = 'd', long, value_delimiter = ',', required = true)]
    pub documents: Vec<String>,
    /// Parameter values `name=value,name2=value2`, checked against each document's allowedValues.
    #[arg(long)]
    pub parameters: Option<String>,
    /// The platform whose actions are allowed.
    #[arg(long, value_enum, default_value_t = OsPlatform::Linux)]
    pub os_platform: OsPlatform,
    /// Print the problems as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kiln toe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Comma-separated documents (no spaces), run in order: paths, or AWS-managed component ARNs of kiln's built-ins.
    #[arg(short = 'd', long, value_delimiter = ',', required = true)]
    pub documents: Vec<String>,
    /// Phases to run, comma-separated; a filter only: phases always run in document order.
    #[arg(short = 'p', long, value_delimiter = ',')]
    pub phases: Option<Vec<String>>,
    /// Parameter values `name=value,name2=value2`; names a document does not declare are ignored.
    #[arg(long)]
    pub parameters: Option<String>,
    /// Names of parameters whose values are secrets (comma-separated): their
    /// values are masked in the console, the reports and every message, as
    /// a recipe's `secret: true` parameters are.
    #[arg(long, value_delimiter = ',')]
    pub secret_parameters: Vec<String>,
    /// The run's id (a new UUID by default).
    #[arg(short = 'i', long)]
    pub execution_id: Option<String>,
    /// Folder in which the run's `TOE_<time>_UTC-0_<id>` log folder is made.
    #[arg(short = 'l', long, default_value = ".")]
    pub log_directory: PathBuf,
    /// Folder for the saved state when a step asks for a reboot (default: `<log-directory>/.kiln-toe-state`).
    /// If it holds a saved state, the run resumes it instead of starting anew.
    #[arg(short = 's', long)]
    pub state_directory: Option<PathBuf>,
}

/// Runs a `kiln toe` subcommand.
pub async fn run(cmd: ToeCommand) -> Result<u8, CliError> {
    match cmd {
        ToeCommand::Validate(args) => validate(args),
        ToeCommand::Run(args) => run_documents(args).await,
    }
}

/// Parses `name=value,name2=value2`.
pub fn parse_parameters(text: Option<&str>) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    let Some(text) = text else { return Ok(out) };
    for (i, pair) in text.split(',').enumerate() {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.is_empty() => {
                out.insert(k.trim().to_string(), v.to_string());
            }
            _ => {
                // the item is not repeated: it may hold a secret value
                return Err(CliError::Invalid(format!(
                    "error: --parameters: item {} is not `name=value`\n  hint: both the name and the value are required, e.g. --parameters Name=value,Other=x",
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

fn load_all(
    references: &[String],
    os: OsPlatform,
) -> (Vec<LoadedDocument>, Vec<Diagnostic>, Vec<String>) {
    let mut docs = Vec::new();
    let mut diags = Vec::new();
    let mut other = Vec::new();
    for r in references {
        match load::load(r, None, os) {
            Ok(d) => {
                diags.extend(load::check_nesting(&d, os));
                docs.push(d);
            }
            Err(LoadError::Invalid(d)) => diags.extend(d),
            Err(e) => other.push(format!("error: {}", crate::util::display::chain(&e))),
        }
    }
    (docs, diags, other)
}

/// The text report of invalid input: `other` errors, then each diagnostic,
/// then the count of problems.
pub(crate) fn invalid_report(diags: &[Diagnostic], other: &[String]) -> String {
    let mut lines: Vec<String> = other.to_vec();
    lines.extend(diags.iter().map(ToString::to_string));
    let n = diags.len() + other.len();
    lines.push(format!(
        "{n} problem{} found",
        if n == 1 { "" } else { "s" }
    ));
    lines.join("\n")
}

fn validate(args: ValidateArgs) -> Result<u8, CliError> {
    let (docs, diags, other) = load_all(&args.documents, args.os_platform);
    let overrides = parse_parameters(args.parameters.as_deref())?;
    let mut param_errors: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            resolve_parameters(&d.doc, &overrides)
                .err()
                .map(|e| format!("error: {}: {e}", d.doc.file))
        })
        .collect();
    param_errors.extend(other);
    if args.json {
        let out = serde_json::json!({"valid": diags.is_empty() && param_errors.is_empty(), "diagnostics": diags, "errors": param_errors});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return if diags.is_empty() && param_errors.is_empty() {
            Ok(EXIT_SUCCESS)
        } else {
            Err(CliError::Invalid(String::new()))
        };
    }
    if !diags.is_empty() || !param_errors.is_empty() {
        return Err(CliError::Invalid(invalid_report(&diags, &param_errors)));
    }
    for d in &docs {
        let phases: Vec<&str> = d.doc.phases.iter().map(|p| p.name.as_str()).collect();
        let steps: usize = d.doc.phases.iter().map(|p| p.steps.len()).sum();
        let line = format!(
            "{}: valid ({} phases: {}; {steps} steps)",
            d.doc.file,
            phases.len(),
            phases.join(", ")
        );
        println!("{}", Escaped(&line));
    }
    Ok(EXIT_SUCCESS)
}

struct RunSetup {
    docs: Vec<DocumentRun>,
    phases: Option<Vec<String>>,
    log_folder: PathBuf,
    progress: Progress,
    resumed: bool,
    secret_parameters: Vec<String>,
}

/// The longest `--execution-id`.
pub const MAX_EXECUTION_ID: usize = 128;

/// Checks that an execution id is a plain name: it becomes part of the log
/// folder's name, so it must not lead out of `--log-directory`.
pub fn check_execution_id(id: &str) -> Result<(), CliError> {
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain && !id.is_empty() && id.len() <= MAX_EXECUTION_ID && id != "." && id != ".." {
        return Ok(());
    }
    Err(CliError::Invalid(format!(
        "error: --execution-id `{}` is not a plain name\n  hint: use 1 to {MAX_EXECUTION_ID} letters, digits, `-`, `_` and `.` (no `/`); it names the run's log folder in --log-directory",
        Escaped(id)
    )))
}

fn fresh_setup(args: &RunArgs) -> Result<RunSetup, CliError> {
    if let Some(id) = &args.execution_id {
        check_execution_id(id)?;
    }
    let os = OsPlatform::Linux;
    let (loaded, diags, other) = load_all(&args.documents, os);
    if !diags.is_empty() || !other.is_empty() {
        return Err(CliError::Invalid(invalid_report(&diags, &other)));
    }
    let overrides = parse_parameters(args.parameters.as_deref())?;
    register_secrets(&args.secret_parameters, [&overrides]);
    let mut docs = Vec::new();
    for l in loaded {
        let parameters = resolve_parameters(&l.doc, &overrides)
            .map_err(|e| CliError::Invalid(format!("error: {}: {e}", l.doc.file)))?;
        for p in l
            .doc
            .parameters
            .iter()
            .filter(|p| p.default.is_none() && !overrides.contains_key(&p.name))
        {
            eprintln!(
                "warning: {}: parameter `{}` has no default and no value; it is empty",
                Escaped(&l.doc.file),
                Escaped(&p.name)
            );
        }
        docs.push(DocumentRun {
            loaded: l,
            parameters,
        });
    }
    let execution_id = args
        .execution_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let log_folder = args.log_directory.join(logs::folder_name(&execution_id));
    std::fs::create_dir_all(log_folder.join("scripts"))
        .with_context(|| format!("creating the log folder {}", log_folder.display()))?;
    logs::write_documents(&log_folder, &docs)
        .context("copying the documents into the log folder")?;
    let progress = Progress::new(&execution_id, docs.len());
    Ok(RunSetup {
        docs,
        phases: args.phases.clone(),
        log_folder,
        progress,
        resumed: false,
        secret_parameters: args.secret_parameters.clone(),
    })
}

/// Registers the values `secret` names in `parameters` for redaction.
fn register_secrets<'p>(
    secret: &[String],
    parameters: impl IntoIterator<Item = &'p BTreeMap<String, String>>,
) {
    for p in parameters {
        crate::util::redact::register(secret.iter().filter_map(|name| p.get(name.trim())));
    }
}

async fn run_documents(args: RunArgs) -> Result<u8, CliError> {
    let state_dir = args
        .state_directory
        .clone()
        .unwrap_or_else(|| args.log_directory.join(".kiln-toe-state"));
    let setup = match SavedRun::load(&state_dir).context("reading the saved run state")? {
        Some(saved) => {
            register_secrets(
                &saved.secret_parameters,
                saved.documents.iter().map(|d| &d.parameters),
            );
            let docs = saved.documents(OsPlatform::Linux).map_err(|e| {
                CliError::Invalid(format!(
                    "error: the saved run state holds an invalid document: {e}"
                ))
            })?;
            eprintln!(
                "Resuming execution {} from the state in {} (remove that folder to start anew)",
                saved.progress.report.execution_id,
                state_dir.display()
            );
            RunSetup {
                docs,
                phases: saved.phases,
                log_folder: saved.log_folder,
                progress: saved.progress,
                resumed: true,
                secret_parameters: saved.secret_parameters,
            }
        }
        None => fresh_setup(&args)?,
    };
    let console_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.log_folder.join("console.log"))
        .with_context(|| format!("opening {}", setup.log_folder.join("console.log").display()))?;
    let console = Console::new(Some(console_file), true, Redactor::default());
    if setup.resumed {
        console.line("Resumed after reboot");
    }
    let clients = Clients::default();
    let log_url = setup.log_folder.display().to_string();
    let engine = Engine {
        target: &LocalTarget,
        console: &console,
        clients: &clients,
        env: Vec::new(),
        scratch_dir: setup.log_folder.join("scripts").display().to_string(),
        os: OsPlatform::Linux,
        log_url: log_url.clone(),
    };
    let outcome = engine
        .run(&setup.docs, setup.phases.as_deref(), setup.progress)
        .await;
    let (progress, deferred) = match outcome {
        Outcome::Finished(p) => (p, false),
        Outcome::RebootDeferred(p) => (p, true),
    };
    logs::write_json(
        &setup.log_folder.join("detailedoutput.json"),
        &progress.report,
    )
    .context("writing the run report")?;
    logs::write_json(&setup.log_folder.join("chaining.json"), &progress.chaining)
        .context("writing the chaining report")?;
    if deferred {
        let mut saved = SavedRun::new(
            &setup.log_folder,
            setup.phases.clone(),
            &setup.docs,
            progress,
        );
        saved.secret_parameters = setup.secret_parameters.clone();
        saved
            .save(&state_dir)
            .with_context(|| format!("saving the run state in {}", state_dir.display()))?;
        eprintln!(
            "A step asked for a reboot. The run state is saved in {}.\nkiln never reboots this host: reboot it yourself, then run the same command again to resume.",
            state_dir.display()
        );
        return Ok(EXIT_REBOOT);
    }
    SavedRun::clear(&state_dir).with_context(|| {
        format!(
            "removing the finished run's state in {}",
            state_dir.display()
        )
    })?;
    let summary = progress.report.summary(&log_url);
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(&summary, &mut ser).map_err(anyhow::Error::from)?;
    println!("{}", String::from_utf8_lossy(&out));
    Ok(if summary.status == Status::Failed {
        EXIT_FAILED
    } else {
        EXIT_SUCCESS
    })
}
