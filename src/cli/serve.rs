//! `kiln serve DIR`: run the pipelines of a folder on their schedules, with
//! a read-only HTTP API on localhost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::pipeline::RunnerArgs;
use super::{CliError, EXIT_SUCCESS};
use crate::pipeline::runner::Trigger;
use crate::serve::daemon::{Daemon, ServeOptions, SystemClock};
use crate::serve::http::{self, CatalogApi, Exposure};

/// Arguments of `kiln serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder of pipeline files (*.yml, *.yaml); re-read while running, so pipelines can be added, changed and removed.
    pub dir: PathBuf,
    /// Builds at once; a due pipeline waits for a free slot (and its missed occurrences coalesce).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Address of the read-only HTTP API (loopback only: the API has no authentication); port 0 picks a free one (the log says which).
    #[arg(long, default_value = "127.0.0.1:8737")]
    pub listen: SocketAddr,
    /// Do not serve the HTTP API.
    #[arg(long)]
    pub no_api: bool,
    /// The scheduler's log (default: serve.log beside the catalog).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Seconds between looks at the folder and the schedules.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tick_seconds: u64,
    /// Where and how to build.
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// Runs `kiln serve` until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<u8, CliError> {
    if !args.dir.is_dir() {
        return Err(CliError::Invalid(format!(
            "error: {} is not a folder\n  hint: give the folder that holds the pipeline files",
            args.dir.display()
        )));
    }
    let settings = args.runner.settings(false, false, false, Trigger::Manual)?;
    let log = args.log.clone().unwrap_or_else(|| {
        crate::catalog::events_dir(&settings.catalog).with_file_name("serve.log")
    });
    let fail = |e: anyhow::Error| CliError::Failed(e);
    let catalog = settings.catalog.clone();
    // the API's address is checked before the scheduler starts (and logs)
    let listener = if args.no_api {
        None
    } else {
        Some(
            http::bind(args.listen, Exposure::LoopbackOnly)
                .await
                .map_err(|e| match e {
                    e @ http::HttpError::NotLoopback { .. } => {
                        CliError::Invalid(format!("error: {e}"))
                    }
                    e => fail(e.into()),
                })?,
        )
    };
    let daemon = Daemon::new(
        ServeOptions {
            dir: args.dir,
            parallel: usize::from(args.parallel),
            settings,
            tick: Duration::from_secs(args.tick_seconds),
            log,
        },
        Arc::new(SystemClock),
    )
    .map_err(|e| fail(e.into()))?;
    let scheduler = daemon.run(std::future::pending());
    let Some(listener) = listener else {
        scheduler.await.map_err(|e| fail(e.into()))?;
        return Ok(EXIT_SUCCESS);
    };
    let addr = listener.local_addr().map_err(|e| fail(e.into()))?;
    let api = CatalogApi::open(&catalog, daemon.view()).map_err(|e| fail(e.into()))?;
    daemon
        .log()
        .line("INFO", &format!("HTTP API on http://{addr}/ (read-only)"));
    let api = http::serve(listener, Arc::new(api), std::future::pending());
    tokio::select! {
        r = scheduler => r.map_err(|e| fail(e.into()))?,
        () = api => {}
    }
    Ok(EXIT_SUCCESS)
}
