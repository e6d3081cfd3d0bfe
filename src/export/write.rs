//! One export: check the source, write the format into a private folder,
//! check what was written. Publishing the folder's files is the caller's
//! (the build publishes its whole version folder at once; `kiln export`
//! renames each file into place).

use std::path::{Path, PathBuf};

use super::format::ExportFormat;
use super::ovf::VmSettings;
use super::verify::{self, Report, VerifyError};
use super::{disk, gce, ova, vmdk};
use crate::disk::img::{self, ImgError};
use crate::util::cancel::{Cancel, Cancelled};
use crate::util::io::{IoError, ProgressFn};

/// What to export, and where.
#[derive(Clone, Debug)]
pub struct ExportJob<'a> {
    /// The disk image to export (any format qemu-img reads).
    pub source: &'a Path,
    /// The output format.
    pub format: ExportFormat,
    /// A folder only this export writes to.
    pub dir: &'a Path,
    /// The main output's path relative to `dir` (for OVF, the `.ovf`;
    /// its disk and `.mf` go beside it).
    pub file_name: &'a str,
    /// Compression threads for kiln's own writers (`None`: every core).
    pub threads: Option<usize>,
    /// The virtual machine an `ovf`/`ova` package describes (unused by
    /// the other formats).
    pub machine: VmSettings,
    /// The source's format as the user declared it (`None`: by its first
    /// bytes); a declared raw source may look like text.
    pub source_format: Option<img::Format>,
}

