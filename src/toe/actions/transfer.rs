//! Transfer actions: S3Download, S3Upload and WebDownload. Bytes are fetched
//! on this host and copied into the target, so a guest needs no network and
//! no credentials.
//!
//! Every transfer goes through a host-side temporary file (mode 0600 in a
//! private folder, see `HostTemp`): downloads are
//! streamed into it (hashed on the way for WebDownload) and then copied into
//! the target with [`Target::upload`](crate::target::Target::upload); uploads
//! copy the file out of the target with
//! [`Target::download`](crate::target::Target::download) first. Target paths
//! are only ever touched through the [`Target`](crate::target::Target).

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use sha2::digest::DynDigest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::target::FileKind;
use crate::util::display::Escaped;

use super::{fail, paths, ActionContext, ActionError, ActionOutcome, Inputs};

/// How many times WebDownload tries a URL before giving up.
pub const WEB_ATTEMPTS: u32 = 5;
/// The first wait between WebDownload attempts; it doubles after each one.
pub const WEB_BACKOFF: Duration = Duration::from_millis(200);
/// The most objects an S3Download prefix (`…/*`) may fetch.
pub const MAX_PREFIX_OBJECTS: usize = 1000;
/// The most pages of an S3 listing kiln reads (folder markers, which are
/// not fetched, can fill pages too).
pub const MAX_LIST_PAGES: usize = 100;
/// The most characters of an S3 peer's error code or message kiln quotes.
const MAX_PEER_TEXT: usize = 300;
/// Files larger than this are uploaded to S3 in parts of this size.
pub const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;

/// Network clients shared by the transfer actions of a run. The clients are
/// built on first use.
pub struct Clients {
    /// An explicit S3 endpoint (tests); `None` uses the AWS config chain.
    s3_endpoint: Option<String>,
    /// Multipart part size (and threshold) for S3Upload.
    part_size: u64,
    s3: OnceCell<aws_sdk_s3::Client>,
    http: OnceCell<reqwest::Client>,
    http_insecure: OnceCell<reqwest::Client>,
}

impl Default for Clients {
    /// Clients configured from the environment: the standard AWS config chain
    /// (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
    /// shared config files, instance metadata …).
    fn default() -> Self {
        Clients {
            s3_endpoint: None,
            part_size: DEFAULT_PART_SIZE,
            s3: OnceCell::new(),
            http: OnceCell::new(),
            http_insecure: OnceCell::new(),
        }
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("s3_endpoint", &self.s3_endpoint)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl Clients {
    /// Clients whose S3 calls go to `endpoint` (e.g. `http://127.0.0.1:5000`)
    /// with path-style addressing. Credentials and region still come from the
    /// AWS config chain (region defaults to `us-east-1`).
    pub fn with_s3_endpoint(endpoint: impl Into<String>) -> Self {
        Clients {
            s3_endpoint: Some(endpoint.into()),
            ..Clients::default()
        }
    }

    /// Sets the multipart part size for S3Upload: larger files are sent in
    /// parts of this many bytes. S3 needs at least 5 MiB per part.
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The S3 client, built on first use by [`crate::aws::client::s3_client`]
    /// from the AWS config chain's default region.
    pub async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async {
                let sdk = crate::aws::client::sdk_config(None).await;
                crate::aws::client::s3_client(&sdk, self.s3_endpoint.as_deref())
            })
            .await
    }

    /// The HTTP client for WebDownload; `insecure` skips certificate checks.
    pub async fn http(&self, insecure: bool) -> Result<&reqwest::Client, ActionError> {
        let cell = if insecure {
            &self.http_insecure
        } else {
            &self.http
        };
        cell.get_or_try_init(|| async {
            reqwest::Client::builder()
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::limited(10))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| ActionError::Failed(format!("cannot build the HTTP client: {e}")))
        })
        .await
    }
}

