//! `kiln build RECIPE`: a tested golden image from a recipe.

use std::path::PathBuf;

use clap::Args;

use super::toe::invalid_report;
use super::{CliError, EXIT_SUCCESS};
use crate::build::progress::Reporter;
use crate::build::run::{Build, BuildError, BuildOptions, OnError};
use crate::export::format::ExportFormat;
use crate::recipe::{self, RecipeError};
use crate::vm::accel::AccelChoice;
use crate::vm::net::Network;

/// Arguments of `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe: kiln's YAML, or the JSON printed by `aws imagebuilder get-image-recipe`.
    pub recipe: PathBuf,
    /// Output folder; the image is published as OUTPUT/<name>/<version>/.
    #[arg(short, long, default_value = "output", env = "KILN_OUTPUT")]
    pub output: PathBuf,
    /// Accelerator: `auto` uses KVM only when a probe VM boots within seconds, else TCG (overrides the recipe).
    #[arg(long, value_enum)]
    pub accel: Option<AccelChoice>,
    /// vCPUs of the build and test VMs (overrides the recipe; default 2).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory of the build and test VMs in MiB (overrides the recipe; default 2048).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Seconds allowed from power-on to SSH and cloud-init done (overrides the recipe).
    #[arg(long)]
    pub boot_timeout: Option<u64>,
    /// What the build and test VMs' network reaches (overrides the recipe's build.network): `none` (nothing but kiln's SSH), `outbound` (the default: the internet and LAN, never the host itself), `host` (outbound plus the host's loopback services at 10.0.2.2).
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// On a failure while a VM runs: `cleanup` stops it and removes temporary files; `abort` keeps it running and prints the ssh command to get in (Ctrl-C then cleans up).
    #[arg(long, value_enum, default_value_t = OnError::Cleanup)]
    pub on_error: OnError,
    /// Replace OUTPUT/<name>/<version> if it was already published.
    #[arg(long)]
    pub force: bool,
    /// Print progress as JSON lines (one object per event, with "v": 1) instead of text; step output goes only to the logs.
    #[arg(long)]
    pub json: bool,
    /// Do not print the components' step output on the terminal (it is always in the logs).
    #[arg(long)]
    pub quiet_steps: bool,
    /// Export formats, comma-separated (overrides the recipe's distribution.formats): vmdk, vmdk-sparse, vhdx, vhd, raw, qcow2, qcow2-zlib, gce, ovf, ova (see `kiln export --help`).
    #[arg(long, value_delimiter = ',', value_parser = super::export::parse_format)]
    pub format: Option<Vec<ExportFormat>>,
    /// Boot the build VM cold and run every component: saved build VMs are not used (the ones this build saves replace them).
    #[arg(long)]
    pub no_cache: bool,
    /// Where QEMU, the cache and the catalog are.
    #[command(flatten)]
    pub host: super::host::HostArgs,
}

/// Runs `kiln build`.
pub async fn run(args: BuildArgs) -> Result<u8, CliError> {
    let (recipe, components) = recipe::load_resolved(&args.recipe).map_err(|e| match e {
        RecipeError::Invalid(diags) => CliError::Invalid(invalid_report(&diags, &[])),
        e @ RecipeError::Io { .. } => {
            CliError::Invalid(format!("error: {}", crate::util::display::chain(&e)))
        }
    })?;
    let cache = args.host.cache()?;
    let catalog = args.host.catalog_path()?;
    let opts = BuildOptions {
        output: args.output,
        accel: args.accel,
        cpus: args.cpus,
        memory_mib: args.memory,
        boot_timeout: args.boot_timeout,
        network: args.network,
        on_error: args.on_error,
        replace: args.force,
        echo: !args.json && !args.quiet_steps,
        qemu: args.host.qemu,
        cache,
        formats: args.format.map(|mut f| {
            let mut seen = std::collections::HashSet::new();
            f.retain(|x| seen.insert(*x));
            f
        }),
        events_dir: crate::catalog::events_dir(&catalog),
        catalog,
        pipeline: None,
        ami_sha256: None,
        parent: None,
        no_cache: args.no_cache,
    };
    let reporter = Reporter::new(args.json, Build::secrets(&components));
    match Build::new(&recipe, &opts, &reporter).run(components).await {
        Ok(_) => Ok(EXIT_SUCCESS),
        Err(e) if e.is_invalid_input() => Err(CliError::Invalid(match &e {
            // a refused parent image: its Display is the context only
            BuildError::Parent(_) => {
                format!("error: {}", crate::pipeline::runner::error_chain(&e))
            }
            _ => format!("error: {e}"),
        })),
        Err(e) => Err(CliError::Failed(anyhow::Error::new(e))),
    }
}
