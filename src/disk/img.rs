//! Disk images through `qemu-img`: information, consistency checks, overlays,
//! growing, conversion with an atomic publish, comparison, and format
//! detection by magic bytes. Parsing is kept apart from running the tool.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::util::task::{Task, TaskError, TaskOutput};

/// The `qemu-img` binary.
const QEMU_IMG: &str = "qemu-img";

/// Errors of the `qemu-img` wrappers.
#[derive(Debug, thiserror::Error)]
pub enum ImgError {
    /// `qemu-img` could not be started, failed, or did not finish in time
    /// (a hostile image, a FIFO named by it, a hung storage): the task's
    /// error names what kiln was doing, the command line, and the status
    /// and messages, or the package to install.
    #[error(transparent)]
    Tool(#[from] TaskError),
    /// `qemu-img` printed something this module does not understand.
    #[error("cannot parse the output of `{command}`: {source}")]
    Parse {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The request makes no sense for this image.
    #[error("{path}: {message}")]
    Invalid {
        /// The image.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An unknown format name.
    #[error("unknown disk image format `{0}` (known: raw, qcow2, vmdk, vhdx, vpc)")]
    UnknownFormat(String),
    /// An image kiln did not make would pull in other host files (a
    /// backing file, an external data file, VMDK extents in other files).
    #[error(
        "{}: refused: {reason} (kiln reads only self-contained images: no backing file, data file or extent in another file)",
        path.display()
    )]
    Refused {
        /// The image.
        path: PathBuf,
        /// What it refers to, and why that is refused.
        reason: String,
    },
}

impl ImgError {
    /// Whether the image is at fault (refused, unreadable as its format),
    /// not the host: the caller exits with code 2.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ImgError::Refused { .. } => true,
            ImgError::Tool(e) => e.is_limit(),
            _ => false,
        }
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImgError + 'a {
    move |source| ImgError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A disk image format, by the name `qemu-img` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A plain disk image.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware (sparse extents, streamOptimized, or a text descriptor).
    Vmdk,
    /// Hyper-V VHDX.
    Vhdx,
    /// Virtual PC / Hyper-V VHD (`vpc` to qemu-img), fixed or dynamic.
    Vpc,
}

impl Format {
    /// The name `qemu-img` uses (`-f`, `-O`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Vpc => "vpc",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

impl FromStr for Format {
    type Err = ImgError;