/// Runs one input map of a transfer action.
pub async fn run(
    action: &str,
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    match action {
        "S3Download" => s3_download(inputs, ctx).await,
        "S3Upload" => s3_upload(inputs, ctx).await,
        "WebDownload" => web_download(inputs, ctx).await,
        _ => fail(format!("`{action}` is not a transfer action")),
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

fn host_io(what: &str, e: std::io::Error) -> ActionError {
    ActionError::Failed(format!("{what}: {e}"))
}

/// A host-side temporary file of one transfer: `data`, mode 0600, alone in
/// a private folder (mode 0700) of the system's temp dir; both are removed
/// when it is dropped. Bytes from a guest, S3 or a web server never get more
/// than owner access on this host (no setuid, setgid or sticky bit).
struct HostTemp {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl HostTemp {
    fn path(&self) -> &Path {
        &self.path
    }
}

/// Mode of a [`HostTemp`] file.
const TEMP_FILE_MODE: u32 = 0o600;
/// Mode of a [`HostTemp`] folder.
const TEMP_DIR_MODE: u32 = 0o700;

fn new_temp() -> Result<HostTemp, ActionError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e| host_io("cannot create a temporary file on this host", e);
    let dir = tempfile::Builder::new()
        .prefix("kiln-transfer-")
        .permissions(std::fs::Permissions::from_mode(TEMP_DIR_MODE))
        .tempdir()
        .map_err(failed)?;
    let path = dir.path().join("data");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TEMP_FILE_MODE)
        .open(&path)
        .map_err(failed)?;
    Ok(HostTemp { path, _dir: dir })
}

/// Opens a host-side temp file for async writing.
async fn temp_writer(tmp: &HostTemp) -> Result<tokio::fs::File, ActionError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(tmp.path())
        .await
        .map_err(|e| host_io("cannot open a temporary file on this host", e))
}

/// The folder part of a target path (`.` for a bare name, `/` for `/x`).
fn parent(path: &str) -> String {
    paths::parent(path).unwrap_or(".").to_string()
}

/// A folder path without trailing slashes (`/` stays `/`, empty is `.`).
fn folder(path: &str) -> String {
    match paths::trim_trailing_slashes(path) {
        "" => ".".to_string(),
        t => t.to_string(),
    }
}

/// Fails unless `path` is an existing folder on the target.
async fn require_folder(
    ctx: &ActionContext<'_>,
    path: &str,
    role: &str,
) -> Result<(), ActionError> {
    match ctx.target.stat(path, true).await? {
        Some(s) if s.kind == FileKind::Dir => Ok(()),
        Some(_) => fail(format!("{role} `{path}` is not a folder")),
        None => fail(format!(
            "{role} `{path}` does not exist on {} (destination folders must already exist)",
            ctx.target.describe()
        )),
    }
}

