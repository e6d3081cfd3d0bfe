//! S3 multipart upload of a disk image: part size scaled to the file (at
//! most 10 000 parts), several parts in flight, a CRC32 checksum per part
//! (computed by the SDK, checked by S3), progress, abort on failure, and
//! resume of an interrupted upload from a local state file and ListParts.
//!
//! A failed upload is aborted and its state file removed. An interrupted one
//! (the future dropped, e.g. Ctrl-C) keeps its state file, so the same call
//! later uploads only the parts S3 does not have yet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::{sdk_message, AwsError};

const MIB: u64 = 1024 * 1024;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// The smallest part kiln uses for real uploads.
pub const MIN_PART: u64 = 8 * MIB;

/// The part size for a file of `size` bytes: `max(8 MiB, ceil(size /
/// 10000))` rounded up to a whole MiB.
pub fn part_size(size: u64) -> u64 {
    let need = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    need.max(MIN_PART)
}

/// The (1-based number, offset, length) of every part of a `size`-byte file.
pub fn parts(size: u64, part_size: u64) -> Vec<(i32, u64, u64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut n = 1;
    while offset < size || (size == 0 && n == 1) {
        let len = part_size.min(size - offset);
        out.push((n, offset, len));
        offset += len;
        n += 1;
        if size == 0 {
            break;
        }
    }
    out
}

/// What an upload does.
#[derive(Clone, Debug)]
pub struct UploadRequest {
    /// The file to upload.
    pub file: PathBuf,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Part size; `None` uses [`part_size`]. (Tests use smaller parts.)
    pub part_size: Option<u64>,
    /// Where the resume state is kept while the upload runs.
    pub state_file: PathBuf,
}

/// Progress of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// Bytes in S3 so far (parts completed or reused).
    pub done: u64,
    /// The file size.
    pub total: u64,
    /// Parts completed or reused.
    pub parts_done: u32,
    /// All parts.
    pub parts: u32,
}

/// The result of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The object's size.
    pub size: u64,
    /// Number of parts.
    pub parts: u32,
    /// Parts found already uploaded (resumed) and not sent again.
    pub reused_parts: u32,
    /// The object's ETag (`…-N`).
    pub etag: Option<String>,
}

/// The resume state of an upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The multipart upload id.
    pub upload_id: String,
    /// File size when the upload started.
    pub size: u64,
    /// File modification time (ns since the epoch) when it started.
    pub mtime_ns: u128,
    /// The part size used.
    pub part_size: u64,
}