/// What an export wrote, relative to its folder, in the order to publish
/// them (the main file last).
#[derive(Clone, Debug)]
pub struct Exported {
    /// The written files.
    pub files: Vec<PathBuf>,
    /// The check of the main file, done right after writing it.
    pub report: Report,
}

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The source is not a readable, consistent disk image.
    #[error("{}: not a usable disk image:\n  {}", path.display(), problems.join("\n  "))]
    Source {
        /// The source.
        path: PathBuf,
        /// What is wrong with it.
        problems: Vec<String>,
    },
    /// The source or the output could not be checked.
    #[error("checking {what}")]
    Verify {
        /// The source or the written file.
        what: String,
        /// The cause.
        #[source]
        source: VerifyError,
    },
    /// The written file failed its check (a bug, or a failing disk).
    #[error("the written {format} file {} failed its check:\n  {}", path.display(), problems.join("\n  "))]
    Output {
        /// The format.
        format: ExportFormat,
        /// The written file.
        path: PathBuf,
        /// What is wrong with it.
        problems: Vec<String>,
    },
    /// qemu-img failed.
    #[error("writing {format}")]
    Convert {
        /// The format.
        format: ExportFormat,
        /// The cause.
        #[source]
        source: ImgError,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// kiln's streamOptimized VMDK writer failed.
    #[error("writing the streamOptimized VMDK")]
    Vmdk(#[from] super::vmdk::VmdkError),
    /// Machine settings the OVF profile cannot express.
    #[error("OVF settings: {0}")]
    Settings(String),
    /// kiln's GCE tarball writer failed.
    #[error("writing the GCE tarball")]
    Gce(#[source] super::gce::GceError),
    /// Ctrl-C, SIGTERM or a dropped build stopped the export.
    #[error("the export was cancelled")]
    Cancelled(#[from] Cancelled),
}

impl ExportError {
    /// Whether the error is the input's fault (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, ExportError::Source { .. } | ExportError::Settings(_))
    }
}

/// The files [`export`] writes for `job`, relative to its folder, in the
/// order they are published (the main file last).
pub fn planned_files(job: &ExportJob<'_>) -> Vec<PathBuf> {
    ova::planned_files(job.format, Path::new(job.file_name))
}

/// Checks that `source` is a disk image qemu-img reads without errors
/// (`qemu-img check` where the format has metadata: a truncated qcow2 reads
/// as zeros otherwise) and returns its check.
pub async fn check_source(
    source: &Path,
    declared: Option<img::Format>,
) -> Result<Report, ExportError> {
    if !source.is_file() {
        return Err(ExportError::Source {
            path: source.to_path_buf(),
            problems: vec![match std::fs::metadata(source) {
                Ok(_) => "not a regular file".to_string(),
                Err(e) => e.to_string(),
            }],
        });
    }
    let kind = verify::classify(&verify::read_head(source)?);
    if kind != verify::FileKind::Disk {
        return Err(ExportError::Source {
            path: source.to_path_buf(),
            problems: vec![format!(
                "this is {} file, not a disk image; give the disk image itself",
                match kind {
                    verify::FileKind::Ova => "an OVA (tar)",
                    verify::FileKind::Gce => "a gzip",
                    _ => "an OVF descriptor (XML)",
                }
            )],
        });
    }
    let report = match verify::disk_as(source, declared).await {
        Ok(r) => r,
        // an image that reads other host files is the input's fault
        Err(VerifyError::Img(e)) if e.is_invalid_input() => {
            return Err(ExportError::Source {
                path: source.to_path_buf(),
                problems: vec![match e {
                    ImgError::Refused { reason, .. } => {
                        format!("refused: {reason} (kiln reads only self-contained images)")
                    }
                    other => other.to_string(),
                }],
            })
        }
        Err(e) => {
            return Err(ExportError::Verify {
                what: format!("the source {}", source.display()),
                source: e,
            })
        }
    };
    if !report.is_ok() {
        return Err(ExportError::Source {
            path: source.to_path_buf(),
            problems: report.problems,
        });
    }
    if report.virtual_size == Some(0) {
        return Err(ExportError::Source {
            path: source.to_path_buf(),
            problems: vec!["the disk is empty (0 bytes)".into()],
        });
    }
    Ok(report)
}

/// Writes `job.format` into `job.dir` and checks the result; on error the
/// files written so far stay in `job.dir` for the caller to remove with it.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: ProgressFn<'_>,
) -> Result<Exported, ExportError> {
    let source = check_source(job.source, job.source_format).await?;
    let virtual_size = source.virtual_size.unwrap_or(0);
    cancel.check()?;
    let main = job.dir.join(job.file_name);
    if let Some(parent) = main.parent() {
        std::fs::create_dir_all(parent).map_err(IoError::at("create", parent))?;
    }
    progress(&format!("writing {} ({})", job.file_name, job.format));
    let files = match disk::convert_options(job.format, virtual_size) {
        Some(opts) => {
            img::convert(job.source, None, &main, &opts)
                .await
                .map_err(|source| ExportError::Convert {
                    format: job.format,
                    source,
                })?;
            vec![PathBuf::from(job.file_name)]
        }
        None => match job.format {
            ExportFormat::Vmdk => vmdk::export(job, cancel, progress).await?,
            ExportFormat::Gce => gce::export(job, cancel, progress).await?,
            _ => ova::export(job, cancel, progress).await?,
        },
    };
    cancel.check()?;
    let report = check_output(job.format, &main, virtual_size).await?;
    Ok(Exported { files, report })
}

/// Checks a written file (for a package: the descriptor, the manifest, the
/// tar layout and the disk inside) and that it holds a disk of the
/// source's size (at least: a VHD is rounded up to whole MiB, a GCE disk
/// to whole GiB).
pub async fn check_output(
    format: ExportFormat,
    path: &Path,
    virtual_size: u64,
) -> Result<Report, ExportError> {
    let checked = match format {
        ExportFormat::Ovf => verify::package::ovf(path).await,
        ExportFormat::Ova => verify::package::ova(path).await,
        ExportFormat::Gce => verify::package::gce(path).await,
        // kiln wrote it in this format: a raw copy of a text-like source
        // declared raw is still raw
        _ => verify::disk_as(path, disk::image_format(format)).await,
    };
    let mut report = checked.map_err(|e| ExportError::Verify {
        what: format!("the written {}", path.display()),
        source: e,
    })?;
    match report.virtual_size {
        Some(size) if size < virtual_size => report.problem(format!(
            "its virtual size {size} is smaller than the source's {virtual_size}"
        )),
        Some(_) => {}
        None => report.problem("no disk found in it"),
    }
    if let Some(want) = disk::image_format(format) {
        let found = img::detect_format(path).map_err(|e| ExportError::Verify {
            what: format!("the written {}", path.display()),
            source: e.into(),
        })?;
        if found != want {
            report.problem(format!("it reads as {found}, not {want}"));
        }
    }
    if report.is_ok() {
        Ok(report)
    } else {
        Err(ExportError::Output {
            format,
            path: path.to_path_buf(),
            problems: report.problems,
        })
    }
}
