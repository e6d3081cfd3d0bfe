//! `kiln ami import` as one library call: prepare the disk in the upload
//! format, upload it, import it, wait, name, tag, copy, share, and delete
//! the uploaded object.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::client::Clients;
use super::distribute::{self, Distribution, RegionImage};
use super::import::{self, CancelOnDrop, ImportRequest};
use super::poll::{self, PollOptions, TaskStatus};
use super::preflight::{self, Finding, Severity};
use super::upload::{self, UploadProgress, UploadRequest, Uploaded};
use super::{sdk_message, AwsError};
use crate::ami::{names, AmiSpec, DiskFormat};
use crate::disk::img::{self, ConvertOptions, Format};

/// Everything `kiln ami import` needs.
#[derive(Clone, Debug)]
pub struct AmiImport {
    /// The local image (any format qemu-img reads).
    pub image: PathBuf,
    /// The upload bucket (in the import region).
    pub bucket: String,
    /// The object key; `None`: `kiln/<name>/<disk file name>`.
    pub key: Option<String>,
    /// The disk format uploaded.
    pub format: DiskFormat,
    /// ImportSnapshot + RegisterImage instead of ImportImage.
    pub via_snapshot: bool,
    /// Import parameters (bucket and key are filled in here).
    pub import: ImportRequest,
    /// Naming, tags, copies and sharing.
    pub distribution: Distribution,
    /// Import without the pre-flight checks.
    pub skip_preflight: bool,
    /// Keep the uploaded object after the import.
    pub keep_upload: bool,
    /// Where converted disks and upload state are kept between attempts.
    pub work_dir: PathBuf,
    /// Upload part size (`None`: scaled to the disk).
    pub part_size: Option<u64>,
    /// Parts in flight.
    pub concurrency: usize,
    /// Polling of tasks and images.
    pub poll: PollOptions,
}

/// The full request to import `image` as `spec` asks, named
/// [`AmiSpec::name_or`] `default_name`, with the local upload and polling
/// settings.
pub fn request(
    spec: &AmiSpec,
    image: PathBuf,
    default_name: &str,
    work_dir: PathBuf,
    local: LocalSettings,
) -> AmiImport {
    let encrypt = match (&spec.kms_key, spec.encrypted) {
        (Some(k), _) => Some(Some(k.clone())),
        (None, true) => Some(None),
        (None, false) => None,
    };
    AmiImport {
        image,
        bucket: spec.bucket.clone(),
        key: spec.key.clone(),
        format: spec.format,
        via_snapshot: spec.via_snapshot,
        import: ImportRequest {
            bucket: String::new(),
            key: String::new(),
            format: spec.format,
            architecture: spec.architecture.clone(),
            boot_mode: spec.boot_mode,
            encrypt,
            role_name: spec.role_name.clone(),
            task_tags: spec.tags.clone(),
            description: spec.description.clone(),
        },
        distribution: Distribution {
            name: spec.name_or(default_name),
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            regions: spec.regions.clone(),
            sharing: spec.sharing.clone(),
        },
        skip_preflight: spec.skip_preflight,
        keep_upload: spec.keep_upload,
        work_dir,
        part_size: local.part_size,
        concurrency: local.concurrency,
        poll: local.poll,
    }
}

/// How the upload and the polling run on this machine.
#[derive(Clone, Copy, Debug)]
pub struct LocalSettings {
    /// Upload part size (`None`: scaled to the disk).
    pub part_size: Option<u64>,
    /// Parts in flight.
    pub concurrency: usize,
    /// Polling of tasks and images.
    pub poll: PollOptions,
}

impl Default for LocalSettings {
    /// Scaled parts, 4 in flight, [`PollOptions::default`].
    fn default() -> Self {
        LocalSettings {
            part_size: None,
            concurrency: 4,
            poll: PollOptions::default(),
        }
    }
}

/// What an import produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AmiImported {
    /// The import task id.
    pub import_task_id: String,
    /// `s3://bucket/key` of the upload.
    pub upload: String,
    /// Whether the uploaded object was deleted.
    pub upload_deleted: bool,
    /// Uploaded bytes.
    pub upload_bytes: u64,
    /// Parts reused from an interrupted upload.
    pub reused_parts: u32,
    /// The AMI in every region, the import region's first.
    pub images: Vec<RegionImage>,
}

