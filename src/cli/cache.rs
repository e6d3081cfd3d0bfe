//! `kiln cache list|prune`: the saved build VMs (booted parents and
//! component layers) in kiln's cache.

use clap::{Args, Subcommand};

use super::{print_json, CliError, EXIT_SUCCESS};
use crate::build::layers::{LayerKind, LayerStore, DEFAULT_MAX_AGE};

/// Where the cache is.
#[derive(Debug, Args)]
pub struct CacheDirArg {
    /// kiln's cache (default: $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln or ~/.cache/kiln).
    #[arg(long, env = "KILN_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
}

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the saved build VMs: key, what they hold, size, age and last use.
    List {
        /// Where the cache is.
        #[command(flatten)]
        cache: CacheDirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove saved build VMs by age and, least recently used first, by size.
    ///
    /// A layer in use by a running build is kept; removing a layer removes
    /// the layers built on it.
    Prune {
        /// Where the cache is.
        #[command(flatten)]
        cache: CacheDirArg,
        /// Remove layers older than this many hours (default 168).
        #[arg(long, default_value_t = DEFAULT_MAX_AGE.as_secs() / 3600)]
        max_age_hours: u64,
        /// Then remove the least recently used until the rest fit in this many GiB.
        #[arg(long)]
        max_size: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn store(arg: &CacheDirArg) -> Result<LayerStore, CliError> {
    let cache = super::host::HostArgs {
        qemu: String::new(),
        cache_dir: arg.cache_dir.clone(),
        catalog: None,
    }
    .cache()?;
    Ok(LayerStore::new(cache.layers()))
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Runs `kiln cache …`.
pub fn run(cmd: CacheCommand) -> Result<u8, CliError> {
    let failed = |e: crate::build::layers::LayerError| CliError::Failed(anyhow::Error::new(e));
    let now = chrono::Utc::now();
    match cmd {
        CacheCommand::List { cache, json } => {
            let store = store(&cache)?;
            let layers = store.list().map_err(failed)?;
            if json {
                print_json(&layers)?;
                return Ok(EXIT_SUCCESS);
            }
            if layers.is_empty() {
                println!("no saved build VMs in {}", store.root().display());
            }
            for l in &layers {
                let what = match (&l.meta.kind, &l.meta.component) {
                    (LayerKind::Booted, _) => "booted parent".to_string(),
                    (LayerKind::Component, Some(c)) => {
                        format!("after component {} {}", c.index, c.name)
                    }
                    (LayerKind::Component, None) => "after a component".to_string(),
                };
                println!(
                    "{}  {:<40} {:>9}  {:>4} h old  last used {}{}",
                    &l.meta.key[..16],
                    crate::util::display::Escaped(&what).to_string(),
                    mib(l.bytes),
                    l.meta.age(now).as_secs() / 3600,
                    l.meta.last_used_at,
                    if l.in_use { "  (in use)" } else { "" }
                );
            }
            Ok(EXIT_SUCCESS)
        }
        CacheCommand::Prune {
            cache,
            max_age_hours,
            max_size,
            json,
        } => {
            if max_size.is_some_and(|s| !(s >= 0.0 && s.is_finite())) {
                return Err(CliError::Invalid(
                    "error: --max-size must be a number of GiB, 0 or more".into(),
                ));
            }
            let store = store(&cache)?;
            let pruned = store
                .prune(
                    Some(std::time::Duration::from_secs(max_age_hours * 3600)),
                    max_size.map(|g| (g * f64::from(1u32 << 30)) as u64),
                    now,
                )
                .map_err(failed)?;
            if json {
                print_json(&pruned)?;
                return Ok(EXIT_SUCCESS);
            }
            for (key, why) in &pruned.removed {
                println!("removed {}: {why}", &key[..16.min(key.len())]);
            }
            for key in &pruned.in_use {
                println!("kept {}: in use by a build", &key[..16.min(key.len())]);
            }
            println!(
                "{} layer(s) removed, {} freed",
                pruned.removed.len(),
                mib(pruned.bytes)
            );
            Ok(EXIT_SUCCESS)
        }
    }
}
