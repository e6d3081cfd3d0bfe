//! `kiln export` and `kiln verify` through the command line: every format
//! round-trips (real `qemu-img compare` against the source), outputs are
//! checked and published atomically, bad inputs give exit 2 and leave
//! nothing behind, and `kiln verify` reports damaged files.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn kiln(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

macro_rules! kiln {
    ($($a:expr),* $(,)?) => { kiln(&[$(std::ffi::OsStr::new($a)),*]) };
}

fn qemu_img(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img")
}

/// A qcow2 (zstd clusters) of 37 MiB + 12 KiB (not a whole MiB, not a
/// whole 64 KiB grain) holding random data, zero runs and holes.
fn source_image(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    let mut f = std::fs::File::create(&raw).unwrap();
    let size: u64 = (37 << 20) + 12 * 1024;
    f.set_len(size).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    };
    for (at, len) in [(0u64, 3 << 20), (9 << 20, 100_000), (30 << 20, 1 << 20)] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&random(len)).unwrap();
    }
    // explicit zeros (allocated on the host) and a last partial grain
    f.seek(SeekFrom::Start(20 << 20)).unwrap();
    f.write_all(&vec![0u8; 2 << 20]).unwrap();
    f.seek(SeekFrom::Start(size - 5000)).unwrap();
    f.write_all(&random(5000)).unwrap();
    drop(f);
    let q = dir.join("src.qcow2");
    let out = qemu_img(&[
        "convert".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        "-c".as_ref(),
        "-o".as_ref(),
        "compression_type=zstd".as_ref(),
        raw.as_os_str(),
        q.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    q
}

/// `qemu-img compare`; a `.vhd` is named `vpc` (qemu-img would take a
/// fixed VHD for raw, its footer for data).
fn same_content(a: &Path, b: &Path) -> bool {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["compare", "-q"]);
    if b.extension().is_some_and(|e| e == "vhd") {
        cmd.args(["-F", "vpc"]);
    }
    let out = cmd.arg(a).arg(b).output().expect("qemu-img");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("qemu-img compare failed: {out:?}"),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn qemu_img_formats_round_trip_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_image(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let cases = [
        ("vmdk-sparse", "d.vmdk", "vmdk (monolithicSparse)"),
        ("vhdx", "d.vhdx", "vhdx"),
        ("vhd", "d.vhd", "vhd (fixed)"),
        ("raw", "d.raw", "raw"),
        ("qcow2", "d.qcow2", "qcow2"),
        ("qcow2-zlib", "z.qcow2", "qcow2"),
    ];
    for (format, name, kind) in cases {
        let dest = out.join(name);
        let (code, stdout, stderr) =
            kiln!("export", &src, "--format", format, "--output", &dest, "--json");
        assert_eq!(code, 0, "{format}: {stderr}");
        let result: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(result["files"][0]["path"], dest.to_str().unwrap());
        assert_eq!(
            result["files"][0]["size"],
            std::fs::metadata(&dest).unwrap().len()
        );
        assert!(
            same_content(&src, &dest),
            "{format} differs from the source"
        );
        let (code, stdout, _) = kiln!("verify", &dest);
        assert_eq!(code, 0, "{format}: {stdout}");
        assert!(
            stdout.contains(&format!("{}: {kind} (ok)", dest.display())),
            "{stdout}"
        );
    }
    // the fixed VHD is rounded up to whole MiB, with a valid footer
    let vhd = std::fs::metadata(out.join("d.vhd")).unwrap().len();
    assert_eq!(vhd, (38 << 20) + 512);
    // qcow2 compression types, as asked
    let info = |p: &Path| -> Value {
        let o = qemu_img(&["info".as_ref(), "--output=json".as_ref(), p.as_os_str()]);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    assert_eq!(
        info(&out.join("d.qcow2"))["format-specific"]["data"]["compression-type"],
        "zstd"
    );
    assert_eq!(
        info(&out.join("z.qcow2"))["format-specific"]["data"]["compression-type"],
        "zlib"
    );
    // nothing but the outputs: no staging folder or temporary file left
    assert_eq!(
        listing(&out),
        ["d.qcow2", "d.raw", "d.vhd", "d.vhdx", "d.vmdk", "z.qcow2"]
    );
    // an existing output is refused without --force, replaced with it
    let dest = out.join("d.raw");
    let (code, _, stderr) = kiln!("export", &src, "-f", "raw", "-o", &dest);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, _, stderr) = kiln!("export", &src, "-f", "raw", "-o", &dest, "--force");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn bad_sources_exit_2_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_image(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // a truncated qcow2: qemu-img would read the lost clusters as zeros
    let truncated = dir.path().join("truncated.qcow2");
    std::fs::copy(&src, &truncated).unwrap();
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // qcow2 magic followed by garbage
    let garbage = dir.path().join("garbage.qcow2");
    let mut g = b"QFI\xfb".to_vec();
    g.extend((0..4096u32).map(|i| (i * 7 + 3) as u8));
    std::fs::write(&garbage, g).unwrap();
    // not a disk: an OVF descriptor, an empty file, a missing file
    let ovf = dir.path().join("x.ovf");
    std::fs::write(&ovf, "<?xml version=\"1.0\"?>\n<Envelope/>\n").unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.qcow2");

    let cases: [(&Path, &str); 5] = [
        (&truncated, "corruptions"),
        (&garbage, "cannot read it as qcow2"),
        (&ovf, "an OVF descriptor"),
        (&empty, "empty"),
        (&missing, "No such file"),
    ];
    for (input, expect) in cases {
        for format in ["vhdx", "raw", "ova", "ovf", "gce", "vmdk"] {
            let (code, _, stderr) = kiln!("export", input, "-f", format, "-o", &out.join("o.img"));
            assert_eq!(code, 2, "{}: {stderr}", input.display());
            assert!(stderr.contains(&input.display().to_string()), "{stderr}");
            assert!(stderr.contains(expect), "{}: {stderr}", input.display());
            assert!(stderr.contains("hint:"), "{stderr}");
        }
    }
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    // bad arguments
    let (code, _, stderr) = kiln!("export", &src, "-f", "vdi", "-o", &out.join("o"));
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown export format `vdi`"), "{stderr}");
    let (code, _, stderr) = kiln!(
        "export",
        &src,
        "-f",
        "raw",
        "-o",
        &dir.path().join("no/such/dir/o")
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn verify_reports_damage_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_image(dir.path());
    let vhd = dir.path().join("d.vhd");
    let (code, _, stderr) = kiln!("export", &src, "-f", "vhd", "-o", &vhd);
    assert_eq!(code, 0, "{stderr}");
    // a flipped byte in the VHD footer breaks its checksum
    let mut bytes = std::fs::read(&vhd).unwrap();
    let footer = bytes.len() - 512;
    bytes[footer + 100] ^= 0xff;
    let broken = dir.path().join("broken.vhd");
    std::fs::write(&broken, &bytes).unwrap();
    let (code, stdout, _) = kiln!("verify", &broken, "--json");
    assert_eq!(code, 1, "{stdout}");
    let reports: Value = serde_json::from_str(&stdout).unwrap();
    let problems = reports[0]["problems"].to_string();
    assert!(problems.contains("checksum"), "{problems}");

    // a truncated VHDX cannot even be opened
    let vhdx = dir.path().join("d.vhdx");
    let (code, _, stderr) = kiln!("export", &src, "-f", "vhdx", "-o", &vhdx);
    assert_eq!(code, 0, "{stderr}");
    let f = std::fs::OpenOptions::new().write(true).open(&vhdx).unwrap();
    f.set_len(3 << 20).unwrap();
    let (code, stdout, _) = kiln!("verify", &vhdx);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("cannot read it as vhdx"),
        "{stdout}"
    );

    // a missing file is an input error
    let (code, _, stderr) = kiln!("verify", &dir.path().join("nope.vmdk"));
    assert_eq!(code, 2);
    assert!(stderr.contains("no such file"), "{stderr}");
}

/// COT (the Common OVF Tool, PyPI `cot`), installed into the repository's
/// `.venv` by scripts/setup-test-peers.sh: a real OVF consumer that parses
/// the descriptor, the References and the tar layout.
fn cot() -> PathBuf {
    let cot = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cot");
    assert!(
        cot.is_file(),
        "{} is missing: run scripts/setup-test-peers.sh",
        cot.display()
    );
    cot
}

fn cot_info(package: &Path) -> String {
    let out = Command::new(cot())
        .args(["--force", "info", "--verbose"])
        .arg(package)
        .output()
        .expect("run cot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cot info {}: {text}",
        package.display()
    );
    // COT 2.2.1 takes every OVF 1.x manifest for SHA1 (it knows SHA256
    // only from OVF 2.0) and logs a mismatch for kiln's SHA256 lines, as
    // for ovftool's; any other error is a finding
    for line in text.lines().filter(|l| l.contains("ERROR")) {
        assert!(
            line.contains("The sha1 checksum for file"),
            "cot info {}: {text}",
            package.display()
        );
    }
    text
}

fn tar_members(ova: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(ova).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn verify_problems(path: &Path) -> String {
    let (code, stdout, stderr) = kiln!("verify", path, "--json");
    assert_eq!(code, 1, "{}: {stdout}{stderr}", path.display());
    let reports: Value = serde_json::from_str(&stdout).unwrap();
    reports[0]["problems"].to_string()
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
}

#[test]
fn ovf_and_ova_round_trip_verify_and_cot_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_image(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // OVA: one ustar tar, .ovf, .mf, disk, nothing else left beside it
    let ova = out.join("web.ova");
    let (code, stdout, stderr) =
        kiln!("export", &src, "-f", "ova", "-o", &ova, "--cpus", "4", "--memory", "1024", "--json");
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["files"].as_array().unwrap().len(), 1);
    assert_eq!(listing(&out), ["web.ova"]);
    assert_eq!(tar_members(&ova), ["web.ovf", "web.mf", "web-disk1.vmdk"]);
    let (code, stdout, _) = kiln!("verify", &ova);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("(ok)") && stdout.contains("manifest web.mf: 2 digest(s) match"),
        "{stdout}"
    );
    let x = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&ova)
        .arg("-C")
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success());
    let disk = x.path().join("web-disk1.vmdk");
    assert!(
        same_content(&src, &disk),
        "the OVA's disk differs from the source"
    );
    let ovf_text = std::fs::read_to_string(x.path().join("web.ovf")).unwrap();
    assert!(
        ovf_text.contains("<vssd:VirtualSystemType>vmx-13<"),
        "{ovf_text}"
    );
    assert!(ovf_text.contains("<rasd:VirtualQuantity>4<"));
    let info = cot_info(&ova);
    assert!(
        info.contains("web-disk1.vmdk") && info.contains("vmx-13"),
        "{info}"
    );
    assert!(
        info.contains("harddisk @ SCSI 0:0") && info.contains("lsilogic"),
        "{info}"
    );
    assert!(
        regex::Regex::new(r"None \(default\)\s+4\s+1 GiB\s+1 ")
            .unwrap()
            .is_match(&info),
        "{info}"
    );

    // OVF: side by side, the .ovf published last
    let ovf = out.join("db.ovf");
    let (code, stdout, stderr) = kiln!(
        "export",
        &src,
        "-f",
        "ovf",
        "-o",
        &ovf,
        "--profile",
        "workstation",
        "--firmware",
        "efi",
        "--json"
    );
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = result["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(names.last().unwrap().ends_with("db.ovf"), "{names:?}");
    assert_eq!(
        listing(&out),
        ["db-disk1.vmdk", "db.mf", "db.ovf", "web.ova"]
    );
    assert!(same_content(&src, &out.join("db-disk1.vmdk")));
    let (code, stdout, _) = kiln!("verify", &ovf);
    assert_eq!(code, 0, "{stdout}");
    let info = cot_info(&ovf);
    assert!(info.contains("db-disk1.vmdk"), "{info}");
    let descriptor = std::fs::read_to_string(&ovf).unwrap();
    assert!(descriptor.contains("vmw:value=\"efi\"") && descriptor.contains("E1000"));

    // a setting the profile cannot express is bad input: exit 2, nothing left
    let (code, _, stderr) = kiln!(
        "export",
        &src,
        "-f",
        "ova",
        "-o",
        &out.join("vb.ova"),
        "--profile",
        "virtualbox",
        "--firmware",
        "efi"
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("EFI"), "{stderr}");
    assert_eq!(
        listing(&out),
        ["db-disk1.vmdk", "db.mf", "db.ovf", "web.ova"]
    );

    // damage: a flipped byte in the OVF's disk, a wrong .mf digest
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["db-disk1.vmdk", "db.mf", "db.ovf"] {
        std::fs::copy(out.join(f), broken.join(f)).unwrap();
    }
    let bovf = broken.join("db.ovf");
    let disk_len = std::fs::metadata(broken.join("db-disk1.vmdk"))
        .unwrap()
        .len();
    flip_byte(&broken.join("db-disk1.vmdk"), disk_len / 2);
    let p = verify_problems(&bovf);
    assert!(
        p.contains("`db-disk1.vmdk`: SHA256") && p.contains("the manifest says"),
        "{p}"
    );
    flip_byte(&broken.join("db-disk1.vmdk"), disk_len / 2);
    let mf = std::fs::read_to_string(broken.join("db.mf")).unwrap();
    let first = mf.find("= ").unwrap() + 2;
    let mut wrong = mf.clone();
    wrong.replace_range(first..first + 4, "0000");
    std::fs::write(broken.join("db.mf"), wrong).unwrap();
    let p = verify_problems(&bovf);
    assert!(p.contains("`db.ovf`: SHA256"), "{p}");
    std::fs::write(broken.join("db.mf"), &mf).unwrap();
    std::fs::remove_file(broken.join("db-disk1.vmdk")).unwrap();
    let p = verify_problems(&bovf);
    assert!(p.contains("not in the package"), "{p}");

    // damage to the OVA: a flipped byte in the disk member, a truncation,
    // members in the wrong order
    let ova_len = std::fs::metadata(&ova).unwrap().len();
    let flipped = dir.path().join("flipped.ova");
    std::fs::copy(&ova, &flipped).unwrap();
    flip_byte(&flipped, ova_len / 2);
    let p = verify_problems(&flipped);
    assert!(
        p.contains("web-disk1.vmdk") && p.contains("the manifest says"),
        "{p}"
    );
    let truncated = dir.path().join("truncated.ova");
    std::fs::write(
        &truncated,
        &std::fs::read(&ova).unwrap()[..(ova_len / 2) as usize + 100],
    )
    .unwrap();
    let p = verify_problems(&truncated);
    assert!(p.contains("truncated"), "{p}");
    std::fs::write(&truncated, &std::fs::read(&ova).unwrap()[..200]).unwrap();
    let p = verify_problems(&truncated);
    assert!(p.contains("named like an OVA"), "{p}");
    let reordered = dir.path().join("reordered.ova");
    let st = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&reordered)
        .arg("-C")
        .arg(x.path())
        .args(["web-disk1.vmdk", "web.ovf", "web.mf"])
        .status()
        .unwrap();
    assert!(st.success());
    let p = verify_problems(&reordered);
    assert!(p.contains("the .ovf descriptor must come first"), "{p}");
    assert!(p.contains("right after the .ovf"), "{p}");
}

