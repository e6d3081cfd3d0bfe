//! kiln's streamOptimized VMDK writer (version-3 header, deflate grains
//! compressed in parallel, zero and unallocated grains skipped, streamed
//! from the source with no full-size temporary copy).
//!
//! Interface fixed for the export pipeline; the writer is being written.

use std::path::{Path, PathBuf};

use super::cancel::{Cancel, Cancelled};
use super::write::{ExportError, ExportJob};
use crate::build::Progress;

/// Errors of the VMDK writer.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// Ctrl-C, SIGTERM or a dropped export.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// Placeholder until the writer lands.
    #[error("the native streamOptimized VMDK writer is not in this build")]
    Missing,
}

/// What the writer wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmdkStats {
    /// Bytes of the written file.
    pub file_bytes: u64,
    /// Grains written (compressed).
    pub grains_written: u64,
    /// Grains skipped (unallocated or all zeros).
    pub grains_skipped: u64,
}

/// Writes `source` (any format qemu-img reads) as a streamOptimized VMDK at
/// `dest` (a private temporary path: publishing is the caller's), with
/// `threads` compression threads (`None`: every core).
pub async fn write_stream_optimized(
    source: &Path,
    dest: &Path,
    threads: Option<usize>,
    cancel: &Cancel,
) -> Result<VmdkStats, VmdkError> {
    let _ = (source, dest, threads);
    cancel.check()?;
    Err(VmdkError::Missing)
}

/// The `vmdk` export: writes `job.file_name` in `job.dir`; returns the
/// files written, relative to `job.dir`.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: Progress<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    let _ = progress;
    write_stream_optimized(
        job.source,
        &job.dir.join(job.file_name),
        job.threads,
        cancel,
    )
    .await?;
    Ok(vec![PathBuf::from(job.file_name)])
}
