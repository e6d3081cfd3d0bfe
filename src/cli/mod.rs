//! Command-line interface: one file per subcommand, each thin.

pub mod ami;
pub mod build;
pub mod cache;
pub mod export;
pub mod host;
pub mod images;
pub mod pipeline;
pub mod serve;
pub mod toe;
pub mod validate;
mod values;
pub mod verify;

use clap::{Parser, Subcommand};

/// Exit code: success.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code: the run or build failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: invalid input (documents, parameters, flags).
pub const EXIT_INVALID: u8 = 2;
/// Exit code of `kiln toe run`: a step asked for a reboot; the state is saved
/// and running the same command again after the reboot resumes the run.
pub const EXIT_REBOOT: u8 = 194;
/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// kiln: a local VM image factory that runs EC2 Image Builder components.
#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about,
    propagate_version = true,
    help_expected = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// AWS: import an image as an AMI (VM Import), export an AMI to a file, set up the vmimport role.
    #[command(subcommand)]
    Ami(ami::AmiCommand),
    /// Build a tested golden image from a recipe in local QEMU VMs and publish it to OUTPUT/<name>/<version>/.
    Build(Box<build::BuildArgs>),
    /// The saved build VMs (booted parents, component layers): list them, prune them.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Write an image as VMDK, VHDX, VHD, raw, qcow2, GCE tar.gz, OVF or OVA, checked, published atomically.
    Export(export::ExportArgs),
    /// The image catalog: list, show, delete, deprecate and keep built images.
    Images(images::ImagesArgs),
    /// Pipelines: check a pipeline file, run it once (building only if its inputs changed, if asked), apply its retention.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Run the pipelines of a folder on their schedules (one build at a time, or N with --parallel), with a read-only HTTP API on localhost.
    Serve(Box<serve::ServeArgs>),
    /// Validate and run AWSTOE component documents on this host (like `awstoe`).
    #[command(subcommand)]
    Toe(toe::ToeCommand),
    /// Check a recipe and every component it names, without building anything.
    Validate(validate::ValidateArgs),
    /// Check disk images, OVF packages, OVAs and GCE tarballs (exit 0 good, 1 problems found, 2 unreadable).
    Verify(verify::VerifyArgs),
}

/// An error that ends the command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input is invalid (exit code 2).
    #[error("{0}")]
    Invalid(String),
    /// Something failed (exit code 1).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
    /// Ctrl-C or SIGTERM stopped the command (exit code 130).
    #[error("interrupted by {0}; running steps were stopped")]
    Interrupted(&'static str),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => EXIT_INVALID,
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }
}

/// Prints a command's result as pretty JSON on standard output (`--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let failed = |e: serde_json::Error| {
        CliError::Failed(anyhow::Error::new(e).context("writing the JSON result"))
    };
    let mut value = serde_json::to_value(value).map_err(failed)?;
    crate::util::redact::json(&mut value);
    let text = serde_json::to_string_pretty(&value).map_err(failed)?;
    println!("{text}");
    Ok(())
}

/// Formats an error with its chain of causes, one per line, every secret
/// masked. Control characters (from names, paths or peers' answers quoted
/// in the message) are shown escaped; only the line breaks kiln writes
/// stay.
pub fn render_error(e: &CliError) -> String {
    let text = match e {
        CliError::Invalid(msg) => msg.clone(),
        CliError::Interrupted(_) => format!("error: {e}"),
        CliError::Failed(err) => {
            let mut out = format!("error: {err}");
            for cause in err.chain().skip(1) {
                out.push_str(&format!("\n  caused by: {cause}"));
            }
            out
        }
    };
    let text = crate::util::redact::text(&text);
    crate::util::display::EscapedLines(&text).to_string()
}

/// Runs a parsed command line, returning the exit code.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::Failed(anyhow::Error::new(e).context("starting the async runtime"))
        })?;
    let result = runtime.block_on(async move {
        let work = async move {
            match cli.command {
                Command::Ami(cmd) => ami::run(cmd).await,
                Command::Build(args) => build::run(*args).await,
                Command::Cache(cmd) => cache::run(cmd),
                Command::Export(args) => export::run(args).await,
                Command::Images(args) => images::run(args),
                Command::Pipeline(cmd) => pipeline::run(cmd).await,
                Command::Serve(args) => serve::run(*args).await,
                Command::Toe(cmd) => toe::run(cmd).await,
                Command::Validate(args) => validate::run(args),
                Command::Verify(args) => verify::run(args).await,
            }
        };
        // Dropping `work` on a signal drops every running step, which kills
        // the process groups they started: nothing is left running.
        tokio::select! {
            result = work => result,
            signal = interrupted() => Err(CliError::Interrupted(signal)),
        }
    });
    // Blocking tasks (reading, hashing, checking files) stop when their
    // future is dropped, at their next read; dropping the runtime would
    // wait for any that does not, however long it takes.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// How long kiln waits for blocking tasks to stop after the command ended
/// or was interrupted, before it exits anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits for Ctrl-C (SIGINT) or SIGTERM and names it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // without signal handlers the default action (termination) applies
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