/// Fails with "File already exists" when `overwrite` is false and `path` exists.
async fn check_overwrite(
    ctx: &ActionContext<'_>,
    path: &str,
    overwrite: bool,
) -> Result<(), ActionError> {
    match ctx.target.stat(path, true).await? {
        Some(s) if s.kind == FileKind::Dir => {
            fail(format!("destination `{path}` is a folder, not a file"))
        }
        Some(_) if !overwrite => fail(format!(
            "File already exists: `{path}` (set overwrite: true to replace it)"
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// S3

/// A parsed `s3://bucket/key` URI.
#[derive(Clone, Debug, PartialEq)]
struct S3Uri {
    bucket: String,
    key: String,
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

fn parse_s3_uri(input: &str, role: &str) -> Result<S3Uri, ActionError> {
    let s = input.trim();
    let rest = match s.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("s3://") => &s[5..],
        _ => {
            return fail(format!(
                "{role} `{input}` is not an S3 URI (expected s3://bucket/key)"
            ))
        }
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return fail(format!("{role} `{input}` has no bucket name"));
    }
    Ok(S3Uri {
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

/// A clear message for a failed S3 call (never includes credentials).
fn s3_error<E, R>(what: &str, uri: &S3Uri, err: &SdkError<E, R>) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match (err.code(), err.message()) {
        (Some("NoSuchBucket"), _) => format!("bucket `{}` does not exist", uri.bucket),
        (Some("NoSuchKey"), _) | (Some("NotFound"), _) => format!(
            "object `{}` does not exist in bucket `{}`",
            uri.key, uri.bucket
        ),
        (Some(code), Some(msg)) => format!("{}: {}", peer_text(code), peer_text(msg)),
        (Some(code), None) => peer_text(code),
        // the SDK's text may quote the peer's whole answer
        _ => peer_text(&DisplayErrorContext(err).to_string()),
    };
    ActionError::Failed(format!("{what} {uri}: {detail}"))
}

/// Text from an S3 peer, for a message: at most [`MAX_PEER_TEXT`]
/// characters, control characters escaped.
fn peer_text(text: &str) -> String {
    let cut: String = text.chars().take(MAX_PEER_TEXT).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{more}", Escaped(&cut))
}

fn owner_of(inputs: &Inputs) -> Option<String> {
    inputs
        .str("expectedBucketOwner")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Checks that a key suffix is a safe relative path (no `..`, no empty parts).
fn safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

async fn s3_download(
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    let source = inputs.required("source")?;
    let destination = inputs.required("destination")?;
    let overwrite = inputs.bool("overwrite", true)?;
    let owner = owner_of(inputs);
    let uri = parse_s3_uri(source, "source")?;
    if destination.trim().is_empty() {
        return fail("input `destination` is empty");
    }

    let prefix = if uri.key == "*" {
        Some(String::new())
    } else {
        uri.key.strip_suffix("/*").map(|p| format!("{p}/"))
    };
    let client = ctx.clients.s3().await;

    let mut plan: Vec<(S3Uri, String)> = Vec::new();
    match prefix {
        Some(prefix) => {
            let dest_dir = folder(destination);
            require_folder(ctx, &dest_dir, "destination folder").await?;
            let listed = S3Uri {
                bucket: uri.bucket.clone(),
                key: prefix.clone(),
            };
            let keys = list_keys(client, &listed, owner.as_deref()).await?;
            if keys.is_empty() {
                return fail(format!("no objects found under {listed}"));
            }
            for key in keys {
                // the listing comes from the peer: a key outside the prefix
                // (or a prefix cut inside a character) is its error
                let Some(rel) = key.strip_prefix(prefix.as_str()) else {
                    return fail(format!(
                        "the listing of {listed} returned object key `{}`, which is not under that prefix",
                        Escaped(&key)
                    ));
                };
                if !safe_relative(rel) {
                    return fail(format!(
                        "object key `{}` in bucket `{}` cannot be saved below `{dest_dir}`",
                        Escaped(&key),
                        uri.bucket
                    ));
                }
                let dest = paths::join(&dest_dir, rel);
                plan.push((
                    S3Uri {
                        bucket: uri.bucket.clone(),
                        key,
                    },
                    dest,
                ));
            }
        }
        None => {
            if uri.key.is_empty() || uri.key.ends_with('/') {
                return fail(format!(
                    "source `{source}` must name an object, or a prefix ending in `/*`"
                ));
            }
            let dest = if destination.ends_with('/')
                || matches!(ctx.target.stat(destination, true).await?, Some(s) if s.kind == FileKind::Dir)
            {
                paths::join(destination, paths::file_name(&uri.key))
            } else {
                destination.to_string()
            };
            require_folder(ctx, &parent(&dest), "destination folder").await?;
            plan.push((uri, dest));
        }
    }

    // Refuse before fetching anything, so a refusal leaves the target untouched.
    for (_, dest) in &plan {
        check_overwrite(ctx, dest, overwrite).await?;
    }
    for (object, dest) in &plan {
        // Sub-folders below the (existing) destination of a prefix download.
        let sub = parent(dest);
        if ctx.target.stat(&sub, true).await?.is_none() {
            ctx.target.create_dir_all(&sub).await?;
        }
        let size = download_object(client, object, owner.as_deref(), dest, ctx).await?;
        ctx.log(&format!("S3Download: {object} -> {dest} ({size} bytes)"));
    }
    Ok(ActionOutcome::default())
}

/// Lists the object keys under a prefix (folder markers left out).
async fn list_keys(
    client: &aws_sdk_s3::Client,
    prefix: &S3Uri,
    owner: Option<&str>,
) -> Result<Vec<String>, ActionError> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..MAX_LIST_PAGES {
        let mut req = client
            .list_objects_v2()
            .bucket(&prefix.bucket)
            .prefix(&prefix.key)
            .set_continuation_token(token.take());
        if let Some(o) = owner {
            req = req.expected_bucket_owner(o);
        }
        let page = req
            .send()
            .await
            .map_err(|e| s3_error("cannot list", prefix, &e))?;
        for obj in page.contents() {
            if let Some(key) = obj.key() {
                if !key.ends_with('/') {
                    keys.push(key.to_string());
                }
            }
            if keys.len() > MAX_PREFIX_OBJECTS {
                return fail(format!(
                    "{prefix}* holds more than {MAX_PREFIX_OBJECTS} objects; S3Download fetches at most {MAX_PREFIX_OBJECTS}"
                ));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => {
                if !tokens.insert(t.to_string()) {
                    return fail(format!(
                        "the listing of {prefix}* repeats a continuation token; the S3 endpoint is not answering like S3"
                    ));
                }
                token = Some(t.to_string());
            }
            _ => return Ok(keys),
        }
    }
    fail(format!(
        "the listing of {prefix}* did not end after {MAX_LIST_PAGES} pages"
    ))
}

/// Streams one object into a host temp file, then into the target.
async fn download_object(
    client: &aws_sdk_s3::Client,
    object: &S3Uri,
    owner: Option<&str>,
    dest: &str,
    ctx: &ActionContext<'_>,
) -> Result<u64, ActionError> {
    let mut req = client.get_object().bucket(&object.bucket).key(&object.key);
    if let Some(o) = owner {
        req = req.expected_bucket_owner(o);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| s3_error("cannot download", object, &e))?;
    let tmp = new_temp()?;
    let mut file = temp_writer(&tmp).await?;
    let mut body = resp.body;
    let mut size = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| ActionError::Failed(format!("reading {object} failed: {e}")))?
    {
        file.write_all(&chunk)
            .await
            .map_err(|e| host_io("cannot write a temporary file on this host", e))?;
        size += chunk.len() as u64;
    }
    file.flush()
        .await
        .map_err(|e| host_io("cannot write a temporary file on this host", e))?;
    drop(file);
    ctx.target.upload(tmp.path(), dest).await?;
    Ok(size)
}

/// Key prefix for uploads into a "folder" of the bucket.
fn key_prefix(key: &str) -> String {
    if key.is_empty() || key.ends_with('/') {
        key.to_string()
    } else {
        format!("{key}/")
    }
}

/// Collects every regular file below `dir` (symlinks to files included,
/// symlinks to folders not followed).
async fn walk(
    ctx: &ActionContext<'_>,
    dir: &str,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), ActionError> {
    let mut stack = vec![(dir.to_string(), prefix.to_string())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in ctx.target.list_dir(&dir).await? {
            let path = paths::join(&dir, &entry.name);
            let key = format!("{prefix}{}", entry.name);
            let kind = match entry.kind {
                FileKind::Symlink => match ctx.target.stat(&path, true).await? {
                    Some(s) if s.kind == FileKind::File => FileKind::File,
                    _ => FileKind::Other,
                },
                k => k,
            };
            match kind {
                FileKind::File => out.push((path, key)),
                FileKind::Dir => stack.push((path, format!("{key}/"))),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn s3_upload(inputs: &Inputs, ctx: &ActionContext<'_>) -> Result<ActionOutcome, ActionError> {
    let source = inputs.required("source")?;
    let destination = inputs.required("destination")?;
    let recurse = inputs.bool("recurse", false)?;
    let owner = owner_of(inputs);
    let dest = parse_s3_uri(destination, "destination")?;
    if source.trim().is_empty() {
        return fail("input `source` is empty");
    }

    // (path on the target, object key)
    let mut plan: Vec<(String, String)> = Vec::new();
    let last = paths::file_name(source);
    if last.contains('*') || last.contains('?') {
        let dir = parent(source);
        if dir.contains('*') || dir.contains('?') {
            return fail(format!(
                "source `{source}`: a wildcard is only allowed in the last path segment"
            ));
        }
        require_folder(ctx, &dir, "source folder").await?;
        let prefix = key_prefix(&dest.key);
        for entry in ctx.target.list_dir(&dir).await? {
            if !paths::glob_match(last, &entry.name, true) {
                continue;
            }
            let path = paths::join(&dir, &entry.name);
            let kind = match entry.kind {
                FileKind::Symlink => ctx
                    .target
                    .stat(&path, true)
                    .await?
                    .map_or(FileKind::Other, |s| s.kind),
                k => k,
            };
            match kind {
                FileKind::File => plan.push((path, format!("{prefix}{}", entry.name))),
                FileKind::Dir if recurse => {
                    walk(ctx, &path, &format!("{prefix}{}/", entry.name), &mut plan).await?
                }
                FileKind::Dir => ctx.log(&format!(
                    "S3Upload: skipping folder {path} (recurse is false)"
                )),
                _ => {}
            }
        }
        if plan.is_empty() {
            return fail(format!("source `{source}` matches no files"));
        }
    } else {
        match ctx.target.stat(source, true).await? {
            None => {
                return fail(format!(
                    "source `{source}` does not exist on {}",
                    ctx.target.describe()
                ))
            }
            Some(s) if s.kind == FileKind::Dir => {
                if !recurse {
                    return fail(format!(
                        "source `{source}` is a folder; set recurse: true or use a `*` wildcard"
                    ));
                }
                walk(ctx, &folder(source), &key_prefix(&dest.key), &mut plan).await?;
                if plan.is_empty() {
                    return fail(format!("source folder `{source}` holds no files"));
                }
            }
            Some(_) => {
                let key = if dest.key.is_empty() || dest.key.ends_with('/') {
                    format!("{}{}", dest.key, paths::file_name(source))
                } else {
                    dest.key.clone()
                };
                plan.push((source.to_string(), key));
            }
        }
    }

    let client = ctx.clients.s3().await;
    for (path, key) in plan {
        let object = S3Uri {
            bucket: dest.bucket.clone(),
            key,
        };
        let size = upload_object(client, ctx, &path, &object, owner.as_deref()).await?;
        ctx.log(&format!("S3Upload: {path} -> {object} ({size} bytes)"));
    }
    Ok(ActionOutcome::default())
}

/// Copies a file out of the target into a host temp file, then puts it in S3
/// (in parts when it is larger than the part size).
async fn upload_object(
    client: &aws_sdk_s3::Client,
    ctx: &ActionContext<'_>,
    path: &str,
    object: &S3Uri,
    owner: Option<&str>,
) -> Result<u64, ActionError> {
    let tmp = new_temp()?;
    ctx.target.download(path, tmp.path()).await?;
    let size = tokio::fs::metadata(tmp.path())
        .await
        .map_err(|e| host_io("cannot read a temporary file on this host", e))?
        .len();
    let part_size = ctx.clients.part_size;
    if size <= part_size {
        let body = ByteStream::from_path(tmp.path())
            .await
            .map_err(|e| ActionError::Failed(format!("cannot read {path}: {e}")))?;
        let mut req = client
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .body(body);
        if let Some(o) = owner {
            req = req.expected_bucket_owner(o);
        }
        req.send()
            .await
            .map_err(|e| s3_error("cannot upload to", object, &e))?;
    } else {
        multipart_upload(client, tmp.path(), size, part_size, object, owner).await?;
    }
    Ok(size)
}

async fn multipart_upload(
    client: &aws_sdk_s3::Client,
    file: &Path,
    size: u64,
    part_size: u64,
    object: &S3Uri,
    owner: Option<&str>,
) -> Result<(), ActionError> {
    let mut create = client
        .create_multipart_upload()
        .bucket(&object.bucket)
        .key(&object.key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32);
    if let Some(o) = owner {
        create = create.expected_bucket_owner(o);
    }
    let created = create
        .send()
        .await
        .map_err(|e| s3_error("cannot start a multipart upload to", object, &e))?;
    let Some(upload_id) = created.upload_id().map(str::to_string) else {
        return fail(format!("S3 returned no upload id for {object}"));
    };

    let result = async {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let len = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(file)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| ActionError::Failed(format!("cannot read part {number}: {e}")))?;
            let mut req = client
                .upload_part()
                .bucket(&object.bucket)
                .key(&object.key)
                .upload_id(&upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(body);
            if let Some(o) = owner {
                req = req.expected_bucket_owner(o);
            }
            let out = req
                .send()
                .await
                .map_err(|e| s3_error(&format!("cannot upload part {number} of"), object, &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        let mut complete = client
            .complete_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if let Some(o) = owner {
            complete = complete.expected_bucket_owner(o);
        }
        complete
            .send()
            .await
            .map_err(|e| s3_error("cannot complete the multipart upload to", object, &e))?;
        Ok::<(), ActionError>(())
    }
    .await;

    if result.is_err() {
        let mut abort = client
            .abort_multipart_upload()
            .bucket(&object.bucket)
            .key(&object.key)
            .upload_id(&upload_id);
        if let Some(o) = owner {
            abort = abort.expected_bucket_owner(o);
        }
        let _ = abort.send().await;
    }
    result
}

// ---------------------------------------------------------------------------
// WebDownload

/// A WebDownload hash algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    fn hasher(self) -> Box<dyn DynDigest + Send> {
        match self {
            Self::Md5 => Box::new(md5::Md5::default()),
            Self::Sha1 => Box::new(sha1::Sha1::default()),
            Self::Sha256 => Box::new(sha2::Sha256::default()),
            Self::Sha512 => Box::new(sha2::Sha512::default()),
        }
    }
}

/// A URL fit for logs: its password, signature-like query values and any
/// secret value masked ([`crate::util::redact`]).
fn display_url(url: &reqwest::Url) -> String {
    crate::util::redact::text(url.as_str())
}

/// Decodes `%XX` escapes of a URL path segment.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name a URL names (last path segment), if any.
fn url_file_name(url: &reqwest::Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let name = percent_decode(last);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        None
    } else {
        Some(name)
    }
}

/// One failed attempt.
struct AttemptError {
    message: String,
    retry: bool,
}

async fn web_download(
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    let source = inputs.required("source")?.trim();
    let destination = inputs.required("destination")?;
    let overwrite = inputs.bool("overwrite", true)?;
    let insecure = inputs.bool("ignoreCertificateErrors", false)?;
    let checksum = inputs
        .str("checksum")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let algorithm = match inputs
        .str("algorithm")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(a) => Some(Algorithm::parse(a).ok_or_else(|| {
            ActionError::Failed(format!(
                "input `algorithm` must be one of MD5, SHA1, SHA256, SHA512, found `{a}`"
            ))
        })?),
        None => None,
    };
    let verify = match (algorithm, checksum) {
        (Some(a), Some(c)) => Some((a, c.to_ascii_lowercase())),
        _ => None,
    };

    let url = reqwest::Url::parse(source)
        .map_err(|e| ActionError::Failed(format!("source `{source}` is not a valid URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return fail(format!(
            "source `{}` must be an http or https URL",
            display_url(&url)
        ));
    }
    let shown = display_url(&url);
    if destination.trim().is_empty() {
        return fail("input `destination` is empty");
    }

    let (dest, dest_dir) = if destination.ends_with('/') {
        let name = url_file_name(&url).ok_or_else(|| {
            ActionError::Failed(format!(
                "cannot take a file name from {shown}; give `destination` as a file path"
            ))
        })?;
        (paths::join(destination, &name), folder(destination))
    } else {
        (destination.to_string(), parent(destination))
    };
    match ctx.target.stat(&dest_dir, true).await? {
        Some(s) if s.kind == FileKind::Dir => {}
        Some(_) => return fail(format!("destination folder `{dest_dir}` is not a folder")),
        None => ctx.target.create_dir_all(&dest_dir).await?,
    }

    match ctx.target.stat(&dest, true).await? {
        Some(s) if s.kind == FileKind::Dir => {
            return fail(format!(
                "destination `{dest}` is a folder; end `destination` with `/` to download into it"
            ))
        }
        Some(_) if !overwrite => {
            return fail(format!(
                "File already exists: `{dest}` (set overwrite: true to replace it)"
            ))
        }
        Some(_) => {
            if let Some((algo, want)) = &verify {
                let have = hash_target_file(ctx, &dest, *algo).await?;
                if &have == want {
                    ctx.log(&format!(
                        "WebDownload: {dest} already has {} {want}; download of {shown} skipped",
                        algo.name()
                    ));
                    return Ok(outcome(dest));
                }
            }
        }
        None => {}
    }

    let client = ctx.clients.http(insecure).await?;
    let mut last = String::new();
    let mut attempts = 0;
    let fetched = loop {
        attempts += 1;
        match fetch_once(client, &url, &shown, algorithm).await {
            Ok(ok) => break Some(ok),
            Err(e) => {
                last = e.message;
                if !e.retry || attempts >= WEB_ATTEMPTS {
                    break None;
                }
                let wait = WEB_BACKOFF * 2u32.pow(attempts - 1);
                ctx.log(&format!(
                    "WebDownload: attempt {attempts}/{WEB_ATTEMPTS} failed: {last}; retrying in {} ms",
                    wait.as_millis()
                ));
                tokio::time::sleep(wait).await;
            }
        }
    };
    let Some((tmp, size, digest)) = fetched else {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        return fail(format!("{last}{tries}"));
    };

    if let (Some((algo, want)), Some(have)) = (&verify, &digest) {
        if have != want {
            return fail(format!(
                "checksum mismatch for {shown}: expected {} {want}, got {have}",
                algo.name()
            ));
        }
    }
    ctx.target.upload(tmp.path(), &dest).await?;
    ctx.log(&format!("WebDownload: {shown} -> {dest} ({size} bytes)"));
    Ok(outcome(dest))
}

fn outcome(dest: String) -> ActionOutcome {
    ActionOutcome {
        outputs: [("destination".to_string(), dest)].into(),
        reboot: None,
    }
}

/// One GET: streams the body into a host temp file, hashing it on the way.
async fn fetch_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    shown: &str,
    algorithm: Option<Algorithm>,
) -> Result<(HostTemp, u64, Option<String>), AttemptError> {
    let hard = |message: String| AttemptError {
        message,
        retry: false,
    };
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| AttemptError {
            message: format!("GET {shown} failed: {}", reqwest_detail(&e)),
            retry: !(e.is_redirect() || e.is_builder()),
        })?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        let code = status.as_u16();
        let final_url = display_url(resp.url());
        let via = if final_url != shown {
            format!(" (redirected to {final_url})")
        } else {
            String::new()
        };
        return Err(AttemptError {
            message: format!("GET {shown}{via} returned HTTP {status}; only 200 is accepted"),
            retry: status.is_server_error() || code == 408 || code == 429,
        });
    }
    let tmp = new_temp().map_err(|e| hard(e.to_string()))?;
    let mut file = temp_writer(&tmp).await.map_err(|e| hard(e.to_string()))?;
    let mut hasher = algorithm.map(Algorithm::hasher);
    let mut size = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|e| AttemptError {
            message: format!("reading the body of {shown} failed: {}", reqwest_detail(&e)),
            retry: true,
        })?;
        let Some(chunk) = chunk else { break };
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| hard(format!("cannot write a temporary file on this host: {e}")))?;
        size += chunk.len() as u64;
    }
    file.flush()
        .await
        .map_err(|e| hard(format!("cannot write a temporary file on this host: {e}")))?;
    drop(file);
    let digest = hasher.map(|h| hex::encode(h.finalize()));
    Ok((tmp, size, digest))
}

/// A reqwest error with its causes, without the URL (which may hold secrets).
fn reqwest_detail(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let head = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "redirect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request error"
    };
    if parts.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {}", parts.join(": "))
    }
}

