//! The `gce` export: the disk as `disk.raw` in a gzip'd tar (GNU/oldgnu
//! header), as Google Compute Engine imports, with the raw size rounded up
//! to a whole GiB (GCE requires it). Streamed from the source: holes and
//! zeros are written as zeros, never read. The gzip is a series of gzip
//! members (RFC 1952 allows it; gzip, tar and GCE read them as one
//! stream), one per 1 MiB block, compressed in parallel and written in
//! order; an all-zero block is the same member every time, compressed once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use libdeflater::{CompressionLvl, Compressor};

use super::disk::round_up;
use super::source::{self, BlockPlan, Source, SourceError};
use super::write::{ExportError, ExportJob};
use crate::util::cancel::{Cancel, Cancelled};
use crate::util::io::ProgressFn;

/// GCE wants the raw disk a whole number of GiB.
pub const GCE_ALIGN: u64 = 1 << 30;
/// The tar member's name.
pub const MEMBER_NAME: &str = "disk.raw";
/// Bytes per gzip member.
const BLOCK: usize = 1 << 20;
/// The libdeflate level of the gzip members.
pub const LEVEL: i32 = 6;

/// Errors of the GCE writer.
#[derive(Debug, thiserror::Error)]
pub enum GceError {
    /// Ctrl-C, SIGTERM or a dropped export.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// The source could not be read.
    #[error("reading the source disk")]
    Source(#[from] SourceError),
    /// The output could not be written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the GCE writer wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GceStats {
    /// Bytes of the `.tar.gz`.
    pub file_bytes: u64,
    /// Size of `disk.raw` in the tar.
    pub raw_bytes: u64,
}

/// The 512-byte GNU (oldgnu magic `ustar  `) tar header of `disk.raw` of
/// `size` bytes (sizes ≥ 8 GiB use GNU's base-256 size field).
pub fn tar_header(size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_path(MEMBER_NAME).expect("a short relative name");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut b = [0u8; 512];
    b.copy_from_slice(h.as_bytes());
    b
}

/// One gzip member holding `data`.
fn gzip(c: &mut Compressor, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .expect("the buffer holds the compress bound");
    out.truncate(n);
    out
}

/// A compressed block: its own member, or the shared all-zero one.
enum Member {
    Own(Vec<u8>),
    Zero,
}

/// Writes `source` as a GCE image (`disk.raw` in a gzip'd tar) at `dest`
/// (a private path: publishing is the caller's); removed on error.
pub async fn write(
    source: &Path,
    dest: &Path,
    threads: Option<usize>,
    cancel: &Cancel,
    progress: Option<ProgressFn<'_>>,
) -> Result<GceStats, GceError> {
    cancel.check()?;
    let mut src = Source::open(source).await?;
    let raw_bytes = round_up(src.virtual_size(), GCE_ALIGN);
    let dest = dest.to_path_buf();
    let job_cancel = cancel.clone();
    let threads = source::worker_threads(threads);
    source::run_blocking(
        move |done| {
            let r = write_blocking(&mut src, &dest, raw_bytes, threads, &job_cancel, &done);
            if r.is_err() {
                let _ = std::fs::remove_file(&dest);
            }
            r
        },
        "writing the GCE tar.gz",
        raw_bytes,
        cancel,
        progress,
    )
    .await
}

fn write_blocking(
    src: &mut Source,
    dest: &Path,
    raw_bytes: u64,
    threads: usize,
    cancel: &Cancel,
    done: &std::sync::atomic::AtomicU64,
) -> Result<GceStats, GceError> {
    let io = |what| {
        let path = dest.to_path_buf();
        move |source| GceError::Io { what, path, source }
    };
    let level = CompressionLvl::new(LEVEL).expect("a valid level");
    let mut c = Compressor::new(level);
    let zero = Arc::new(gzip(&mut c, &vec![0u8; BLOCK]));
    let file = File::create(dest).map_err(io("create"))?;
    let mut out = BufWriter::with_capacity(4 << 20, file);
    let mut bytes = 0u64;
    let mut put = |out: &mut BufWriter<File>, b: &[u8]| {
        bytes += b.len() as u64;
        out.write_all(b).map_err(io("write"))
    };
    put(&mut out, &gzip(&mut c, &tar_header(raw_bytes)))?;
    source::par_blocks(
        src,
        BlockPlan {
            block_size: BLOCK,
            threads,
            length: raw_bytes,
            zero_blocks: true,
        },
        cancel,
        || {
            let mut c = Compressor::new(level);
            move |b: &source::Block<'_>| match b.data {
                Some(d) if d.iter().any(|&x| x != 0) => Member::Own(gzip(&mut c, d)),
                _ => Member::Zero,
            }
        },
        |index, m: Member| {
            match m {
                Member::Own(b) => put(&mut out, &b)?,
                Member::Zero => put(&mut out, &zero)?,
            }
            done.store((index + 1) * BLOCK as u64, Ordering::Relaxed);
            Ok::<(), GceError>(())
        },
    )?;
    cancel.check()?;
    // raw_bytes is a multiple of 512: no padding, just the two end blocks
    put(&mut out, &gzip(&mut c, &[0u8; 1024]))?;
    let file = out.into_inner().map_err(|e| io("write")(e.into_error()))?;
    file.sync_all().map_err(io("flush"))?;
    Ok(GceStats {
        file_bytes: bytes,
        raw_bytes,
    })
}

/// The `gce` export: writes `job.file_name` in `job.dir`; returns the
/// files written, relative to `job.dir`.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: ProgressFn<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    write(
        job.source,
        &job.dir.join(job.file_name),
        job.threads,
        cancel,
        Some(progress),
    )
    .await
    .map_err(|e| match e {
        GceError::Cancelled(c) => ExportError::Cancelled(c),
        other => ExportError::Gce(other),
    })?;
    Ok(vec![PathBuf::from(job.file_name)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_header_is_gnu_and_sized() {
        let h = tar_header(3 << 30);
        assert_eq!(&h[0..8], b"disk.raw");
        assert_eq!(&h[257..265], b"ustar  \0", "oldgnu magic");
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.size().unwrap(), 3 << 30);
        // beyond the 8 GiB of an octal field
        let big = tar_header(64 << 30);
        assert_eq!(tar::Header::from_byte_slice(&big).size().unwrap(), 64 << 30);
        assert_eq!(round_up(1, GCE_ALIGN), GCE_ALIGN);
    }

    #[test]
    fn members_concatenate() {
        use std::io::Read;
        let mut c = Compressor::new(CompressionLvl::new(LEVEL).unwrap());
        let mut all = gzip(&mut c, b"hello ");
        all.extend(gzip(&mut c, b"world"));
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(&all[..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello world");
    }
}
