//! Checks of packages: an OVF descriptor with its files beside it, an OVA
//! (streamed: tar layout, descriptor and `.mf` digests, the disks extracted
//! to a temporary folder for `qemu-img`), and a GCE tarball (gzip intact,
//! exactly `disk.raw`, a whole number of GiB).

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::tarball::{Kind, TarReader};
use super::{disk, Report, VerifyError};
use crate::export::ova::{self, ManifestEntry};
use crate::export::ovf::{self, VMDK_STREAM_FORMAT};
use crate::util::cancel::Cancel;
use crate::util::io::IoError;

/// The largest descriptor or manifest read into memory.
pub const MAX_TEXT: u64 = 16 << 20;
/// GCE wants a disk of whole GiB.
const GIB: u64 = 1 << 30;
/// The most bytes one byte of deflate data inflates to (a 258-byte match
/// costs at least 2 bits): what a gzip file of a given size can hold.
pub const MAX_INFLATE_RATIO: u64 = 1032;
/// Member names a problem lists at most.
const NAMES_SHOWN: usize = 16;

/// A package member as found: its size, digests and, for disks, where its
/// bytes are on this host.
#[derive(Clone, Debug, Default)]
struct Member {
    size: u64,
    sha256: String,
    sha1: Option<String>,
    local: Option<PathBuf>,
}

/// Copies `r` to `w` (when given), counting and hashing (SHA1 too when
/// asked).
fn hash_copy(mut r: impl Read, mut w: Option<&mut dyn Write>, sha1: bool) -> io::Result<Member> {
    let mut s256 = Sha256::new();
    let mut s1 = sha1.then(Sha1::new);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        s256.update(&buf[..n]);
        if let Some(h) = s1.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(w) = w.as_mut() {
            w.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    Ok(Member {
        size,
        sha256: hex::encode(s256.finalize()),
        sha1: s1.map(|h| hex::encode(h.finalize())),
        local: None,
    })
}

/// A relative file name inside a package, or why it is not one.
fn member_name_problem(href: &str) -> Option<String> {
    if href.contains("://") || href.starts_with('/') {
        Some(format!(
            "file `{href}` is not a plain file name beside the descriptor (an absolute path or URL)"
        ))
    } else if href.split('/').any(|c| c == ".." || c.is_empty()) {
        Some(format!("file `{href}` leaves the package's folder"))
    } else {
        None
    }
}

/// What the package's files need from a reading: parsed manifest lines by
/// file name, to know which need SHA1.
fn sha1_wanted(manifest: &Option<Result<Vec<ManifestEntry>, String>>, name: &str) -> bool {
    matches!(manifest, Some(Ok(entries)) if entries.iter().any(|e| e.file == name && e.algorithm == "SHA1"))
}

/// Checks what the descriptor, the manifest and the members found say of
/// each other, and returns the disks to check with `qemu-img` with their
/// declared capacity and format.
fn check_members(
    report: &mut Report,
    descriptor_name: &str,
    descriptor: &str,
    manifest: Option<(&str, Result<Vec<ManifestEntry>, String>)>,
    members: &HashMap<String, Member>,
) -> Vec<(String, PathBuf, Option<u64>, Option<String>)> {
    let checked = match ovf::check(descriptor) {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("the descriptor {descriptor_name}: {e}"));
            return Vec::new();
        }
    };
    report.outcome(
        format!(
            "descriptor {descriptor_name}: OVF 1.x rules hold ({} file(s), {} disk(s), {})",
            checked.files.len(),
            checked.disks.len(),
            checked.system_type.as_deref().unwrap_or("no system type")
        ),
        checked
            .problems
            .iter()
            .map(|p| format!("descriptor: {p}"))
            .collect(),
    );
    let mut problems = Vec::new();
    for f in &checked.files {
        if let Some(p) = member_name_problem(&f.href) {
            problems.push(p);
            continue;
        }
        match (members.get(&f.href), f.size) {
            (None, _) => problems.push(format!(
                "file `{}` is in References but not in the package",
                f.href
            )),
            (Some(m), Some(size)) if m.size != size => problems.push(format!(
                "file `{}` is {} bytes, the descriptor says {size}",
                f.href, m.size
            )),
            _ => {}
        }
    }
    report.outcome(
        "every referenced file is present with the size the descriptor gives",
        problems,
    );
    match manifest {
        None => report.passed("no .mf manifest (optional in OVF; kiln writes one)"),
        Some((mf_name, Err(e))) => report.problem(format!("manifest {mf_name}: {e}")),
        Some((mf_name, Ok(entries))) => {
            let mut problems = Vec::new();
            for e in &entries {
                let Some(m) = members.get(&e.file) else {
                    problems.push(format!(
                        "manifest {mf_name} lists `{}`, which is not in the package",
                        e.file
                    ));
                    continue;
                };
                let found = match e.algorithm.as_str() {
                    "SHA1" => m.sha1.as_deref(),
                    _ => Some(m.sha256.as_str()),
                };
                match found {
                    Some(d) if d == e.digest => {}
                    Some(d) => problems.push(format!(
                        "`{}`: {} is {d}, the manifest says {} (the file changed or is damaged)",
                        e.file, e.algorithm, e.digest
                    )),
                    None => problems.push(format!(
                        "`{}`: its SHA1 could not be checked (the .mf must come before it)",
                        e.file
                    )),
                }
            }
            let listed = |n: &str| entries.iter().any(|e| e.file == n);
            for name in std::iter::once(descriptor_name)
                .chain(checked.files.iter().map(|f| f.href.as_str()))
            {
                if !listed(name) {
                    problems.push(format!("manifest {mf_name} does not list `{name}`"));
                }
            }
            report.outcome(
                format!("manifest {mf_name}: {} digest(s) match", entries.len()),
                problems,
            );
        }
    }
    checked
        .disks
        .iter()
        .filter_map(|d| {
            let f = checked
                .files
                .iter()
                .find(|f| Some(&f.id) == d.file_ref.as_ref())?;
            let local = members.get(&f.href)?.local.clone()?;
            Some((f.href.clone(), local, d.capacity, d.format.clone()))
        })
        .collect()
}

