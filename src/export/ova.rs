//! OVF packages and OVAs: the `.ovf` descriptor (see [`super::ovf`]), the
//! streamOptimized disk `NAME-disk1.vmdk` and the `.mf` manifest
//! (`SHA256(file)= hex`), side by side (`ovf`, the `.ovf` last) or in one
//! ustar tar (`ova`: the `.ovf` first, then the `.mf`, then the disk, no
//! directories, no compression: what ovftool and Workstation need, P10).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::format::ExportFormat;
use super::ovf::{self, DiskFile};
use super::vmdk;
use super::write::{ExportError, ExportJob};
use crate::disk::img;
use crate::util::atomic::PendingFile;
use crate::util::cancel::Cancel;
use crate::util::digest::{self, sha256_hex};
use crate::util::io::{IoError, ProgressFn};

/// The names of a package's members for an image called `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// `base.ovf`.
    pub ovf: String,
    /// `base.mf`.
    pub mf: String,
    /// `base-disk1.vmdk`.
    pub disk: String,
}

impl Members {
    /// The members for the main file of a `format` export: for `ovf` the
    /// descriptor is `main_file` itself, for `ova` (`NAME.ova`) the
    /// descriptor inside is `NAME.ovf`.
    pub fn new(format: ExportFormat, main_file: &str) -> Self {
        let (base, ovf) = match format {
            ExportFormat::Ovf => (
                main_file.strip_suffix(".ovf").unwrap_or(main_file),
                main_file.to_string(),
            ),
            _ => {
                let base = main_file.strip_suffix(".ova").unwrap_or(main_file);
                (base, format!("{base}.ovf"))
            }
        };
        Members {
            ovf,
            mf: format!("{base}.mf"),
            disk: format!("{base}-disk1.vmdk"),
        }
    }
}

/// The files an `ovf`/`ova` export writes, relative to the folder of the
/// main file `main` (itself relative to the export folder), main file last.
pub fn planned_files(format: ExportFormat, main: &Path) -> Vec<PathBuf> {
    if format != ExportFormat::Ovf {
        return vec![main.to_path_buf()];
    }
    let dir = main.parent().unwrap_or(Path::new(""));
    let name = main.file_name().unwrap_or_default().to_string_lossy();
    let m = Members::new(format, &name);
    vec![dir.join(m.disk), dir.join(m.mf), main.to_path_buf()]
}

/// The `.mf` text: one `SHA256(name)= hex` line per file, in order.
pub fn manifest(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, hex)| format!("SHA256({name})= {hex}\n"))
        .collect()
}

/// One line of a `.mf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// `SHA256` or `SHA1`.
    pub algorithm: String,
    /// The file name.
    pub file: String,
    /// The lower-case hex digest.
    pub digest: String,
}

/// Parses a `.mf` (`ALGO(file)= hex` lines; SHA1 and SHA256); an error
/// names the bad line.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = || format!("line {}: `{line}` is not `ALGO(file)= hex`", n + 1);
        let (algorithm, rest) = line.split_once('(').ok_or_else(bad)?;
        let (file, digest) = rest.rsplit_once(")=").ok_or_else(bad)?;
        let digest = digest.trim().to_ascii_lowercase();
        let want_len = match algorithm {
            "SHA256" => 64,
            "SHA1" => 40,
            other => {
                return Err(format!(
                    "line {}: digest algorithm `{other}` (kiln checks SHA256 and SHA1)",
                    n + 1
                ))
            }
        };
        if digest.len() != want_len || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "line {}: `{digest}` is not a {algorithm} digest",
                n + 1
            ));
        }
        out.push(ManifestEntry {
            algorithm: algorithm.into(),
            file: file.into(),
            digest,
        });
    }
    Ok(out)
}

/// Writes bytes to `dest` atomically (see [`PendingFile`]).
fn write_file(dest: &Path, bytes: &[u8]) -> Result<(), IoError> {
    use std::io::Write;
    let mut f = PendingFile::create(dest)?;
    f.file()
        .write_all(bytes)
        .map_err(IoError::at("write", f.tmp_path()))?;
    f.publish()?;
    Ok(())
}

