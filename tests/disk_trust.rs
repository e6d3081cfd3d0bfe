//! Untrusted disk images against real qemu-img and qemu-nbd, through the
//! command line: an image that would read another host file (a VMDK
//! extent, a qcow2 backing or data file) is refused by `kiln export` and
//! `kiln verify` with exit 2 and none of that file's bytes come out; file
//! names that look like protocols or hold commas are read as plain files;
//! non-disk and empty sources are refused; a GCE tarball's claims are
//! checked before it is read; SIGTERM stops a long verify within seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the "other host file" holds: must never appear in any output.
const SECRET: &[u8] = b"KILN-TRUST-TEST-SECRET-4f1c9a";

fn kiln_in(dir: &Path, args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .output()
        .expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

macro_rules! kiln {
    ($dir:expr; $($a:expr),* $(,)?) => { kiln_in($dir, &[$(std::ffi::OsStr::new($a)),*]) };
}

fn qemu_img(dir: &Path, args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

/// A 1 MiB host file that starts with [`SECRET`] (sector-aligned, so a
/// FLAT extent can map it).
fn secret_file(dir: &Path) -> PathBuf {
    let p = dir.join("secret");
    let mut bytes = SECRET.to_vec();
    bytes.resize(1 << 20, b'S');
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every file under `dir` (recursively) that holds [`SECRET`], except the
/// secret itself.
fn copies_of_the_secret(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "secret") {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(SECRET.len()).any(|w| w == SECRET) {
                    found.push(p);
                }
            }
        }
    }
    found
}

/// The images that name `secret` (relative to their folder, as an
/// attacker can write them): a VMDK descriptor with a FLAT extent, a
/// sparse VMDK whose embedded descriptor has one, a qcow2 backed by the
/// secret, a qcow2 whose external data file it is.
fn hostile_images(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    // first: creating it (re)creates its data file
    qemu_img(
        dir,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "data_file=secret,data_file_raw=on",
            "datafile.qcow2",
            "1M",
        ],
    );
    secret_file(dir);
    let flat = dir.join("flat.vmdk");
    std::fs::write(
        &flat,
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\nRW 2048 FLAT \"secret\" 0\n\n\
         ddb.adapterType = \"ide\"\n",
    )
    .unwrap();

    // a real monolithicSparse VMDK, its capacity set to 0 and its embedded
    // descriptor replaced: qemu then takes the extents from the descriptor
    let sparse = dir.join("embedded.vmdk");
    qemu_img(
        dir,
        &[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicSparse",
            "embedded.vmdk",
            "1M",
        ],
    );
    let mut b = std::fs::read(&sparse).unwrap();
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (desc_at, desc_len) = (le64(&b, 28) as usize * 512, le64(&b, 36) as usize * 512);
    b[12..20].fill(0);
    let d = b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
              createType=\"monolithicFlat\"\n\nRW 2048 FLAT \"secret\" 0\n";
    b[desc_at..desc_at + desc_len].fill(0);
    b[desc_at..desc_at + d.len()].copy_from_slice(d);
    std::fs::write(&sparse, b).unwrap();

    qemu_img(
        dir,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "secret",
            "-F",
            "raw",
            "backed.qcow2",
        ],
    );
    // qemu-img really reads the secret through each of them
    for (name, fmt) in [
        ("flat.vmdk", "vmdk"),
        ("embedded.vmdk", "vmdk"),
        ("backed.qcow2", "qcow2"),
        ("datafile.qcow2", "qcow2"),
    ] {
        let out = Command::new("qemu-img")
            .args(["dd", "-f", fmt, "-O", "raw", "bs=512", "count=1"])
            .arg(format!("if={name}"))
            .arg("of=probe.raw")
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let probe = std::fs::read(dir.join("probe.raw")).unwrap();
        assert!(probe.starts_with(SECRET), "{name}: {:?}", &probe[..64]);
        std::fs::remove_file(dir.join("probe.raw")).unwrap();
    }
    vec![
        (flat, "VMDK descriptor file"),
        (sparse, "embedded descriptor"),
        (dir.join("backed.qcow2"), "backing file"),
        (dir.join("datafile.qcow2"), "external data file"),
    ]
}

#[test]
fn images_naming_other_host_files_are_refused_by_export_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    for (image, why) in hostile_images(dir) {
        for format in ["raw", "vmdk", "qcow2", "ova", "gce"] {
            let (code, stdout, stderr) =
                kiln!(dir; "export", &image, "-f", format, "-o", &out.join("o.img"));
            assert_eq!(code, 2, "{} as {format}: {stderr}", image.display());
            assert!(
                stderr.contains("refused") && stderr.contains(why),
                "{}: {stderr}",
                image.display()
            );
            assert!(stderr.contains("hint:"), "{stderr}");
            assert!(!stdout.contains("KILN-TRUST") && !stderr.contains("KILN-TRUST"));
        }
        let (code, stdout, stderr) = kiln!(dir; "verify", &image, "--json");
        assert_eq!(code, 2, "{}: {stdout} {stderr}", image.display());
        assert!(
            stderr.contains("refused") && stderr.contains(why),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(copies_of_the_secret(dir), Vec::<PathBuf>::new());
}

/// A raw disk with content at both ends.
fn small_raw(path: &Path) {
    let mut bytes = vec![0u8; 3 << 20];
    bytes[0..4].copy_from_slice(b"\xeb\x63\x90\x00");
    bytes[510] = 0x55;
    bytes[511] = 0xaa;
    for (i, b) in bytes.iter_mut().enumerate().skip(4096).step_by(4093) {
        *b = (i % 251) as u8 + 1;
    }
    std::fs::write(path, bytes).unwrap();
}

fn same_content(dir: &Path, a: &Path, fa: &str, b: &Path, fb: &str) -> bool {
    let out = Command::new("qemu-img")
        .args(["compare", "-q", "-f", fa, "-F", fb])
        .arg(a)
        .arg(b)
        .current_dir(dir)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("qemu-img compare: {out:?}"),
    }
}