impl UploadState {
    /// Whether this state belongs to the same upload of the same file.
    pub fn matches(&self, req: &UploadRequest, size: u64, mtime_ns: u128, part_size: u64) -> bool {
        self.bucket == req.bucket
            && self.key == req.key
            && self.size == size
            && self.mtime_ns == mtime_ns
            && self.part_size == part_size
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AwsError + 'a {
    move |source| AwsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn read_state(path: &Path) -> Option<UploadState> {
    // a FIFO or a huge file in its place is no state either
    let text = crate::util::read::read_text(path, 1 << 20).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the state file atomically (temp name, fsync, rename).
fn write_state(path: &Path, state: &UploadState) -> Result<(), AwsError> {
    let dir = crate::util::atomic::parent_dir(path);
    std::fs::create_dir_all(dir).map_err(io("create the folder", dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a temp file in", dir))?;
    serde_json::to_writer(&mut tmp, state).map_err(|e| AwsError::Io {
        what: "write",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    tmp.as_file().sync_all().map_err(io("flush", path))?;
    tmp.persist(path).map_err(|e| AwsError::Io {
        what: "rename the upload state to",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// MD5 (hex) of `len` bytes of `file` at `offset`: S3's ETag of a part.
fn part_md5(file: &Path, offset: u64, len: u64) -> Result<String, AwsError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file).map_err(io("open", file))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io("seek in", file))?;
    let mut hasher = Md5::new();
    let mut left = len;
    let mut buf = vec![0u8; MIB as usize];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(io("read", file))?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Uploads `req.file` to `s3://req.bucket/req.key`, resuming from
/// `req.state_file` when it describes an unfinished upload of the same file.
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    req: &UploadRequest,
    progress: &(dyn Fn(UploadProgress) + Sync),
) -> Result<Uploaded, AwsError> {
    let meta = std::fs::metadata(&req.file).map_err(io("read the size of", &req.file))?;
    let size = meta.len();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let psize = req.part_size.unwrap_or_else(|| part_size(size));
    let plan = parts(size, psize);
    if plan.len() as u64 > MAX_PARTS {
        return Err(AwsError::Invalid(format!(
            "{}: {} parts of {psize} bytes exceed S3's limit of {MAX_PARTS}; use a larger part size",
            req.file.display(),
            plan.len()
        )));
    }
    let target = format!("s3://{}/{}", req.bucket, req.key);

    let mut existing: HashMap<i32, CompletedPart> = HashMap::new();
    let mut upload_id = None;
    if let Some(state) =
        read_state(&req.state_file).filter(|s| s.matches(req, size, mtime_ns, psize))
    {
        if let Some(listed) = list_parts(s3, req, &state.upload_id).await {
            for (n, offset, len) in &plan {
                if let Some((etag, psz, part)) = listed.get(n) {
                    if *psz == *len as i64
                        && etag.trim_matches('"') == part_md5(&req.file, *offset, *len)?
                    {
                        existing.insert(*n, part.clone());
                    }
                }
            }
            upload_id = Some(state.upload_id);
        }
    }
    let upload_id = match upload_id {
        Some(id) => id,
        None => {
            let created = s3
                .create_multipart_upload()
                .bucket(&req.bucket)
                .key(&req.key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
                .await
                .map_err(|e| AwsError::Api {
                    what: format!("cannot start a multipart upload to {target}"),
                    message: sdk_message(&e),
                })?;
            let id = created
                .upload_id()
                .ok_or_else(|| {
                    AwsError::Unexpected(format!("S3 returned no upload id for {target}"))
                })?
                .to_string();
            write_state(
                &req.state_file,
                &UploadState {
                    bucket: req.bucket.clone(),
                    key: req.key.clone(),
                    upload_id: id.clone(),
                    size,
                    mtime_ns,
                    part_size: psize,
                },
            )?;
            id
        }
    };

    let reused = existing.len() as u32;
    let done = AtomicU64::new(
        plan.iter()
            .filter(|p| existing.contains_key(&p.0))
            .map(|p| p.2)
            .sum(),
    );
    let parts_done = AtomicU64::new(reused as u64);
    let total_parts = plan.len() as u32;
    let report = |bytes: u64| {
        let d = done.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let p = parts_done.fetch_add(u64::from(bytes > 0 || size == 0), Ordering::SeqCst) + 1;
        progress(UploadProgress {
            done: d,
            total: size,
            parts_done: p as u32,
            parts: total_parts,
        });
    };
    progress(UploadProgress {
        done: done.load(Ordering::SeqCst),
        total: size,
        parts_done: reused,
        parts: total_parts,
    });

    let result = async {
        let todo: Vec<_> = plan
            .iter()
            .filter(|p| !existing.contains_key(&p.0))
            .copied()
            .collect();
        let mut sent: Vec<CompletedPart> = futures::stream::iter(todo)
            .map(|(n, offset, len)| {
                let upload_id = &upload_id;
                let target = &target;
                let report = &report;
                async move {
                    let part = upload_part(s3, req, upload_id, n, offset, len, target).await?;
                    report(len);
                    Ok::<_, AwsError>(part)
                }
            })
            .buffer_unordered(req.concurrency.max(1))
            .try_collect()
            .await?;
        sent.extend(existing.values().cloned());
        sent.sort_by_key(|p| p.part_number());
        let out = s3
            .complete_multipart_upload()
            .bucket(&req.bucket)
            .key(&req.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(sent))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::Api {
                what: format!("cannot complete the multipart upload to {target}"),
                message: sdk_message(&e),
            })?;
        Ok::<_, AwsError>(out.e_tag().map(str::to_string))
    }
    .await;

    // finished or failed: the state file has served its purpose
    let _ = std::fs::remove_file(&req.state_file);
    match result {
        Ok(etag) => Ok(Uploaded {
            size,
            parts: total_parts,
            reused_parts: reused,
            etag,
        }),
        Err(e) => {
            if let Err(abort) = s3
                .abort_multipart_upload()
                .bucket(&req.bucket)
                .key(&req.key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                return Err(AwsError::Unexpected(format!(
                    "{e}; and aborting the multipart upload {upload_id} of {target} failed too ({}): \
                     abort it with `aws s3api abort-multipart-upload` or a lifecycle rule",
                    sdk_message(&abort)
                )));
            }
            Err(e)
        }
    }
}

async fn upload_part(
    s3: &aws_sdk_s3::Client,
    req: &UploadRequest,
    upload_id: &str,
    n: i32,
    offset: u64,
    len: u64,
    target: &str,
) -> Result<CompletedPart, AwsError> {
    let body = ByteStream::read_from()
        .path(&req.file)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| AwsError::Io {
            what: "read a part of",
            path: req.file.clone(),
            source: std::io::Error::other(e),
        })?;
    let out = s3
        .upload_part()
        .bucket(&req.bucket)
        .key(&req.key)
        .upload_id(upload_id)
        .part_number(n)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(body)
        .send()
        .await
        .map_err(|e| AwsError::Api {
            what: format!("cannot upload part {n} of {target}"),
            message: sdk_message(&e),
        })?;
    Ok(CompletedPart::builder()
        .part_number(n)
        .set_e_tag(out.e_tag().map(str::to_string))
        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
        .build())
}

/// The parts S3 holds for an upload: number → (ETag, size, completed part).
/// `None` when the upload is gone (completed, aborted or expired).
async fn list_parts(
    s3: &aws_sdk_s3::Client,
    req: &UploadRequest,
    upload_id: &str,
) -> Option<HashMap<i32, (String, i64, CompletedPart)>> {
    let mut out = HashMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page = s3
            .list_parts()
            .bucket(&req.bucket)
            .key(&req.key)
            .upload_id(upload_id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .ok()?;
        for p in page.parts() {
            let (Some(n), Some(etag), Some(size)) = (p.part_number(), p.e_tag(), p.size()) else {
                continue;
            };
            let part = CompletedPart::builder()
                .part_number(n)
                .e_tag(etag)
                .set_checksum_crc32(p.checksum_crc32().map(str::to_string))
                .build();
            out.insert(n, (etag.to_string(), size, part));
        }
        match (page.is_truncated(), page.next_part_number_marker()) {
            (Some(true), Some(m)) => marker = Some(m.to_string()),
            _ => return Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_scales_with_the_file() {
        assert_eq!(part_size(0), 8 * MIB);
        assert_eq!(part_size(20 * MIB), 8 * MIB);
        assert_eq!(part_size(78 * 1024 * MIB), 8 * MIB);
        // 1 TiB needs ceil(2^40/10000) = 109951163 bytes → 105 MiB
        assert_eq!(part_size(1 << 40), 105 * MIB);
        let size = (1u64 << 40) + 12345;
        assert!(parts(size, part_size(size)).len() as u64 <= MAX_PARTS);
    }

    #[test]
    fn parts_cover_the_file_last_one_smaller() {
        let p = parts(20 * MIB + 1, 8 * MIB);
        assert_eq!(
            p,
            vec![
                (1, 0, 8 * MIB),
                (2, 8 * MIB, 8 * MIB),
                (3, 16 * MIB, 4 * MIB + 1)
            ]
        );
        assert_eq!(parts(0, 8 * MIB), vec![(1, 0, 0)]);
        assert_eq!(parts(8 * MIB, 8 * MIB), vec![(1, 0, 8 * MIB)]);
    }
}