/// Hashes a file on the target (copied to a host temp file first).
async fn hash_target_file(
    ctx: &ActionContext<'_>,
    path: &str,
    algorithm: Algorithm,
) -> Result<String, ActionError> {
    let tmp = new_temp()?;
    ctx.target.download(path, tmp.path()).await?;
    let mut file = tokio::fs::File::open(tmp.path())
        .await
        .map_err(|e| host_io("cannot read a temporary file on this host", e))?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| host_io("cannot read a temporary file on this host", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_uris() {
        let u = parse_s3_uri("s3://b/a/k.txt", "source").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "a/k.txt"));
        let u = parse_s3_uri("S3://b", "source").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", ""));
        assert!(parse_s3_uri("https://b/k", "source").is_err());
        assert!(parse_s3_uri("s3:///k", "source").is_err());
    }

    #[test]
    fn globs() {
        assert!(paths::glob_match("*.txt", "a.txt", true));
        assert!(paths::glob_match("*", ".hidden", true));
        assert!(paths::glob_match("a*b*c", "aXXbYc", true));
        assert!(paths::glob_match("?.log", "1.log", true));
        assert!(!paths::glob_match("*.txt", "a.txt.bak", true));
        assert!(!paths::glob_match("a*", "ba", true));
    }

    #[test]
    fn paths() {
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/c"), "/");
        assert_eq!(parent("c"), ".");
        assert_eq!(folder("/a/b/"), "/a/b");
        assert_eq!(folder("/"), "/");
        assert_eq!(paths::join("/a/", "b"), "/a/b");
        assert_eq!(paths::file_name("/a/b/"), "b");
        assert!(safe_relative("a/b"));
        assert!(!safe_relative("a/../b"));
        assert!(!safe_relative("a//b"));
    }

    #[test]
    fn urls() {
        let u = reqwest::Url::parse("https://u:pw@h/x/f%20n.tgz?X-Amz-Signature=abc&v=1").unwrap();
        assert_eq!(url_file_name(&u).as_deref(), Some("f n.tgz"));
        let shown = display_url(&u);
        assert!(!shown.contains("pw") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("v=1"));
        let root = reqwest::Url::parse("https://h/").unwrap();
        assert_eq!(url_file_name(&root), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
