//! Every parser kiln runs on untrusted disk bytes, driven with thousands of
//! mutated inputs each (tests/support/fuzz.rs: deterministic, a time budget
//! per case, an address-space limit for the whole process): no panic, no
//! hang, no allocation bomb. The seeds are real: images made by qemu-img,
//! sfdisk, GNU tar and kiln's own writers in this test.
//!
//! Targets: qemu-img info / check / map JSON, image header checks and
//! format detection, the VHD footer, the VMDK header and stream walker,
//! the tar reader, the OVA scan, OVF descriptor and manifest checks, the
//! GCE tarball check (on the tar and on the gzip bytes), the raw-disk
//! rules, the GPT/MBR parser and the cpio/initramfs lister.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln::aws::{initramfs, preflight};
use kiln::disk::img;
use kiln::export::verify::{self, package, tarball};
use kiln::export::{ova, ovf, source, vhd, vmdk};
use support::fuzz::{fuzz, limit_memory};

/// Mutated cases per target.
const CASES: usize = 3000;
/// The longest one case may take (debug build, a shared machine).
const PER_CASE: Duration = Duration::from_secs(2);

/// Sets the address-space limit once for the whole test binary.
fn limited() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| limit_memory(3 << 30));
}

fn run(program: &str, args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    out.stdout
}

/// The images and packages the seeds come from, made on first use in a
/// folder of the test's own (removed at its end).
struct Fixtures {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

/// Writes `script` to `sfdisk`'s input to label the file `name`.
fn sfdisk(dir: &Path, name: &str, size: u64, script: &[u8]) {
    std::fs::File::create(dir.join(name))
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut sf = Command::new("sfdisk")
        .args(["--quiet", name])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sf.stdin.take().unwrap().write_all(script).unwrap();
    assert!(sf.wait().unwrap().success());
}

impl Fixtures {
    fn new() -> Fixtures {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        Fixtures { _tmp: tmp, dir }
    }