    fn from_str(s: &str) -> Result<Self, ImgError> {
        Ok(match s {
            "raw" => Format::Raw,
            "qcow2" => Format::Qcow2,
            "vmdk" => Format::Vmdk,
            "vhdx" => Format::Vhdx,
            "vpc" | "vhd" => Format::Vpc,
            other => return Err(ImgError::UnknownFormat(other.to_string())),
        })
    }
}

/// How many bytes [`detect_format_from`] wants from each end of the file.
pub const DETECT_BYTES: usize = 512;

/// The format of an image from its first and last [`DETECT_BYTES`] bytes
/// (fewer for a smaller file): qcow2 `QFI\xfb`, VMDK `KDMV` or a text
/// descriptor, VHDX `vhdxfile`, VHD `conectix` as the header copy of a
/// dynamic disk or as the footer of a fixed one; anything else is raw.
pub fn detect_format_from(head: &[u8], tail: &[u8]) -> Format {
    if head.starts_with(b"QFI\xfb") {
        Format::Qcow2
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        Format::Vmdk
    } else if head.starts_with(b"vhdxfile") {
        Format::Vhdx
    } else if head.starts_with(b"conectix") || tail.starts_with(b"conectix") {
        Format::Vpc
    } else {
        Format::Raw
    }
}

/// The first and last [`DETECT_BYTES`] of the file (no tail when it is
/// shorter than that).
fn read_ends(path: &Path) -> Result<(Vec<u8>, Vec<u8>), ImgError> {
    let mut f = std::fs::File::open(path).map_err(io_err("open", path))?;
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    let mut head = Vec::with_capacity(DETECT_BYTES);
    (&mut f)
        .take(DETECT_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_err("read", path))?;
    let mut tail = Vec::with_capacity(DETECT_BYTES);
    if len >= DETECT_BYTES as u64 {
        f.seek(SeekFrom::Start(len - DETECT_BYTES as u64))
            .map_err(io_err("seek in", path))?;
        (&mut f)
            .take(DETECT_BYTES as u64)
            .read_to_end(&mut tail)
            .map_err(io_err("read", path))?;
    }
    Ok((head, tail))
}

/// The format of the image at `path` by its magic bytes (see
/// [`detect_format_from`]).
pub fn detect_format(path: &Path) -> Result<Format, ImgError> {
    let (head, tail) = read_ends(path)?;
    Ok(detect_format_from(&head, &tail))
}

/// `path` as qemu's tools and QEMU must get it: absolute, so that no file
/// name is taken for a protocol (`nbd:…`, `json:{…}`, `file:…` are only
/// recognised before the first `/`).
pub fn tool_path(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What in an image's first [`DETECT_BYTES`] bytes (`head`, of an image
/// of `format`) says it reads other files, before any tool opens it: a
/// qcow2 backing file or external data file, a VMDK descriptor file (its
/// data is in other files) or a sparse VMDK header whose embedded
/// descriptor lists the extents (capacity 0).
pub fn header_problem(format: Format, head: &[u8]) -> Option<String> {
    let be32 = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    };
    let be64 = |at: usize| {
        head.get(at..at + 8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    };
    match format {
        Format::Qcow2 => {
            // qemu-img refuses other versions itself (with a better message)
            let version = be32(4)?;
            if !(2..=3).contains(&version) {
                return None;
            }
            if be64(8).is_some_and(|o| o != 0) {
                return Some("the qcow2 names a backing file: part of its data would come from another host file".into());
            }
            // version 3: incompatible feature bit 2 is an external data file
            if version == 3 && be64(72).is_some_and(|f| f & 4 != 0) {
                return Some(
                    "the qcow2 keeps its data in an external data file (another host file)".into(),
                );
            }
            None
        }
        Format::Vmdk if head.starts_with(b"# Disk DescriptorFile") => Some(
            "a VMDK descriptor file: its data is in the extent files it names (other host files)"
                .into(),
        ),
        Format::Vmdk if head.starts_with(b"KDMV") => {
            let capacity = head
                .get(12..20)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            (capacity == Some(0)).then(|| {
                "a sparse VMDK of capacity 0: its embedded descriptor lists the extents (other host files)"
                    .into()
            })
        }
        _ => None,
    }
}

/// What `info` (of an image qemu-img opened without its backing chain)
/// says the image reads besides its own file: a backing file, an external
/// data file, VMDK extents in other files. Empty for a self-contained image.
pub fn info_problems(info: &ImageInfo) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(b) = &info.backing_file {
        problems.push(format!("it has a backing file ({})", b.display()));
    }
    if let Some(d) = &info.data_file {
        problems.push(format!("it keeps its data in an external data file ({d})"));
    }
    let mut others: Vec<&str> = info
        .extents
        .iter()
        .map(String::as_str)
        .filter(|e| *e != info.filename)
        .collect();
    others.dedup();
    if !others.is_empty() {
        problems.push(format!(
            "its data is in other files (VMDK extents {})",
            others
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    problems
}

/// What `qemu-img info` says about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format name as qemu-img gives it (`qcow2`, `raw`, `vpc`, …).
    pub format: String,
    /// The size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// The bytes the file takes on the host (allocated blocks).
    pub actual_size: u64,
    /// The backing file, as resolved by qemu-img (absolute when it could).
    pub backing_file: Option<PathBuf>,
    /// The backing file's format, when recorded.
    pub backing_format: Option<String>,
    /// The VMDK create type (`streamOptimized`, `monolithicSparse`, …).
    pub vmdk_create_type: Option<String>,
    /// The file name qemu-img opened (as it was given).
    pub filename: String,
    /// A qcow2's external data file, when it has one.
    pub data_file: Option<String>,
    /// The files a VMDK's extents are in (the image itself for a sparse or
    /// streamOptimized VMDK).
    pub extents: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawInfo {
    format: String,
    #[serde(default)]
    filename: String,
    virtual_size: u64,
    #[serde(default)]
    actual_size: u64,
    backing_filename: Option<String>,
    full_backing_filename: Option<String>,
    backing_filename_format: Option<String>,
    format_specific: Option<FormatSpecific>,
}

#[derive(serde::Deserialize)]
struct FormatSpecific {
    data: Option<FormatData>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FormatData {
    create_type: Option<String>,
    data_file: Option<String>,
    #[serde(default)]
    extents: Vec<RawExtent>,
}

#[derive(serde::Deserialize)]
struct RawExtent {
    filename: String,
}

/// Parses the output of `qemu-img info --output=json` (one image, not a chain).
pub fn parse_info(json: &str) -> Result<ImageInfo, serde_json::Error> {
    let raw: RawInfo = serde_json::from_str(json)?;
    let data = raw.format_specific.and_then(|f| f.data);
    let (vmdk_create_type, data_file, extents) = match data {
        Some(d) => (
            d.create_type,
            d.data_file,
            d.extents.into_iter().map(|e| e.filename).collect(),
        ),
        None => (None, None, Vec::new()),
    };
    Ok(ImageInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing_file: raw
            .full_backing_filename
            .or(raw.backing_filename)
            .map(PathBuf::from),
        backing_format: raw.backing_filename_format,
        vmdk_create_type,
        filename: raw.filename,
        data_file,
        extents,
    })
}

/// What `qemu-img check` found in a qcow2 image.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckReport {
    /// Clusters allocated but not referenced (space wasted, data safe).
    #[serde(default)]
    pub leaks: u64,
    /// Corrupted metadata (data may be lost).
    #[serde(default)]
    pub corruptions: u64,
    /// Errors that stopped the check from looking everywhere.
    #[serde(default)]
    pub check_errors: u64,
}

impl CheckReport {
    /// No leaks, no corruption, and the check ran to its end.
    pub fn is_clean(&self) -> bool {
        self.leaks == 0 && self.corruptions == 0 && self.check_errors == 0
    }
}

/// Parses the output of `qemu-img check --output=json`.
pub fn parse_check(json: &str) -> Result<CheckReport, serde_json::Error> {
    serde_json::from_str(json)
}

/// Compression of a converted image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zlib (deflate) clusters: readable by every qcow2 reader.
    Zlib,
    /// zstd clusters: faster, needs QEMU 5.1 or later to read.
    Zstd,
}

/// How [`convert`] writes its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertOptions {
    /// The output format.
    pub format: Format,
    /// Compressed clusters (qcow2 only).
    pub compress: Option<Compression>,
    /// Format options for `-o`, e.g. `subformat=streamOptimized` for VMDK.
    pub options: Vec<String>,
    /// Create the output with this virtual size (at least the source's)
    /// and the `options`, then convert into it (`qemu-img convert -n`).
    pub target_size: Option<u64>,
}

impl ConvertOptions {
    /// Plain conversion to `format`.
    pub fn to(format: Format) -> Self {
        ConvertOptions {
            format,
            compress: None,
            options: Vec::new(),
            target_size: None,
        }
    }
}

/// The `qemu-img` command lines (without the binary) that convert `src`
/// into `out`: one `convert`, or a `create` of the sized target followed by
/// `convert -n` when [`ConvertOptions::target_size`] is set.
fn convert_commands(
    src: &Path,
    src_fmt: Option<&str>,
    opts: &ConvertOptions,
    out: &Path,
) -> Result<Vec<Vec<OsString>>, String> {
    // these write extra extent files named after the (temporary) output
    // name, so they cannot be published by a rename
    if let Some(multi) = opts
        .options
        .iter()
        .find(|o| o.starts_with("subformat=") && (o.contains("Flat") || o.contains("twoGb")))
    {
        return Err(format!(
            "`{multi}` writes several files; use a single-file subformat (streamOptimized, monolithicSparse)"
        ));
    }
    let mut options = opts.options.clone();
    let mut compress = false;
    if let Some(c) = opts.compress {
        if opts.format != Format::Qcow2 {
            return Err(format!(
                "compression is only for qcow2 output, not {}",
                opts.format
            ));
        }
        compress = true;
        if c == Compression::Zstd {
            options.push("compression_type=zstd".into());
        }
    }
    let mut commands = Vec::new();
    let mut convert: Vec<OsString> = vec!["convert".into()];
    if let Some(f) = src_fmt {
        convert.extend(["-f".into(), f.into()]);
    }
    convert.extend(["-O".into(), opts.format.qemu_name().into()]);
    if compress {
        convert.push("-c".into());
    }
    let mut format_options = Vec::new();
    if !options.is_empty() {
        format_options.extend(["-o".into(), options.join(",").into()]);
    }
    match opts.target_size {
        Some(size) => {
            let mut create: Vec<OsString> = vec![
                "create".into(),
                "-q".into(),
                "-f".into(),
                opts.format.qemu_name().into(),
            ];
            create.extend(format_options);
            create.extend([out.into(), size.to_string().into()]);
            commands.push(create);
            convert.push("-n".into());
        }
        None => convert.extend(format_options),
    }
    convert.extend([src.into(), out.into()]);
    commands.push(convert);
    Ok(commands)
}

/// How long `qemu-img info` may take: it reads headers and tables only.
pub const INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `qemu-img ARGS` for `what` (a task description); exit codes in
/// `ok_codes` count as success (besides 0). It dies with kiln, and with
/// `timeout` it is stopped (with its process group) after that long.
async fn run(
    what: &str,
    args: &[OsString],
    ok_codes: &[i32],
    timeout: Option<std::time::Duration>,
) -> Result<TaskOutput, ImgError> {
    let mut task = Task::new(what, QEMU_IMG).args(args).ok_codes(ok_codes);
    if let Some(t) = timeout {
        task = task.timeout(t);
    }
    Ok(task.output().await?)
}

fn parse_output<T>(
    args: &[OsString],
    out: &TaskOutput,
    parse: impl FnOnce(&str) -> Result<T, serde_json::Error>,
) -> Result<T, ImgError> {
    parse(&out.stdout_text()).map_err(|source| ImgError::Parse {
        command: Task::new("", QEMU_IMG).args(args).command_line(),
        source,
    })
}

/// `qemu-img info`, also on an image a running VM has open (`--force-share`).
/// The format is the one [`detect_format`] finds, not qemu-img's guess
/// (which takes a fixed VHD for raw).
pub async fn info(path: &Path) -> Result<ImageInfo, ImgError> {
    info_as(path, detect_format(path)?).await
}

/// `qemu-img info` of `path` read as `format`, within [`INFO_TIMEOUT`].
/// qemu-img opens the image without its backing chain.
async fn info_as(path: &Path, format: Format) -> Result<ImageInfo, ImgError> {
    let args: Vec<OsString> = vec![
        "info".into(),
        "--output=json".into(),
        "--force-share".into(),
        "-f".into(),
        format.qemu_name().into(),
        tool_path(path).into(),
    ];
    let out = run(
        "reading an image's header with qemu-img",
        &args,
        &[],
        Some(INFO_TIMEOUT),
    )
    .await?;
    parse_output(&args, &out, parse_info)
}

/// `qemu-img info` of an image kiln did not make (a parent, an export or
/// import source, a file to verify): refused with [`ImgError::Refused`]
/// when it would read other host files (see [`header_problem`], checked
/// before qemu-img opens it, and [`info_problems`]). Only an image that
/// passes may be handed to `check`, `map`, `convert`, qemu-nbd or QEMU,
/// which open backing files and extents.
pub async fn info_untrusted(path: &Path) -> Result<ImageInfo, ImgError> {
    let refused = |reason: String| ImgError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    // a FIFO or a device would block or never end
    if !std::fs::metadata(path)
        .map_err(io_err("stat", path))?
        .is_file()
    {
        return Err(refused("not a regular file".into()));
    }
    let (head, tail) = read_ends(path)?;
    let format = detect_format_from(&head, &tail);
    if let Some(p) = header_problem(format, &head) {
        return Err(refused(p));
    }
    let info = info_as(path, format).await?;
    let problems = info_problems(&info);
    if !problems.is_empty() {
        return Err(refused(problems.join("; ")));
    }
    Ok(info)
}

/// Whether `qemu-img check` can check images of this format (raw and VHD
/// have no metadata it checks).
pub fn checkable(format: Format) -> bool {
    matches!(format, Format::Qcow2 | Format::Vmdk | Format::Vhdx)
}

/// `qemu-img check` of a qcow2, VMDK or VHDX image: leaks and corruptions
/// are reported, not errors; another format is an error (see [`checkable`]).
pub async fn check(path: &Path) -> Result<CheckReport, ImgError> {
    let format = detect_format(path)?;
    if !checkable(format) {
        return Err(ImgError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "only qcow2, vmdk and vhdx images can be checked, this one is {format}"
            ),
        });
    }
    let args: Vec<OsString> = vec![
        "check".into(),
        "--output=json".into(),
        "-f".into(),
        format.qemu_name().into(),
        tool_path(path).into(),
    ];
    // 2: corruptions found, 3: leaks found; both still print the report
    let out = run("checking an image with qemu-img", &args, &[2, 3], None).await?;
    parse_output(&args, &out, parse_check)
}