/// A reader that stops with an error once the export is cancelled.
struct CancelRead<'a, R> {
    inner: R,
    cancel: &'a Cancel,
}

impl<R: Read> Read for CancelRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.inner.read(buf)
    }
}

/// A ustar header for a regular member of `size` bytes.
fn ustar_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h
}

/// Writes the OVA `dest`: `descriptor` as `m.ovf`, `mf` as `m.mf`, then
/// the disk file `disk` as `m.disk`, in one ustar tar (blocking I/O).
fn write_ova(
    dest: &Path,
    m: &Members,
    descriptor: &str,
    mf: &str,
    disk: &Path,
    cancel: &Cancel,
) -> Result<(), ExportError> {
    let mut pending = PendingFile::create(dest)?;
    let tmp = pending.tmp_path().to_path_buf();
    let io_err = |e: io::Error| -> ExportError {
        if e.kind() == io::ErrorKind::Interrupted && cancel.is_cancelled() {
            ExportError::Cancelled(crate::util::cancel::Cancelled)
        } else {
            IoError::at("write the OVA", &tmp)(e).into()
        }
    };
    {
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, pending.file()));
        for (name, bytes) in [(&m.ovf, descriptor.as_bytes()), (&m.mf, mf.as_bytes())] {
            let mut h = ustar_header(bytes.len() as u64);
            tar.append_data(&mut h, name, bytes).map_err(io_err)?;
        }
        let f = std::fs::File::open(disk).map_err(IoError::at("open", disk))?;
        let len = f.metadata().map_err(IoError::at("stat", disk))?.len();
        let mut h = ustar_header(len);
        tar.append_data(&mut h, &m.disk, CancelRead { inner: f, cancel })
            .map_err(io_err)?;
        tar.into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(io_err)?;
    }
    pending.publish()?;
    Ok(())
}

/// The `ovf` and `ova` exports: write the package in `job.dir`; return the
/// files written, relative to `job.dir`, the main file last.
pub async fn export(
    job: &ExportJob<'_>,
    cancel: &Cancel,
    progress: ProgressFn<'_>,
) -> Result<Vec<PathBuf>, ExportError> {
    let main = job.dir.join(job.file_name);
    let dir = crate::util::atomic::parent_dir(&main).to_path_buf();
    let main_name = main
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let m = Members::new(job.format, &main_name);
    // settings the profile cannot express fail before the disk is written
    ovf::resolve(&job.machine).map_err(|e| ExportError::Settings(e.to_string()))?;
    ovf::check_name(&machine_name(job, &m)).map_err(|e| ExportError::Settings(e.to_string()))?;
    // the disk: beside the .ovf for `ovf`; for `ova` a temporary file,
    // removed when this returns (whether it succeeds or not)
    let tmp_disk = match job.format {
        ExportFormat::Ovf => None,
        _ => Some(
            tempfile::Builder::new()
                .prefix(".kiln-ova-disk-")
                .suffix(".vmdk")
                .tempfile_in(&dir)
                .map_err(IoError::at("create a temporary file in", &dir))?,
        ),
    };
    let disk_path = match &tmp_disk {
        None => dir.join(&m.disk),
        Some(t) => t.path().to_path_buf(),
    };
    progress(&format!("writing the streamOptimized disk {}", m.disk));
    vmdk::write_stream_optimized(job.source, &disk_path, job.threads, cancel).await?;
    cancel.check()?;
    package(job, &m, &main, &disk_path, cancel, progress).await?;
    drop(tmp_disk);
    Ok(planned_files(job.format, Path::new(job.file_name)))
}

/// The machine's name: `--name`, else the descriptor's base name.
fn machine_name(job: &ExportJob<'_>, m: &Members) -> String {
    job.machine
        .name
        .clone()
        .unwrap_or_else(|| m.ovf.strip_suffix(".ovf").unwrap_or(&m.ovf).to_string())
}

