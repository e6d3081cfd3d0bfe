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
        for format in ["vhdx", "raw"] {
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