/// Creates a qcow2 overlay on `backing` (recorded by its absolute path and
/// format), as large as the backing image or `size` bytes.
pub async fn create_overlay(
    backing: &Path,
    backing_format: &str,
    overlay: &Path,
    size: Option<u64>,
) -> Result<(), ImgError> {
    let backing = std::fs::canonicalize(backing).map_err(io_err("resolve", backing))?;
    let mut args: Vec<OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-b".into(),
        backing.into(),
        "-F".into(),
        backing_format.into(),
        tool_path(overlay).into(),
    ];
    if let Some(size) = size {
        args.push(size.to_string().into());
    }
    run("creating an overlay with qemu-img", &args, &[], None)
        .await
        .map(|_| ())
}

/// Grows the virtual disk to `bytes`; asking for less than it has is an
/// error (shrinking loses data), asking for the same size does nothing.
pub async fn resize(path: &Path, bytes: u64) -> Result<(), ImgError> {
    let current = info(path).await?;
    if bytes < current.virtual_size {
        return Err(ImgError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "will not shrink the disk from {} to {bytes} bytes",
                current.virtual_size
            ),
        });
    }
    if bytes == current.virtual_size {
        return Ok(());
    }
    let args: Vec<OsString> = vec![
        "resize".into(),
        "-q".into(),
        "-f".into(),
        current.format.into(),
        tool_path(path).into(),
        bytes.to_string().into(),
    ];
    run("growing an image with qemu-img", &args, &[], None)
        .await
        .map(|_| ())
}