/// Checks each disk with `qemu-img` and against its declared capacity and
/// format.
async fn check_disks(
    report: &mut Report,
    disks: Vec<(String, PathBuf, Option<u64>, Option<String>)>,
) -> Result<(), VerifyError> {
    for (name, local, capacity, format) in disks {
        let mut sub = disk(&local).await?;
        if let (Some(cap), Some(size)) = (capacity, sub.virtual_size) {
            if cap < size {
                sub.problem(format!(
                    "its virtual size {size} is larger than the descriptor's capacity {cap}"
                ));
            } else {
                sub.passed(format!("the descriptor's capacity {cap} holds it"));
            }
        }
        if format.as_deref() == Some(VMDK_STREAM_FORMAT) {
            if sub.kind == "vmdk (streamOptimized)" {
                sub.passed("streamOptimized, as the descriptor says");
            } else {
                sub.problem(format!(
                    "the descriptor says streamOptimized VMDK, the file is {}",
                    sub.kind
                ));
            }
        }
        if report.virtual_size.is_none() {
            report.virtual_size = sub.virtual_size;
        }
        report.merge(&name, sub);
    }
    Ok(())
}

/// Reads at most [`MAX_TEXT`] bytes of a text member.
fn read_text(r: impl Read, name: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    r.take(MAX_TEXT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_TEXT {
        return Err(format!("{name}: larger than {MAX_TEXT} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8 text"))
}

/// The bytes of the file at `path`, or `None` when it holds more than
/// `limit` (only `limit + 1` bytes are read).
fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, IoError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(IoError::at("read", path))?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Checks an OVF descriptor and the files beside it: the descriptor's
/// rules, every referenced file present with its size, the `.mf` digests,
/// and each disk with `qemu-img`.
pub async fn ovf(path: &Path) -> Result<Report, VerifyError> {
    let mut report = Report::new(path, "ovf");
    let dir = crate::util::atomic::parent_dir(path).to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(bytes) = read_limited(path, MAX_TEXT)? else {
        report.problem(format!(
            "the descriptor is larger than {MAX_TEXT} bytes: not an OVF descriptor kiln reads"
        ));
        return Ok(report);
    };
    let Ok(descriptor) = String::from_utf8(bytes) else {
        report.problem("the descriptor is not UTF-8 text");
        return Ok(report);
    };
    let mf_name = format!("{}.mf", name.strip_suffix(".ovf").unwrap_or(&name));
    let mf_path = dir.join(&mf_name);
    let manifest = if mf_path.is_file() {
        Some(match read_limited(&mf_path, MAX_TEXT)? {
            None => Err(format!("larger than {MAX_TEXT} bytes")),
            Some(text) => String::from_utf8(text)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(|t| ova::parse_manifest(&t)),
        })
    } else {
        None
    };
    let mut members = HashMap::new();
    let mut own = hash_copy(descriptor.as_bytes(), None, sha1_wanted(&manifest, &name))
        .map_err(IoError::at("hash", path))?;
    own.local = Some(path.to_path_buf());
    members.insert(name.clone(), own);
    if let Ok(c) = ovf::check(&descriptor) {
        for f in c.files {
            if member_name_problem(&f.href).is_some() {
                continue;
            }
            let local = dir.join(&f.href);
            if !local.is_file() {
                continue;
            }
            let want_sha1 = sha1_wanted(&manifest, &f.href);
            let owned = local.clone();
            // stops reading when this future is dropped (Ctrl-C, SIGTERM)
            let cancel = Cancel::new();
            let _stop = cancel.on_drop();
            let mut m = tokio::task::spawn_blocking(move || {
                std::fs::File::open(&owned)
                    .and_then(|file| hash_copy(cancel.reader(file), None, want_sha1))
            })
            .await
            .map_err(|e| IoError::at("hash", &local)(io::Error::other(e)))?
            .map_err(IoError::at("hash", &local))?;
            m.local = Some(local);
            members.insert(f.href, m);
        }
    }
    let disks = check_members(
        &mut report,
        &name,
        &descriptor,
        manifest.map(|m| (mf_name.as_str(), m)),
        &members,
    );
    check_disks(&mut report, disks).await?;
    Ok(report)
}

/// What streaming through an OVA found.
#[derive(Debug, Default)]
pub struct OvaScan {
    descriptor: Option<(String, String)>,
    manifest: Option<(String, Result<Vec<ManifestEntry>, String>)>,
    members: HashMap<String, Member>,
    /// What is wrong with the tar's layout or members, one line each.
    pub problems: Vec<String>,
}

/// Streams through an OVA's tar read from `r`: layout rules, text members
/// kept (at most [`MAX_TEXT`] bytes each), digests of every member, disk
/// members (the descriptor's DiskSection files) copied into `scratch`
/// when given. Reads from `r` only (parsing apart from the file's I/O).
pub fn scan_ova_stream(r: impl Read, scratch: Option<&Path>) -> OvaScan {
    let mut scan = OvaScan::default();
    let mut disk_files = Vec::new();
    let mut file_order: Vec<String> = Vec::new();
    let mut tar_order: Vec<String> = Vec::new();
    let mut tar = TarReader::new(r);
    let mut index = 0usize;
    loop {
        let member = match tar.next_member() {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                scan.problems.push(format!(
                    "the tar is truncated or damaged after {}: {e}",
                    match tar_order.last() {
                        Some(last) => format!("member {index} (`{last}`)"),
                        None => "its start".to_string(),
                    }
                ));
                break;
            }
        };
        let this = index;
        index += 1;
        let name = member.name;
        if member.kind != Kind::File {
            scan.problems.push(format!(
                "member `{name}` is not a regular file ({:?}); an OVA holds only files, no folders",
                member.kind
            ));
            continue;
        }
        if name.contains('/') {
            scan.problems.push(format!(
                "member `{name}` is in a folder; OVA members are top-level"
            ));
        }
        if this == 0 {
            if !name.ends_with(".ovf") {
                scan.problems.push(format!(
                    "the first member is `{name}`; the .ovf descriptor must come first (ovftool and Workstation require it)"
                ));
            }
        } else if name.ends_with(".ovf") {
            scan.problems.push(format!(
                "`{name}` is member {}; the .ovf descriptor must be the first member",
                this + 1
            ));
        }
        if name.ends_with(".mf") && this != 1 {
            scan.problems.push(format!(
                "the manifest `{name}` is member {}; it must come right after the .ovf",
                this + 1
            ));
        }
        let is_text = name.ends_with(".ovf") || name.ends_with(".mf");
        let want_sha1 = sha1_wanted(&scan.manifest.as_ref().map(|(_, m)| m.clone()), &name);
        let is_disk = disk_files.contains(&name);
        let result = if is_text {
            let mut bytes = Vec::new();
            match (&mut tar).take(MAX_TEXT + 1).read_to_end(&mut bytes) {
                Ok(_) => {
                    let m = hash_copy(&bytes[..], None, want_sha1);
                    let text = read_text(&bytes[..], &name);
                    if name.ends_with(".ovf") && scan.descriptor.is_none() {
                        match text {
                            Ok(t) => {
                                if let Ok(c) = ovf::check(&t) {
                                    disk_files = c
                                        .disks
                                        .iter()
                                        .filter_map(|d| {
                                            c.files
                                                .iter()
                                                .find(|f| Some(&f.id) == d.file_ref.as_ref())
                                                .map(|f| f.href.clone())
                                        })
                                        .collect();
                                    file_order = c.files.iter().map(|f| f.href.clone()).collect();
                                }
                                scan.descriptor = Some((name.clone(), t));
                            }
                            Err(e) => scan.problems.push(e),
                        }
                    } else if name.ends_with(".mf") && scan.manifest.is_none() {
                        scan.manifest =
                            Some((name.clone(), text.and_then(|t| ova::parse_manifest(&t))));
                    }
                    m
                }
                Err(e) => Err(e),
            }
        } else if let (true, Some(scratch)) = (is_disk, scratch) {
            let local = scratch.join(format!("disk-{this}"));
            let copied = std::fs::File::create(&local).and_then(|mut out| {
                let m = hash_copy(&mut tar, Some(&mut out), want_sha1)?;
                out.flush()?;
                Ok(m)
            });
            copied.map(|mut m| {
                m.local = Some(local);
                m
            })
        } else {
            hash_copy(&mut tar, None, want_sha1)
        };
        match result {
            Ok(m) => {
                tar_order.push(name.clone());
                scan.members.insert(name, m);
            }
            Err(e) => {
                scan.problems.push(format!(
                    "member `{name}` cannot be read whole (truncated or damaged tar): {e}"
                ));
                break;
            }
        }
    }
    // the files after the .ovf and .mf: in the References order
    let in_tar: Vec<&String> = tar_order
        .iter()
        .filter(|n| file_order.contains(n))
        .collect();
    let in_refs: Vec<&String> = file_order
        .iter()
        .filter(|f| tar_order.contains(f))
        .collect();
    if in_tar != in_refs {
        scan.problems.push(format!(
            "the files are in the order {in_tar:?}; OVF wants the References order {in_refs:?}"
        ));
    }
    scan
}

/// Streams through the OVA at `path` ([`scan_ova_stream`], disks copied
/// into `scratch`, stopping when `cancel` is set) and checks the end of
/// the archive.
fn scan_ova(path: &Path, scratch: &Path, cancel: &Cancel) -> Result<OvaScan, IoError> {
    let file = std::fs::File::open(path).map_err(IoError::at("open", path))?;
    let len = file.metadata().map_err(IoError::at("stat", path))?.len();
    let mut scan = scan_ova_stream(
        io::BufReader::with_capacity(1 << 20, cancel.reader(file)),
        Some(scratch),
    );
    // the end of the archive: two zero blocks, a whole number of blocks
    let mut f = std::fs::File::open(path).map_err(IoError::at("open", path))?;
    if len % 512 != 0 {
        scan.problems.push(format!(
            "the file is {len} bytes, not a whole number of 512-byte tar blocks (truncated?)"
        ));
    } else if len >= 1024 {
        let mut tail = [0u8; 1024];
        f.seek(SeekFrom::Start(len - 1024))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(IoError::at("read", path))?;
        if tail.iter().any(|b| *b != 0) {
            scan.problems
                .push("the tar has no end-of-archive blocks (truncated?)".into());
        }
    }
    Ok(scan)
}

/// Checks an OVA while streaming through it: the tar layout (the `.ovf`
/// first, then the `.mf`, then the files; regular files only, no folders),
/// the descriptor's rules, sizes and `.mf` digests, and each disk with
/// `qemu-img` after extracting it to a temporary folder.
pub async fn ova(path: &Path) -> Result<Report, VerifyError> {
    let mut report = Report::new(path, "ova");
    let scratch = tempfile::Builder::new()
        .prefix("kiln-verify-")
        .tempdir()
        .map_err(IoError::at(
            "create a temporary folder in",
            &std::env::temp_dir(),
        ))?;
    let (owned, dir) = (path.to_path_buf(), scratch.path().to_path_buf());
    // stops reading when this future is dropped (Ctrl-C, SIGTERM)
    let cancel = Cancel::new();
    let _stop = cancel.on_drop();
    let scan = tokio::task::spawn_blocking(move || scan_ova(&owned, &dir, &cancel))
        .await
        .map_err(|e| IoError::at("read", path)(io::Error::other(e)))??;
    report.outcome(
        "tar layout: the .ovf first, then the .mf, then the files; regular files only",
        scan.problems,
    );
    let Some((name, descriptor)) = scan.descriptor else {
        report.problem("no .ovf descriptor found in the tar");
        return Ok(report);
    };
    let manifest = scan.manifest.as_ref().map(|(n, m)| (n.as_str(), m.clone()));
    let disks = check_members(&mut report, &name, &descriptor, manifest, &scan.members);
    check_disks(&mut report, disks).await?;
    Ok(report)
}

/// Checks a GCE image tarball: the gzip stream is whole (its CRC and
/// length hold), the tar inside holds exactly `disk.raw`, a regular (or
/// GNU sparse) file of a whole number of GiB. What the headers claim is
/// checked before any data is read (see [`check_gce`]); the work stops
/// when the returned future is dropped (Ctrl-C, SIGTERM).
pub async fn gce(path: &Path) -> Result<Report, VerifyError> {
    let owned = path.to_path_buf();
    let cancel = Cancel::new();
    let _stop = cancel.on_drop();
    tokio::task::spawn_blocking(move || gce_blocking(&owned, &cancel))
        .await
        .map_err(|e| IoError::at("read", path)(io::Error::other(e)))?
}

fn gce_blocking(path: &Path, cancel: &Cancel) -> Result<Report, VerifyError> {
    let mut report = Report::new(path, "gce (tar.gz)");
    let file = std::fs::File::open(path).map_err(IoError::at("open", path))?;
    let len = file.metadata().map_err(IoError::at("stat", path))?.len();
    check_gce(cancel.reader(file), len, &mut report);
    Ok(report)
}

/// Checks the GCE tarball read from `r` (a file of `file_len` bytes) into
/// `report`. Claims are checked before reading: no member may store more
/// data than a gzip of `file_len` bytes can inflate to
/// ([`MAX_INFLATE_RATIO`]); a sparse `disk.raw`'s map must add up and its
/// holes are counted, never read; a sparse `disk.raw` with no data at all
/// is an empty disk. So the work is bounded by the file's own bytes.
pub fn check_gce(r: impl Read, file_len: u64, report: &mut Report) {
    // a series of gzip members is one stream (RFC 1952; kiln's writer
    // compresses 1 MiB members in parallel)
    let gz = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 20, r));
    let mut tar = TarReader::new(gz);
    let most = file_len
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(1 << 20);
    let mut names = Vec::new();
    let mut count = 0usize;
    let mut problems = Vec::new();
    let mut disk_size = None;
    // about disk.raw itself, not the archive's structure
    let mut disk_problems = Vec::new();
    loop {
        let m = match tar.next_member() {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                problems.push(format!("the gzip'd tar is truncated or damaged: {e}"));
                break;
            }
        };
        count += 1;
        if names.len() < NAMES_SHOWN {
            names.push(m.name.clone());
        }
        if m.size > most {
            problems.push(format!(
                "member `{}` claims {} bytes of data; a gzip file of {file_len} bytes holds at most {most}: forged or truncated",
                m.name, m.size
            ));
            break;
        }
        if m.name != "disk.raw" {
            continue;
        }
        if !matches!(m.kind, Kind::File | Kind::Sparse) {
            problems.push(format!("disk.raw is not a regular file ({:?})", m.kind));
            continue;
        }
        if m.kind == Kind::Sparse && m.size == 0 {
            disk_problems.push(format!(
                "disk.raw holds no data: a sparse file of {} bytes, all holes (an empty disk)",
                m.real_size
            ));
        }
        // the data is skipped by the next call: read through the gzip
        // stream (so its CRCs are checked), holes are not produced
        disk_size = Some(m.real_size);
    }
    if problems.is_empty() {
        // the rest of the gzip stream: its CRC and length are checked at its end
        match io::copy(&mut tar.into_inner(), &mut io::sink()) {
            Ok(_) => report.passed("gzip stream whole (every member's CRC32 and length match)"),
            Err(e) => problems.push(format!("the gzip stream is damaged: {e}")),
        }
    }
    if (count != 1 || names != ["disk.raw"]) && problems.is_empty() {
        problems.push(format!(
            "the tar holds {count} member(s) {names:?}{}; Google Compute Engine needs exactly one member, disk.raw",
            if count > names.len() { " …" } else { "" }
        ));
    }
    report.outcome("the tar holds exactly disk.raw", problems);
    report.problems.extend(disk_problems);
    if let Some(size) = disk_size {
        report.virtual_size = Some(size);
        if size == 0 || size % GIB != 0 {
            report.problem(format!(
                "disk.raw is {size} bytes, not a whole number of GiB (GCE requires it)"
            ));
        } else {
            report.passed(format!("disk.raw is {} GiB", size / GIB));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert!(member_name_problem("web-disk1.vmdk").is_none());
        assert!(member_name_problem("../etc/passwd").is_some());
        assert!(member_name_problem("/etc/passwd").is_some());
        assert!(member_name_problem("http://x/y.vmdk").is_some());
    }

    #[test]
    fn hashes_and_copies() {
        let mut out = Vec::new();
        let m = hash_copy(&b"abc"[..], Some(&mut out), true).unwrap();
        assert_eq!(m.size, 3);
        assert_eq!(out, b"abc");
        assert_eq!(
            m.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            m.sha1.as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
    }
}
