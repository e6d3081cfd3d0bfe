//! The `gce` export: the disk as `disk.raw` in a gzip'd tar (oldgnu
//! format), as Google Compute Engine imports. Being written.

use std::path::PathBuf;

use super::cancel::Cancel;
use super::write::{ExportError, ExportJob};
use crate::build::Progress;

/// The `gce` export: writes `job.file_name` in `job.dir`; returns the
/// files written, relative to `job.dir`.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: Progress<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    let _ = (job, progress);
    cancel.check()?;
    Err(ExportError::NotBuilt("gce"))
}