#[test]
fn gce_tarball_round_trips_and_verify_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_image(dir.path());
    let gce = dir.path().join("d-gce.tar.gz");
    let (code, _, stderr) = kiln!("export", &src, "-f", "gce", "-o", &gce);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = kiln!("verify", &gce);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("disk.raw is 1 GiB"), "{stdout}");
    let x = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&gce)
        .arg("-C")
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(listing(x.path()), ["disk.raw"]);
    assert!(same_content(&src, &x.path().join("disk.raw")));

    // not a whole GiB, an extra member (GNU tar, sparse, as GCE's docs say)
    let odd = tempfile::tempdir().unwrap();
    let raw = odd.path().join("disk.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    std::fs::write(odd.path().join("extra.txt"), "x").unwrap();
    for (members, want) in [
        (&["disk.raw"][..], "not a whole number of GiB"),
        (&["disk.raw", "extra.txt"][..], "exactly one member"),
    ] {
        let t = dir.path().join("odd.tar.gz");
        let st = Command::new("tar")
            .args(["--format=oldgnu", "-Sczf"])
            .arg(&t)
            .arg("-C")
            .arg(odd.path())
            .args(members)
            .status()
            .unwrap();
        assert!(st.success());
        let p = verify_problems(&t);
        assert!(p.contains(want), "{p}");
    }
    // a truncated tarball
    let bytes = std::fs::read(&gce).unwrap();
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    let (code, stdout, _) = kiln!("verify", &cut);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
}