    /// Makes `name` (and what it is made from) unless it exists.
    fn make(&self, name: &str) {
        let dir = &self.dir;
        if dir.join(name).exists() {
            return;
        }
        let qemu_img = |args: &[&str]| {
            self.make("disk.raw");
            run("qemu-img", args, dir);
        };
        let kiln = |format: &str, out: &str| {
            self.make("disk.raw");
            if let Some(parent) = Path::new(out).parent() {
                std::fs::create_dir_all(dir.join(parent)).unwrap();
            }
            run(
                env!("CARGO_BIN_EXE_kiln"),
                &["export", "disk.raw", "-f", format, "-o", out],
                dir,
            );
        };
        match name {
            // a 4 MiB disk with a GPT (sfdisk) and data
            "disk.raw" => {
                sfdisk(
                    dir,
                    name,
                    4 << 20,
                    b"label: gpt\nsize=1MiB, type=uefi\ntype=linux\n",
                );
                let mut bytes = std::fs::read(dir.join(name)).unwrap();
                for (i, b) in bytes.iter_mut().enumerate().skip(2 << 20).step_by(97) {
                    *b = (i % 251) as u8 + 1;
                }
                std::fs::write(dir.join(name), &bytes).unwrap();
            }
            "mbr.raw" => sfdisk(
                dir,
                name,
                2 << 20,
                b"label: dos\nsize=1MiB, type=83, bootable\ntype=82\n",
            ),
            "disk.qcow2" => qemu_img(&["convert", "-f", "raw", "-O", "qcow2", "disk.raw", name]),
            "sparse.vmdk" => qemu_img(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vmdk",
                "-o",
                "subformat=monolithicSparse",
                "disk.raw",
                name,
            ]),
            "disk.vhdx" => qemu_img(&["convert", "-f", "raw", "-O", "vhdx", "disk.raw", name]),
            "fixed.vhd" => qemu_img(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=fixed,force_size=on",
                "disk.raw",
                name,
            ]),
            "dynamic.vhd" => qemu_img(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=dynamic",
                "disk.raw",
                name,
            ]),
            "overlay.qcow2" => {
                self.make("disk.qcow2");
                qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    "disk.qcow2",
                    "-F",
                    "qcow2",
                    name,
                ])
            }
            "external.qcow2" => qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "data_file=data.bin",
                name,
                "1M",
            ]),
            "flat.vmdk" => {
                self.make("disk.raw");
                std::fs::write(
                    dir.join(name),
                    "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                 createType=\"monolithicFlat\"\n\nRW 8192 FLAT \"disk.raw\" 0\n",
                )
                .unwrap()
            }
            // kiln's own writers
            "stream.vmdk" => kiln("vmdk", name),
            "disk.ova" => kiln("ova", name),
            "ovf/disk.ovf" | "ovf/disk.mf" => kiln("ovf", "ovf/disk.ovf"),
            other => panic!("no fixture {other}"),
        }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        self.make(name);
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn head(&self, name: &str, n: usize) -> Vec<u8> {
        let mut b = self.read(name);
        b.truncate(n);
        b
    }

    fn tail(&self, name: &str, n: usize) -> Vec<u8> {
        let b = self.read(name);
        b[b.len().saturating_sub(n)..].to_vec()
    }

    /// `qemu-img ARGS` (on the fixture named last), its standard output.
    fn qemu_img_json(&self, args: &[&str]) -> Vec<u8> {
        self.make(args.last().expect("a file"));
        run("qemu-img", args, &self.dir)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn qemu_img_json_parsers() {
    limited();
    let f = Fixtures::new();
    let mut infos = Vec::new();
    for (fmt, name) in [
        ("raw", "disk.raw"),
        ("qcow2", "disk.qcow2"),
        ("qcow2", "overlay.qcow2"),
        ("qcow2", "external.qcow2"),
        ("vmdk", "sparse.vmdk"),
        ("vmdk", "stream.vmdk"),
        ("vmdk", "flat.vmdk"),
        ("vhdx", "disk.vhdx"),
        ("vpc", "dynamic.vhd"),
    ] {
        infos.push(f.qemu_img_json(&["info", "--output=json", "-f", fmt, name]));
    }
    fuzz("qemu-img-info", &infos, CASES, PER_CASE, |b| {
        if let Ok(info) = img::parse_info(&text(b)) {
            let _ = img::info_problems(&info);
        }
    });
    let checks = vec![
        f.qemu_img_json(&["check", "--output=json", "-f", "qcow2", "disk.qcow2"]),
        f.qemu_img_json(&["check", "--output=json", "-f", "vmdk", "sparse.vmdk"]),
    ];
    fuzz("qemu-img-check", &checks, CASES, PER_CASE, |b| {
        let _ = img::parse_check(&text(b));
    });
    let maps = vec![
        f.qemu_img_json(&["map", "--output=json", "-f", "qcow2", "disk.qcow2"]),
        f.qemu_img_json(&["map", "--output=json", "-f", "qcow2", "overlay.qcow2"]),
        f.qemu_img_json(&["map", "--output=json", "-f", "vmdk", "sparse.vmdk"]),
    ];
    fuzz("qemu-img-map", &maps, CASES, PER_CASE, |b| {
        if let Ok(extents) = source::parse_map(&text(b)) {
            let _ = source::beyond_end(&extents, 1 << 20);
            let _ = source::data_blocks(&extents, 1 << 20);
        }
    });
}

#[test]
fn image_headers_and_format_detection() {
    limited();
    let f = Fixtures::new();
    let seeds: Vec<Vec<u8>> = [
        "disk.qcow2",
        "overlay.qcow2",
        "external.qcow2",
        "sparse.vmdk",
        "stream.vmdk",
        "flat.vmdk",
        "disk.vhdx",
        "dynamic.vhd",
        "disk.raw",
    ]
    .iter()
    .map(|n| f.head(n, img::DETECT_BYTES))
    .collect();
    let tails: Vec<Vec<u8>> = ["fixed.vhd", "dynamic.vhd", "disk.raw"]
        .iter()
        .map(|n| f.tail(n, img::DETECT_BYTES))
        .collect();
    let mut i = 0;
    fuzz("image-header", &seeds, CASES, PER_CASE, |b| {
        i += 1;
        let format = img::detect_format_from(b, &tails[i % tails.len()]);
        for fmt in [format, img::Format::Qcow2, img::Format::Vmdk] {
            let _ = img::header_problem(fmt, b);
        }
        let _ = verify::classify(b);
        let _ = verify::raw_problems(b.len() as u64, b, false);
    });
}

#[test]
fn vhd_footers() {
    limited();
    let f = Fixtures::new();
    let seeds = vec![
        f.tail("fixed.vhd", vhd::FOOTER_BYTES),
        f.tail("dynamic.vhd", vhd::FOOTER_BYTES),
        f.head("dynamic.vhd", vhd::FOOTER_BYTES),
    ];
    fuzz("vhd-footer", &seeds, CASES * 2, PER_CASE, |b| {
        let mut footer = [0u8; vhd::FOOTER_BYTES];
        let n = b.len().min(footer.len());
        footer[..n].copy_from_slice(&b[..n]);
        if let Ok(parsed) = vhd::parse_footer(&footer) {
            let _ = vhd::azure_problems(&parsed, b.len() as u64 * 4096);
        }
    });
}

#[test]
fn vmdk_headers_and_streams() {
    limited();
    let f = Fixtures::new();
    let stream = f.read("stream.vmdk");
    let seeds = vec![
        f.head("stream.vmdk", 512),
        f.head("sparse.vmdk", 512),
        f.tail("stream.vmdk", 1024),
    ];
    fuzz("vmdk-header", &seeds, CASES, PER_CASE, |b| {
        let _ = vmdk::Header::parse(b);
    });
    fuzz("vmdk-stream", &[stream], CASES, PER_CASE, |b| {
        let _ = vmdk::scan(b);
    });
}

/// A tar (GNU format, long names) of small members, by the tar crate.
fn gnu_tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A GNU tar `-S` (oldgnu sparse) of a `disk.raw` of `size` bytes with a
/// little data in it, made by GNU tar.
fn sparse_tar(dir: &Path, size: u64, gzip: bool) -> Vec<u8> {
    let work = dir.join(format!("sparse-{size}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let disk = work.join("disk.raw");
    let file = std::fs::File::create(&disk).unwrap();
    file.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    for at in [0u64, 8192, size / 2] {
        file.write_all_at(b"some data\x00\x01", at).unwrap();
    }
    drop(file);
    let out = if gzip { "disk.tar.gz" } else { "disk.tar" };
    let flags = if gzip { "-Sczf" } else { "-Scf" };
    run("tar", &["--format=oldgnu", flags, out, "disk.raw"], &work);
    std::fs::read(work.join(out)).unwrap()
}

#[test]
fn tar_reader_and_gce_checks() {
    limited();
    let f = Fixtures::new();
    let long = "d/".repeat(70) + "disk.raw";
    let tars = vec![
        sparse_tar(&f.dir, 1 << 20, false),
        sparse_tar(&f.dir, 4 << 40, false),
        gnu_tar(&[("disk.raw", &[1u8; 3000][..]), (long.as_str(), b"x")]),
        f.read("disk.ova"),
    ];
    fuzz("tar-reader", &tars, CASES, PER_CASE, |b| {
        let mut r = tarball::TarReader::new(b);
        for _ in 0..64 {
            match r.next_member() {
                Ok(Some(_)) => {
                    let _ = std::io::copy(&mut r, &mut std::io::sink());
                }
                _ => break,
            }
        }
    });
    // the GCE check on the tar inside (gzip'd per case) and on gzip bytes
    fuzz("gce-tar", &tars[..3], CASES, PER_CASE, |b| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b).unwrap();
        let gz = gz.finish().unwrap();
        let mut report = verify::Report::default();
        package::check_gce(&gz[..], gz.len() as u64, &mut report);
    });
    let gzips = vec![
        sparse_tar(&f.dir, 1 << 30, true),
        sparse_tar(&f.dir, 4 << 40, true),
    ];
    fuzz("gce-gzip", &gzips, CASES, PER_CASE, |b| {
        let mut report = verify::Report::default();
        package::check_gce(b, b.len() as u64, &mut report);
    });
}

#[test]
fn ova_scan_ovf_and_manifest() {
    limited();
    let f = Fixtures::new();
    let ova = f.read("disk.ova");
    fuzz(
        "ova-scan",
        std::slice::from_ref(&ova),
        CASES,
        PER_CASE,
        |b| {
            let _ = package::scan_ova_stream(b, None);
        },
    );
    let descriptor = f.read("ovf/disk.ovf");
    fuzz("ovf-check", &[descriptor], CASES, PER_CASE, |b| {
        let _ = ovf::check(&text(b));
    });
    let mf = f.read("ovf/disk.mf");
    fuzz("ova-manifest", &[mf], CASES, PER_CASE, |b| {
        let _ = ova::parse_manifest(&text(b));
    });
    let capacities: Vec<Vec<u8>> = ["4194304", "4 byte * 2^20", "byte * 10^9", "1 byte"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    fuzz("ovf-capacity", &capacities, CASES, PER_CASE, |b| {
        let t = text(b);
        let (n, units) = t.split_once(' ').unwrap_or((&t, ""));
        let _ = ovf::capacity_bytes(n, Some(units));
    });
}

#[test]
fn partition_tables() {
    limited();
    let f = Fixtures::new();
    let seeds = vec![f.head("disk.raw", 20 << 10), f.head("mbr.raw", 1024)];
    fuzz("gpt-mbr", &seeds, CASES, PER_CASE, |b| {
        let _ = preflight::parse_table(b);
    });
}

#[test]
fn initramfs_listing() {
    limited();
    let f = Fixtures::new();
    let mut cpio = Vec::new();
    initramfs::write_newc(
        &mut cpio,
        &[
            ("init", b"#!/bin/sh\n"),
            (
                "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/net/ena/ena.ko",
                &[7u8; 700],
            ),
        ],
    )
    .unwrap();
    let mut micro = Vec::new();
    initramfs::write_newc(
        &mut micro,
        &[("kernel/x86/microcode/GenuineIntel.bin", &[1u8; 100])],
    )
    .unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&cpio).unwrap();
        e.finish().unwrap()
    };
    let plain = f.dir.join("initrd.cpio");
    std::fs::write(&plain, &cpio).unwrap();
    let zst = run("zstd", &["-q", "-c", "initrd.cpio"], &f.dir);
    let mut early = micro.clone();
    early.extend_from_slice(&gz);
    let seeds = vec![cpio, gz, zst, early];
    fuzz("initramfs", &seeds, CASES, PER_CASE, |b| {
        let mut names = 0usize;
        let _ = initramfs::scan(b, |_| names += 1);
        let _ = initramfs::detect(b);
    });
}
