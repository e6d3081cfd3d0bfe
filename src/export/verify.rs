//! Checks of written files, right after an export and on demand
//! (`kiln verify`): what the file is, what was checked, and every problem
//! found. A file that cannot be read at all is an error; a file that can be
//! read but is wrong is a report with problems.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::vhd;

/// Checks of OVF packages, OVAs and GCE tarballs.
pub mod package;
/// A strict, bounded tar reader for the package checks.
pub mod tarball;
use crate::disk::img::{self, Format, ImgError};
use crate::util::io::IoError;
use crate::util::task::TaskError;

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The checked file.
    pub path: PathBuf,
    /// What it is, e.g. `vmdk (streamOptimized)`, `ova`.
    pub kind: String,
    /// The virtual disk size in bytes, when the file is (or holds) a disk.
    pub virtual_size: Option<u64>,
    /// What was checked and passed, one line each.
    pub checked: Vec<String>,
    /// What is wrong, one line each; empty when the file is good.
    pub problems: Vec<String>,
}

impl Report {
    /// An empty report on `path`, a file of `kind`.
    pub fn new(path: &Path, kind: impl Into<String>) -> Self {
        Report {
            path: path.to_path_buf(),
            kind: kind.into(),
            ..Report::default()
        }
    }

    /// No problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Records a check that passed.
    pub fn passed(&mut self, what: impl Into<String>) {
        self.checked.push(what.into());
    }

    /// Takes in a sub-check (a disk inside a package): its lines, each
    /// prefixed with `label: `.
    pub fn merge(&mut self, label: &str, sub: Report) {
        self.checked
            .extend(sub.checked.into_iter().map(|c| format!("{label}: {c}")));
        self.problems
            .extend(sub.problems.into_iter().map(|c| format!("{label}: {c}")));
    }

    /// Records a problem.
    pub fn problem(&mut self, what: impl Into<String>) {
        self.problems.push(what.into());
    }

    /// Records `what` as passed when `problems` is empty, else each problem.
    pub fn outcome(&mut self, what: impl Into<String>, problems: Vec<String>) {
        if problems.is_empty() {
            self.passed(what);
        } else {
            self.problems.extend(problems);
        }
    }
}

/// A file that could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// `qemu-img` could not run.
    #[error(transparent)]
    Img(#[from] ImgError),
}

/// What a file is, by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A disk image (qcow2, raw, vmdk, vhdx, vhd).
    Disk,
    /// An OVF descriptor (XML).
    Ovf,
    /// A tar file: an OVA.
    Ova,
    /// A gzip file: a GCE image tarball.
    Gce,
}

/// Classifies a file by its first 512 bytes: ustar magic at byte 257 is an
/// OVA, gzip's `1f 8b` a GCE tarball, XML (after an optional BOM) an OVF
/// descriptor, anything else a disk image.
pub fn classify(head: &[u8]) -> FileKind {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text_start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &text[i..]);
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        FileKind::Ova
    } else if head.starts_with(&[0x1f, 0x8b]) {
        FileKind::Gce
    } else if text_start.is_some_and(|t| {
        t.starts_with(b"<?xml") || t.starts_with(b"<Envelope") || t.starts_with(b"<ovf:Envelope")
    }) {
        FileKind::Ovf
    } else {
        FileKind::Disk
    }
}

/// The first 512 bytes of a file (fewer if it is shorter), for [`classify`].
pub fn read_head(path: &Path) -> Result<Vec<u8>, IoError> {
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(IoError::at("read", path))?;
    Ok(head)
}

/// Checks any file `kiln export` writes, by what it is (see [`classify`]).
pub async fn verify_path(path: &Path) -> Result<Report, VerifyError> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    match classify(&read_head(path)?) {
        FileKind::Disk
            if [".ova", ".ovf", ".tar.gz", ".tgz"]
                .iter()
                .any(|e| name.ends_with(e)) =>
        {
            let mut r = Report::new(path, "unknown");
            r.problem(
                "named like an OVA, OVF or GCE tarball but it is none (no tar header, no XML, no gzip): truncated or not what its name says",
            );
            Ok(r)
        }
        FileKind::Disk => disk(path).await,
        FileKind::Ovf => package::ovf(path).await,
        FileKind::Ova => package::ova(path).await,
        FileKind::Gce => package::gce(path).await,
    }
}

/// Whether a file's first bytes look like text rather than a disk: no NUL
/// byte, UTF-8 (a character cut at the end aside), no control character
/// but tab, newline, carriage return and form feed. A disk's first sector
/// (boot code, a partition table, a file system) is binary.
pub fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

/// What makes a raw file of `len` bytes starting with `head` no disk: empty,
/// not a whole number of 512-byte sectors, or text (unless `declared_raw`:
/// the user said it is a raw disk).
pub fn raw_problems(len: u64, head: &[u8], declared_raw: bool) -> Vec<String> {
    let mut p = Vec::new();
    if len == 0 {
        p.push("empty: a file of 0 bytes is no disk".to_string());
        return p;
    }
    if !len.is_multiple_of(512) {
        p.push(format!(
            "{len} bytes is not a whole number of 512-byte sectors: truncated, or not a disk"
        ));
    }
    if !declared_raw && looks_like_text(head) {
        p.push(format!(
            "it looks like text (its first {} bytes are printable characters), not a disk image; `kiln export --source-format raw` takes it as a raw disk all the same",
            head.len()
        ));
    }
    p
}

