//! Flags that say where kiln finds its QEMU, cache and catalog, shared by
//! the commands that build.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::build::cache::Cache;

/// Where kiln finds QEMU, its parent-image cache and its image catalog.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// The QEMU system emulator to run.
    #[arg(long, default_value = "qemu-system-x86_64", env = "KILN_QEMU")]
    pub qemu: String,
    /// Cache for downloaded and bootstrapped parent images (default: $XDG_CACHE_HOME/kiln or ~/.cache/kiln).
    #[arg(long, env = "KILN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The image catalog builds are recorded in (default: $KILN_DATA_DIR/catalog.sqlite, else $XDG_DATA_HOME/kiln/…, else ~/.local/share/kiln/…).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

impl HostArgs {
    /// The catalog file: `--catalog`, else the default (see [`crate::catalog::default_path`]).
    pub fn catalog_path(&self) -> Result<PathBuf, CliError> {
        match &self.catalog {
            Some(path) => Ok(path.clone()),
            None => crate::catalog::default_path(|k| std::env::var(k).ok())
                .map_err(|e| CliError::Failed(anyhow::Error::new(e))),
        }
    }

    /// The parent image cache: `--cache-dir`, else the default.
    pub fn cache(&self) -> Result<Cache, CliError> {
        match &self.cache_dir {
            Some(root) => Ok(Cache::new(root.clone())),
            None => Cache::from_env().map_err(|e| CliError::Failed(anyhow::Error::new(e))),
        }
    }
}