/// Converts `src` into `dst`: written under a temporary name in `dst`'s
/// folder, flushed to disk, then renamed, so `dst` is either absent or whole.
pub async fn convert(
    src: &Path,
    src_fmt: Option<&str>,
    dst: &Path,
    opts: &ConvertOptions,
) -> Result<(), ImgError> {
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dst.file_name().ok_or_else(|| ImgError::Invalid {
        path: dst.to_path_buf(),
        message: "the destination has no file name".into(),
    })?;
    // qemu-img creates the file itself (with the usual permissions); the
    // guard removes it if anything below fails or the future is dropped
    let tmp_path = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let tmp = tempfile::TempPath::try_from_path(&tmp_path).map_err(io_err("resolve", &tmp_path))?;
    // never let qemu-img guess the format: the one kiln detected is used
    // everywhere else
    let detected;
    let src_fmt = match src_fmt {
        Some(f) => f,
        None => {
            detected = detect_format(src)?;
            detected.qemu_name()
        }
    };
    let commands = convert_commands(&tool_path(src), Some(src_fmt), opts, &tool_path(&tmp))
        .map_err(|message| ImgError::Invalid {
            path: dst.to_path_buf(),
            message,
        })?;
    for args in &commands {
        run("converting an image with qemu-img", args, &[], None).await?;
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err("flush", &tmp))?;
    tmp.persist(dst).map_err(|e| ImgError::Io {
        what: "rename the converted image to",
        path: dst.to_path_buf(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("flush", dir))
}

/// Whether the two images hold the same guest-visible content (formats, by
/// [`detect_format`], and allocation may differ). A larger image compares
/// equal only when its extra part is all zeros.
pub async fn compare(a: &Path, b: &Path) -> Result<bool, ImgError> {
    let args: Vec<OsString> = vec![
        "compare".into(),
        "-q".into(),
        "--force-share".into(),
        "-f".into(),
        detect_format(a)?.qemu_name().into(),
        "-F".into(),
        detect_format(b)?.qemu_name().into(),
        tool_path(a).into(),
        tool_path(b).into(),
    ];
    // exit 0: identical, 1: different, anything else: an error
    let out = run("comparing images with qemu-img", &args, &[1], None).await?;
    Ok(out.status.code() == Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(prefix: &[u8]) -> Vec<u8> {
        let mut s = prefix.to_vec();
        s.resize(DETECT_BYTES, 0);
        s
    }

    #[test]
    fn magic_bytes() {
        let zero = sector(b"");
        let cases: [(&[u8], Format); 6] = [
            (b"QFI\xfb\0\0\0\x03", Format::Qcow2),
            (b"KDMV\x01\0\0\0", Format::Vmdk),
            (b"# Disk DescriptorFile\nversion=1\n", Format::Vmdk),
            (b"vhdxfile", Format::Vhdx),
            (b"conectix\0\0\0\x02", Format::Vpc),
            (b"\xeb\x63\x90GRUB", Format::Raw),
        ];
        for (magic, want) in cases {
            assert_eq!(detect_format_from(&sector(magic), &zero), want, "{magic:?}");
        }
        // a fixed VHD: a raw payload with the footer in the last sector
        assert_eq!(detect_format_from(&zero, &sector(b"conectix")), Format::Vpc);
        // magic bytes count only at the start
        assert_eq!(
            detect_format_from(&sector(b"xQFI\xfb"), &sector(b"xconectix")),
            Format::Raw
        );
        assert_eq!(detect_format_from(b"", b""), Format::Raw);
        assert_eq!(detect_format_from(b"QF", b""), Format::Raw);
    }

    #[test]
    fn format_names_round_trip() {
        for f in [
            Format::Raw,
            Format::Qcow2,
            Format::Vmdk,
            Format::Vhdx,
            Format::Vpc,
        ] {
            assert_eq!(f.qemu_name().parse::<Format>().unwrap(), f);
        }
        assert_eq!("vhd".parse::<Format>().unwrap(), Format::Vpc);
        assert!(matches!(
            "vdi".parse::<Format>(),
            Err(ImgError::UnknownFormat(n)) if n == "vdi"
        ));
    }

    #[test]
    fn info_json() {
        let overlay = r#"{
            "virtual-size": 3221225472, "filename": "/t/o.qcow2", "cluster-size": 65536,
            "format": "qcow2", "actual-size": 200704, "dirty-flag": false,
            "backing-filename": "base.qcow2", "full-backing-filename": "/t/base.qcow2",
            "backing-filename-format": "qcow2"
        }"#;
        assert_eq!(
            parse_info(overlay).unwrap(),
            ImageInfo {
                format: "qcow2".into(),
                virtual_size: 3 << 30,
                actual_size: 200704,
                backing_file: Some("/t/base.qcow2".into()),
                backing_format: Some("qcow2".into()),
                vmdk_create_type: None,
                filename: "/t/o.qcow2".into(),
                data_file: None,
                extents: Vec::new(),
            }
        );
        assert_eq!(
            info_problems(&parse_info(overlay).unwrap()),
            ["it has a backing file (/t/base.qcow2)"]
        );
        let raw = r#"{"virtual-size": 1048576, "filename": "d.img", "format": "raw", "actual-size": 4096}"#;
        let info = parse_info(raw).unwrap();
        assert_eq!((info.format.as_str(), info.virtual_size), ("raw", 1 << 20));
        assert_eq!(info.backing_file, None);
        assert!(parse_info(r#"{"format": "raw"}"#).is_err());
    }

    #[test]
    fn other_files_in_info() {
        let sparse = r#"{"virtual-size": 1048576, "filename": "/t/s.vmdk", "format": "vmdk",
            "format-specific": {"type": "vmdk", "data": {"create-type": "monolithicSparse",
            "extents": [{"virtual-size": 1048576, "filename": "/t/s.vmdk", "format": ""}]}}}"#;
        let info = parse_info(sparse).unwrap();
        assert_eq!(info.extents, ["/t/s.vmdk"]);
        assert!(info_problems(&info).is_empty());
        let flat = sparse.replace(
            r#"[{"virtual-size""#,
            r#"[{"filename": "secret", "format": "FLAT"}, {"virtual-size""#,
        );
        let p = info_problems(&parse_info(&flat).unwrap());
        assert_eq!(p, ["its data is in other files (VMDK extents `secret`)"]);
        let data_file = r#"{"virtual-size": 1048576, "filename": "d.qcow2", "format": "qcow2",
            "format-specific": {"type": "qcow2", "data": {"data-file": "/etc/shadow"}}}"#;
        let p = info_problems(&parse_info(data_file).unwrap());
        assert_eq!(
            p,
            ["it keeps its data in an external data file (/etc/shadow)"]
        );
    }

    #[test]
    fn other_files_in_headers() {
        let mut q = sector(b"QFI\xfb\0\0\0\x03");
        assert_eq!(header_problem(Format::Qcow2, &q), None);
        q[72 + 7] = 4; // incompatible feature: external data file
        assert!(header_problem(Format::Qcow2, &q)
            .unwrap()
            .contains("external data file"));
        q[79] = 0;
        q[15] = 0x80; // backing_file_offset
        assert!(header_problem(Format::Qcow2, &q)
            .unwrap()
            .contains("backing file"));
        // a version-2 header has no feature bits
        let mut v2 = sector(b"QFI\xfb\0\0\0\x02");
        v2[79] = 4;
        assert_eq!(header_problem(Format::Qcow2, &v2), None);
        let desc = b"# Disk DescriptorFile\nRW 8 FLAT \"x\" 0\n";
        assert!(header_problem(Format::Vmdk, desc)
            .unwrap()
            .contains("descriptor"));
        let mut kdmv = sector(b"KDMV\x01\0\0\0");
        assert!(header_problem(Format::Vmdk, &kdmv)
            .unwrap()
            .contains("capacity 0"));
        kdmv[13] = 8;
        assert_eq!(header_problem(Format::Vmdk, &kdmv), None);
        // short or other formats: qemu-img decides
        assert_eq!(header_problem(Format::Qcow2, b"QFI\xfb"), None);
        assert_eq!(header_problem(Format::Raw, desc), None);
    }

    #[tokio::test]
    async fn untrusted_images_must_be_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("image.fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // opening it would block until a writer came
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), info_untrusted(&fifo))
            .await
            .expect("no open of the FIFO")
            .unwrap_err();
        assert!(
            matches!(&e, ImgError::Refused { reason, .. } if reason == "not a regular file"),
            "{e}"
        );
        assert!(e.is_invalid_input());
    }

    #[test]
    fn paths_for_tools_are_absolute() {
        let p = tool_path(Path::new("nbd:127.0.0.1:1"));
        assert!(p.is_absolute(), "{}", p.display());
        assert!(p.ends_with("nbd:127.0.0.1:1"));
        assert_eq!(tool_path(Path::new("/a/b")), Path::new("/a/b"));
    }

    #[test]
    fn check_json() {
        let clean = r#"{"image-end-offset": 262144, "total-clusters": 16, "check-errors": 0,
            "filename": "a.qcow2", "format": "qcow2"}"#;
        assert!(parse_check(clean).unwrap().is_clean());
        let leaky = r#"{"leaks": 3, "check-errors": 0, "format": "qcow2"}"#;
        let r = parse_check(leaky).unwrap();
        assert_eq!((r.leaks, r.corruptions, r.is_clean()), (3, 0, false));
    }

    #[test]
    fn convert_arguments() {
        let s = |v: Vec<Vec<OsString>>| {
            v.iter()
                .map(|c| {
                    c.iter()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        let out = Path::new("o");
        let mut o = ConvertOptions::to(Format::Qcow2);
        o.compress = Some(Compression::Zstd);
        assert_eq!(
            s(convert_commands(Path::new("a.raw"), Some("raw"), &o, out).unwrap()),
            ["convert -f raw -O qcow2 -c -o compression_type=zstd a.raw o"]
        );
        o.compress = Some(Compression::Zlib);
        assert_eq!(
            s(convert_commands(Path::new("a"), None, &o, out).unwrap()),
            ["convert -O qcow2 -c a o"]
        );
        let mut v = ConvertOptions::to(Format::Vmdk);
        v.options = vec![
            "subformat=streamOptimized".into(),
            "adapter_type=lsilogic".into(),
        ];
        assert_eq!(
            s(convert_commands(Path::new("a"), None, &v, out).unwrap()),
            ["convert -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic a o"]
        );
        v.compress = Some(Compression::Zlib);
        assert!(convert_commands(Path::new("a"), None, &v, out)
            .unwrap_err()
            .contains("only for qcow2"));
        for multi in [
            "monolithicFlat",
            "twoGbMaxExtentSparse",
            "twoGbMaxExtentFlat",
        ] {
            let mut m = ConvertOptions::to(Format::Vmdk);
            m.options = vec![format!("subformat={multi}")];
            assert!(convert_commands(Path::new("a"), None, &m, out)
                .unwrap_err()
                .contains("several files"));
        }
        let mut vhd = ConvertOptions::to(Format::Vpc);
        vhd.options = vec!["subformat=fixed".into(), "force_size=on".into()];
        vhd.target_size = Some(1 << 20);
        assert_eq!(
            s(convert_commands(Path::new("a"), Some("qcow2"), &vhd, out).unwrap()),
            [
                "create -q -f vpc -o subformat=fixed,force_size=on o 1048576",
                "convert -f qcow2 -O vpc -n a o"
            ]
        );
    }
}