/// Checks a disk image: `qemu-img info` reads it (the format by its magic
/// bytes), it is self-contained (no backing file, external data file or
/// VMDK extent in another file: refused with [`ImgError::Refused`] before
/// anything reads them), `qemu-img check` finds no corruption or leak
/// (qcow2, VMDK, VHDX), and a VHD has a valid fixed-disk footer of a whole
/// number of MiB (what Azure requires).
pub async fn disk(path: &Path) -> Result<Report, VerifyError> {
    disk_as(path, None).await
}

/// [`disk`] of an image the user declared to be of `declared` format: it
/// must be of that format; a declared raw disk may look like text (see
/// [`raw_problems`]).
pub async fn disk_as(path: &Path, declared: Option<Format>) -> Result<Report, VerifyError> {
    let format = img::detect_format(path)?;
    let mut report = Report::new(path, format.to_string());
    if let Some(d) = declared.filter(|d| *d != format) {
        report.problem(format!(
            "it is a {format} image, not {d} as declared (kiln reads an image as the format its first bytes say)"
        ));
        return Ok(report);
    }
    let info = match img::info_untrusted(path).await {
        Ok(info) => info,
        Err(ImgError::Tool(TaskError::Failed { stderr, .. })) => {
            report.problem(format!("qemu-img cannot read it as {format}: {stderr}"));
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    report.virtual_size = Some(info.virtual_size);
    if let Some(t) = &info.vmdk_create_type {
        report.kind = format!("vmdk ({t})");
    }
    report.passed(format!(
        "qemu-img reads it: {format}, virtual size {} bytes",
        info.virtual_size
    ));
    report.passed("self-contained: no backing file, data file or extent in another file");
    if format == Format::Raw {
        let len = std::fs::metadata(path)
            .map_err(IoError::at("stat", path))?
            .len();
        report.outcome(
            "raw: a whole number of 512-byte sectors, not text",
            raw_problems(len, &read_head(path)?, declared == Some(Format::Raw)),
        );
    }
    if img::checkable(format) {
        match img::check(path).await {
            Ok(c) if c.is_clean() => report.passed("qemu-img check: no errors"),
            Ok(c) => report.problem(format!(
                "qemu-img check: {} corruptions, {} leaked clusters, {} check errors",
                c.corruptions, c.leaks, c.check_errors
            )),
            Err(ImgError::Tool(TaskError::Failed { stderr, .. })) => {
                report.problem(format!("qemu-img check failed: {stderr}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if format == Format::Vpc {
        vhd_footer(path, &mut report)?;
    }
    Ok(report)
}

/// Checks a VHD's footer for Azure's rules.
fn vhd_footer(path: &Path, report: &mut Report) -> Result<(), VerifyError> {
    let mut f = std::fs::File::open(path).map_err(IoError::at("open", path))?;
    let len = f.metadata().map_err(IoError::at("stat", path))?.len();
    let mut footer = [0u8; vhd::FOOTER_BYTES];
    if len < footer.len() as u64 {
        report.problem("shorter than a VHD footer");
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - footer.len() as u64))
        .and_then(|_| f.read_exact(&mut footer))
        .map_err(IoError::at("read the footer of", path))?;
    match vhd::parse_footer(&footer) {
        Ok(parsed) if parsed.disk_type == vhd::DiskType::Fixed => {
            report.kind = "vhd (fixed)".into();
            report.outcome(
                format!(
                    "VHD footer: fixed, {} bytes (a whole number of MiB, as Azure requires), checksum valid",
                    parsed.current_size
                ),
                vhd::azure_problems(&parsed, len),
            )
        }
        Ok(parsed) => {
            report.kind = format!("vhd ({:?})", parsed.disk_type).to_lowercase();
            report.passed(
                "VHD footer: checksum valid (Azure needs a fixed VHD: `kiln export --format vhd`)",
            )
        }
        Err(e) => report.problem(format!("VHD footer at byte {}: {e}", len - 512)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rules() {
        let text = "kiln notes\tline\r\n".repeat(40);
        assert!(looks_like_text(text.as_bytes()));
        // a UTF-8 character cut by the end of the head is still text
        let cut = "é".repeat(300);
        assert!(looks_like_text(&cut.as_bytes()[..511]));
        let mut mbr = vec![0u8; 512];
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        assert!(!looks_like_text(&mbr));
        assert!(!looks_like_text(b"\x1b[31mred"));
        assert!(!looks_like_text(b""));
        assert_eq!(raw_problems(1024, &mbr, false), Vec::<String>::new());
        assert!(raw_problems(0, b"", true)[0].contains("empty"));
        assert!(raw_problems(1000, &mbr, false)[0].contains("512-byte sectors"));
        let p = raw_problems(1024, text.as_bytes(), false);
        assert!(p[0].contains("looks like text"), "{p:?}");
        assert!(raw_problems(1024, text.as_bytes(), true).is_empty());
    }
}