#[test]
fn names_like_protocols_or_with_commas_are_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let raw = dir.join("disk.raw");
    small_raw(&raw);
    // given relative, as a user types them: `nbd:…` before any `/` is a
    // protocol to qemu unless kiln passes an absolute path
    for name in ["nbd:127.0.0.1:1", "a,b.qcow2", "json:{}"] {
        qemu_img(
            dir,
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "disk.raw",
                &format!("./{name}"),
            ],
        );
        for (format, out, fmt) in [
            ("raw", "o.raw", "raw"),
            ("vmdk", "o.vmdk", "vmdk"),
            ("qcow2", "o,x.qcow2", "qcow2"),
        ] {
            let _ = std::fs::remove_file(dir.join(out));
            let (code, _, stderr) = kiln!(dir; "export", name, "-f", format, "-o", out);
            assert_eq!(code, 0, "{name} as {format}: {stderr}");
            assert!(
                same_content(dir, &raw, "raw", &dir.join(out), fmt),
                "{name} as {format}"
            );
        }
        let (code, stdout, stderr) = kiln!(dir; "verify", name);
        assert_eq!(code, 0, "{name}: {stdout} {stderr}");
    }
}

#[test]
fn non_disk_and_empty_sources_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    // a text file of a whole number of sectors, and a ragged one
    let text = dir.join("notes.txt");
    std::fs::write(&text, "a line of notes\n".repeat(64)).unwrap();
    let ragged = dir.join("ragged.img");
    let mut r = vec![0u8; 1000];
    r[510] = 0x55;
    r[511] = 0xaa;
    std::fs::write(&ragged, r).unwrap();
    let empty = dir.join("empty.img");
    std::fs::write(&empty, "").unwrap();
    for (input, expect) in [
        (&text, "looks like text"),
        (&ragged, "not a whole number of 512-byte sectors"),
        (&empty, "empty"),
    ] {
        let (code, _, stderr) = kiln!(dir; "export", input, "-f", "raw", "-o", &out.join("o.raw"));
        assert_eq!(code, 2, "{}: {stderr}", input.display());
        assert!(stderr.contains(expect), "{}: {stderr}", input.display());
        assert!(stderr.contains("hint:"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // said explicitly, a text file is a raw disk
    let (code, _, stderr) = kiln!(dir; "export", &text, "--source-format", "raw", "-f", "raw",
        "-o", &out.join("o.raw"));
    assert_eq!(code, 0, "{stderr}");

    // verify: an empty file is no disk
    let (code, stdout, stderr) = kiln!(dir; "verify", &empty);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("empty"),
        "{stdout}"
    );
    let (code, stdout, _) = kiln!(dir; "verify", &ragged);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("512-byte sectors"), "{stdout}");
}

/// `tar --format=oldgnu -Sczf` of a sparse `disk.raw` of `size` bytes
/// holding only holes: ~130 bytes however large the claim.
fn gce_claim(dir: &Path, size: u64) -> PathBuf {
    let work = dir.join("claim");
    std::fs::create_dir(&work).unwrap();
    let disk = work.join("disk.raw");
    std::fs::File::create(&disk).unwrap().set_len(size).unwrap();
    let out = dir.join("claim.tar.gz");
    let st = Command::new("tar")
        .args(["--format=oldgnu", "-Sczf"])
        .arg(&out)
        .arg("disk.raw")
        .current_dir(&work)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&work).unwrap();
    out
}

#[test]
fn a_gce_tarball_claiming_4_tib_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let claim = gce_claim(dir, 4 << 40);
    assert!(std::fs::metadata(&claim).unwrap().len() < 200);
    let started = Instant::now();
    let (code, stdout, stderr) = kiln!(dir; "verify", &claim);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("no data"),
        "{stdout}"
    );
}

fn tmp_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A valid GCE tarball of a `gib` GiB `disk.raw` of zeros, the way
/// kiln's writer lays it out (one gzip member per MiB): ~1 KiB per MiB.
fn gce_of_zeros(path: &Path, gib: u64) {
    use std::io::Write;
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(&gz(&kiln::export::gce::tar_header(gib << 30)))
        .unwrap();
    let zero = gz(&vec![0u8; 1 << 20]);
    for _ in 0..(gib << 10) {
        out.write_all(&zero).unwrap();
    }
    out.write_all(&gz(&[0u8; 1024])).unwrap();
    out.flush().unwrap();
}

#[test]
fn sigterm_stops_a_long_verify_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // verify must inflate 64 GiB: minutes
    let gce = dir.join("big.tar.gz");
    gce_of_zeros(&gce, 64);
    let scratch = dir.join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("verify")
        .arg(&gce)
        .env("TMPDIR", &scratch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the verify ended before the signal"
    );
    // SAFETY: kill(2) on our child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(out.stdout.is_empty(), "no report: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SIGTERM"),
        "{out:?}"
    );
    assert_eq!(tmp_entries(&scratch), Vec::<String>::new());
}