/// Something happening during the import, for progress output.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A step starts or ends.
    Step(&'a str),
    /// Upload progress.
    Upload(UploadProgress),
    /// A task changed.
    Task(&'a TaskStatus),
    /// A pre-flight finding.
    Finding(&'a Finding),
}

impl Event<'_> {
    /// The event as one progress line (a finding's fix on a second line).
    pub fn line(&self) -> String {
        match self {
            Event::Step(s) => s.to_string(),
            Event::Upload(p) => format!(
                "upload: {}/{} parts, {} of {} MiB",
                p.parts_done,
                p.parts,
                p.done >> 20,
                p.total >> 20
            ),
            Event::Task(s) => format!("{}: {}", s.task_id, s.line()),
            Event::Finding(f) => format!(
                "pre-flight {:?} {}: {}\n         fix: {}",
                f.severity, f.check, f.message, f.fix
            ),
        }
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The staged disk's path: named after the source (path, size, mtime) and
/// the format, so a retry finds the same file and can resume its upload.
pub fn staged_path(
    work_dir: &Path,
    image: &Path,
    meta: &std::fs::Metadata,
    format: DiskFormat,
) -> PathBuf {
    let mut h = Sha256::new();
    h.update(image.as_os_str().as_encoded_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(mtime_ns(meta).to_le_bytes());
    h.update(format.extension());
    let id = hex::encode(&h.finalize()[..12]);
    work_dir.join(format!("{id}.{}", format.extension()))
}

/// The disk in the upload format: the image itself when it already is raw
/// and raw is asked for, else a conversion kept in `work_dir` (reused when
/// present, so an interrupted upload can resume). Returns the path and
/// whether it is a staged copy.
pub async fn prepare(req: &AmiImport) -> Result<(PathBuf, bool), AwsError> {
    let meta = std::fs::metadata(&req.image).map_err(|source| AwsError::Io {
        what: "read",
        path: req.image.clone(),
        source,
    })?;
    // nothing below may read a backing file or an extent elsewhere (nor
    // open a FIFO)
    let info = img::info_untrusted(&req.image).await?;
    let source_format = img::detect_format(&req.image)?;
    if req.format == DiskFormat::Raw && source_format == Format::Raw {
        return Ok((req.image.clone(), false));
    }
    std::fs::create_dir_all(&req.work_dir).map_err(|source| AwsError::Io {
        what: "create the folder",
        path: req.work_dir.clone(),
        source,
    })?;
    let staged = staged_path(&req.work_dir, &req.image, &meta, req.format);
    if staged.exists() {
        return Ok((staged, true));
    }
    match req.format {
        DiskFormat::Vmdk => write_vmdk(&req.image, &req.work_dir, &staged).await?,
        DiskFormat::Raw => {
            img::convert(
                &req.image,
                Some(source_format.qemu_name()),
                &staged,
                &ConvertOptions::to(Format::Raw),
            )
            .await?
        }
        DiskFormat::Vhd => {
            let opts = crate::export::disk::convert_options(
                crate::export::format::ExportFormat::Vhd,
                info.virtual_size,
            )
            .ok_or_else(|| AwsError::Unexpected("no VHD conversion options".into()))?;
            img::convert(&req.image, Some(source_format.qemu_name()), &staged, &opts).await?
        }
    }
    Ok((staged, true))
}

/// kiln's native streamOptimized VMDK writer into a private folder of
/// `work_dir`, then flushed and renamed to `staged`; dropping the future
/// stops the writer's threads and removes the partial file.
async fn write_vmdk(image: &Path, work_dir: &Path, staged: &Path) -> Result<(), AwsError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| AwsError::Io { what, path, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-vmdk-")
        .tempdir_in(work_dir)
        .map_err(io("create a temporary folder in", work_dir))?;
    let out = tmp.path().join("disk.vmdk");
    let cancel = crate::util::cancel::Cancel::new();
    let _stop = cancel.on_drop();
    crate::export::vmdk::write_stream_optimized(image, &out, None, &cancel).await?;
    std::fs::File::open(&out)
        .and_then(|f| f.sync_all())
        .map_err(io("flush", &out))?;
    std::fs::rename(&out, staged).map_err(io("rename the VMDK to", staged))?;
    crate::util::atomic::sync_dir(work_dir)?;
    Ok(())
}

/// The default object key: `kiln/<name>/<disk file name>`.
pub fn default_key(name: &str, disk: &Path) -> String {
    let file = disk
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    format!("kiln/{name}/{file}")
}

/// Runs the whole import. Ctrl-C (dropping this future) after the task
/// started cancels it with CancelImportTask.
pub async fn import(
    home: &Clients,
    req: &AmiImport,
    on: &(dyn Fn(Event<'_>) + Sync),
) -> Result<AmiImported, AwsError> {
    names::validate_name(&req.distribution.name)?;
    req.distribution.sharing.validate()?;
    if !req.skip_preflight {
        on(Event::Step("pre-flight checks"));
        let findings = preflight::run(&req.image, &req.work_dir, req.import.boot_mode).await?;
        for f in &findings {
            on(Event::Finding(f));
        }
        let errors: Vec<Finding> = findings
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            // ImportSnapshot does not inspect the OS: the kernel list and
            // the GRUB requirement bind ImportImage only
            .filter(|f| !(req.via_snapshot && matches!(f.check, "kernel" | "bootloader")))
            .collect();
        if !errors.is_empty() {
            return Err(AwsError::Preflight(errors));
        }
    }
    on(Event::Step("preparing the disk"));
    let (disk, staged) = prepare(req).await?;
    let key = req
        .key
        .clone()
        .unwrap_or_else(|| default_key(&req.distribution.name, &disk));
    let target = format!("s3://{}/{key}", req.bucket);
    on(Event::Step(&format!(
        "uploading {} to {target}",
        disk.display()
    )));
    let state_file = req.work_dir.join(format!(
        "{}.upload.json",
        disk.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let uploaded: Uploaded = upload::upload(
        &home.s3,
        &UploadRequest {
            file: disk.clone(),
            bucket: req.bucket.clone(),
            key: key.clone(),
            concurrency: req.concurrency,
            part_size: req.part_size,
            state_file,
        },
        &|p| on(Event::Upload(p)),
    )
    .await?;

    let mut ir = req.import.clone();
    ir.bucket = req.bucket.clone();
    ir.key = key.clone();
    let ec2 = &home.ec2;
    let (task_id, image_id, named) = if req.via_snapshot {
        let task_id = import::start_import_snapshot(ec2, &ir).await?;
        on(Event::Step(&format!("ImportSnapshot task {task_id}")));
        let mut guard = CancelOnDrop::new(ec2, &task_id);
        let waited = poll::wait(
            req.poll,
            || import::describe_snapshot_task(ec2, &task_id),
            &|s| on(Event::Task(s)),
        )
        .await;
        guard.disarm();
        let snapshot = waited?;
        let ami =
            import::register_from_snapshot(ec2, &snapshot, &req.distribution.name, &ir).await?;
        on(Event::Step(&format!("registered {ami} from {snapshot}")));
        (task_id, ami, true)
    } else {
        let task_id = import::start_import_image(ec2, &ir).await?;
        on(Event::Step(&format!("ImportImage task {task_id}")));
        let mut guard = CancelOnDrop::new(ec2, &task_id);
        let waited = poll::wait(
            req.poll,
            || import::describe_image_task(ec2, &task_id),
            &|s| on(Event::Task(s)),
        )
        .await;
        guard.disarm();
        (task_id, waited?, false)
    };

    let images =
        distribute::distribute(home, &image_id, named, &req.distribution, req.poll, &|l| {
            on(Event::Step(l))
        })
        .await?;

    let upload_deleted = !req.keep_upload;
    if upload_deleted {
        home.s3
            .delete_object()
            .bucket(&req.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| AwsError::Api {
                what: format!("DeleteObject {target} (pass --keep-upload to keep it)"),
                message: sdk_message(&e),
            })?;
    }
    if staged {
        let _ = std::fs::remove_file(&disk);
    }
    Ok(AmiImported {
        import_task_id: task_id,
        upload: target,
        upload_deleted,
        upload_bytes: uploaded.size,
        reused_parts: uploaded.reused_parts,
        images,
    })
}