/// Writes the descriptor and manifest around a written streamOptimized
/// disk `disk` (for `ovf`, already at `m.disk` beside `main`): for `ovf`
/// the `.mf`, then `main` (the `.ovf`); for `ova` the tar `main` with the
/// disk copied in. Only `job.format` and `job.machine` are used.
pub async fn package(
    job: &ExportJob<'_>,
    m: &Members,
    main: &Path,
    disk: &Path,
    cancel: &Cancel,
    progress: ProgressFn<'_>,
) -> Result<(), ExportError> {
    let info = img::info(disk)
        .await
        .map_err(|source| ExportError::Convert {
            format: job.format,
            source,
        })?;
    let file_size = std::fs::metadata(disk)
        .map_err(IoError::at("stat", disk))?
        .len();
    let name = machine_name(job, m);
    let descriptor = ovf::descriptor(
        &job.machine,
        &name,
        &DiskFile {
            href: m.disk.clone(),
            file_size,
            capacity: info.virtual_size,
        },
    )
    .map_err(|e| ExportError::Settings(e.to_string()))?;
    progress("hashing the disk for the manifest");
    let disk_sha = digest::sha256_file(disk).await.map_err(ExportError::Io)?;
    let ovf_sha = sha256_hex(descriptor.as_bytes());
    let mf = manifest(&[(&m.ovf, &ovf_sha), (&m.disk, &disk_sha)]);
    cancel.check()?;
    let dir = crate::util::atomic::parent_dir(main);
    match job.format {
        ExportFormat::Ovf => {
            write_file(&dir.join(&m.mf), mf.as_bytes())?;
            write_file(main, descriptor.as_bytes())?;
        }
        _ => {
            progress(&format!("writing {}", main.display()));
            let (m, disk, cancel, dest) = (
                m.clone(),
                disk.to_path_buf(),
                cancel.clone(),
                main.to_path_buf(),
            );
            tokio::task::spawn_blocking(move || {
                write_ova(&dest, &m, &descriptor, &mf, &disk, &cancel)
            })
            .await
            .map_err(|e| IoError::at("write the OVA", main)(io::Error::other(e)))??;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_and_plan() {
        let m = Members::new(ExportFormat::Ova, "web.ova");
        assert_eq!(
            (m.ovf.as_str(), m.mf.as_str(), m.disk.as_str()),
            ("web.ovf", "web.mf", "web-disk1.vmdk")
        );
        let m = Members::new(ExportFormat::Ovf, "web.ovf");
        assert_eq!((m.ovf.as_str(), m.mf.as_str()), ("web.ovf", "web.mf"));
        assert_eq!(
            planned_files(ExportFormat::Ovf, Path::new("ovf/image.ovf")),
            [
                PathBuf::from("ovf/image-disk1.vmdk"),
                PathBuf::from("ovf/image.mf"),
                PathBuf::from("ovf/image.ovf")
            ]
        );
        assert_eq!(
            planned_files(ExportFormat::Ova, Path::new("x.ova")),
            [PathBuf::from("x.ova")]
        );
    }

    #[test]
    fn manifest_round_trip_and_errors() {
        let a = "a".repeat(64);
        let text = manifest(&[("web.ovf", &a), ("web-disk1.vmdk", &"0".repeat(64))]);
        assert!(text.starts_with(&format!("SHA256(web.ovf)= {a}\n")));
        let parsed = parse_manifest(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].file, "web-disk1.vmdk");
        let sha1 = format!("SHA1(x (1).vmdk)= {}\r\n", "AB".repeat(20));
        let p = parse_manifest(&sha1).unwrap();
        assert_eq!(p[0].file, "x (1).vmdk");
        assert_eq!(p[0].digest, "ab".repeat(20));
        assert!(parse_manifest("MD5(x)= 00").unwrap_err().contains("MD5"));
        assert!(parse_manifest("SHA256(x)= 1234")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_manifest("garbage").is_err());
    }
}
