//! OVF packages and OVAs: the `.ovf` descriptor (see [`super::ovf`]), the
//! streamOptimized disk and the `.mf` manifest (SHA256), side by side or
//! in one tar (`.ovf` first, then `.mf`, then the disk). Being written.

use std::path::PathBuf;

use super::cancel::Cancel;
use super::write::{ExportError, ExportJob};
use crate::build::Progress;

/// The `ovf` and `ova` exports: write the package in `job.dir`; return the
/// files written, relative to `job.dir`, the main file last.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: Progress<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    let _ = (job, progress);
    cancel.check()?;
    Err(ExportError::NotBuilt("ovf/ova"))
}
