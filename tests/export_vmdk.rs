//! kiln's streamOptimized VMDK and GCE writers against real qemu-img, tar
//! and gzip: the outputs read back equal to the source (raw and qcow2
//! sources with random data, explicit zeros, holes, and a size that is not
//! a whole grain), their structure is what VMware specifies (own parser),
//! thread counts do not change the bytes, cancellation stops the write and
//! leaves nothing, and damaged sources are errors.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::export::gce;
use kiln::export::source::{Source, SourceError};
use kiln::export::vmdk::{self, VmdkError};
use kiln::util::cancel::Cancel;

fn run(program: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

macro_rules! sh {
    ($p:expr, $($a:expr),* $(,)?) => { run($p, &[$(std::ffi::OsStr::new($a)),*]) };
}

fn random(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

/// 40 MiB + 12 KiB (two grain tables' spans, not a whole grain): random
/// runs in both spans, explicit zeros (allocated), holes, random bytes in
/// the last partial grain.
const SIZE: u64 = (40 << 20) + 12 * 1024;

fn source_raw(dir: &Path) -> PathBuf {
    let path = dir.join("src.raw");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let put = |f: &mut std::fs::File, at: u64, data: &[u8]| {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(data).unwrap();
    };
    put(&mut f, 0, &random(&mut seed, 1 << 20));
    put(&mut f, (3 << 20) + 4096, &random(&mut seed, 100_000));
    put(&mut f, 8 << 20, &vec![0u8; 3 << 20]);
    // half a grain of text-like data, compressible
    put(&mut f, 12 << 20, &b"kiln ".repeat(6000));
    put(&mut f, 35 << 20, &random(&mut seed, 2 << 20));
    put(&mut f, SIZE - 3000, &random(&mut seed, 3000));
    f.sync_all().unwrap();
    path
}

fn to_qcow2(raw: &Path, extra: &[&str]) -> PathBuf {
    let out = raw.with_extension("qcow2");
    let mut args: Vec<&std::ffi::OsStr> = vec!["convert".as_ref(), "-O".as_ref(), "qcow2".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend([raw.as_os_str(), out.as_os_str()]);
    let o = run("qemu-img", &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn assert_ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// qemu-img info/check/compare and kiln's own parse of a written VMDK.
fn check_vmdk(path: &Path, source: &Path, stats: &vmdk::VmdkStats) {
    let info = sh!("qemu-img", "info", "--output=json", path);
    assert_ok(&info, "qemu-img info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "vmdk");
    assert_eq!(info["virtual-size"], SIZE);
    assert_eq!(
        info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    assert_ok(&sh!("qemu-img", "check", path), "qemu-img check");
    assert_ok(
        &sh!("qemu-img", "compare", source, path),
        "qemu-img compare",
    );

    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, stats.file_bytes);
    assert_eq!(&bytes[0..4], b"KDMV");
    let layout = vmdk::scan(&bytes[..]).unwrap();
    let h = layout.header;
    assert_eq!(h.version, 3);
    assert_eq!(h.flags, 0x30001);
    assert_eq!(h.grain_size, 128);
    assert_eq!(h.gtes_per_gt, 512);
    assert_eq!(h.gd_offset, vmdk::GD_AT_END);
    assert_eq!(h.capacity, SIZE / 512);
    assert!(layout.descriptor.contains("createType=\"streamOptimized\""));
    assert!(layout.descriptor.contains("ddb.adapterType = \"lsilogic\""));
    let footer = layout.footer.expect("a footer");
    assert_eq!(Some(footer.gd_offset), layout.gd_sector);
    assert_eq!(footer.capacity, h.capacity);
    assert!(layout.eos, "ends with the end-of-stream marker");
    assert_eq!(layout.grains, stats.grains_written);
    assert_eq!(layout.grain_tables, 2, "both 32 MiB spans hold data");
    let grains = SIZE.div_ceil(vmdk::GRAIN_BYTES);
    assert_eq!(stats.grains_written + stats.grains_skipped, grains);
    // 1 MiB + 2 + 1 (text) + 2 MiB + the last grain: 52 grains; the
    // explicit zeros and holes are not written
    assert_eq!(stats.grains_written, 16 + 2 + 1 + 32 + 1, "{stats:?}");
}

#[tokio::test]
async fn vmdk_from_raw_and_qcow2_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_raw(dir.path());
    let qcow2 = to_qcow2(&raw, &[]);
    let mut outputs = Vec::new();
    for (i, (src, threads)) in [(&raw, 1), (&raw, 3), (&qcow2, 2)].into_iter().enumerate() {
        // the same file name, so the descriptors are comparable
        let out_dir = dir.path().join(format!("out{i}"));
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("disk.vmdk");
        let stats = vmdk::write_stream_optimized(src, &out, Some(threads), &Cancel::new())
            .await
            .unwrap();
        check_vmdk(&out, &raw, &stats);
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(
        outputs[0] == outputs[1],
        "1 and 3 threads wrote different bytes"
    );
    assert!(
        outputs[0] == outputs[2],
        "raw and qcow2 sources wrote different bytes"
    );
}

#[tokio::test]
async fn source_reads_the_same_bytes_from_raw_and_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_raw(dir.path());
    let qcow2 = to_qcow2(&raw, &["-c"]);
    let mut a = Source::open(&raw).await.unwrap();
    let mut b = Source::open(&qcow2).await.unwrap();
    assert_eq!(a.virtual_size(), SIZE);
    assert_eq!(b.virtual_size(), SIZE);
    for at in [0, (3 << 20) + 1000, SIZE - 5000] {
        let (mut x, mut y) = (vec![1u8; 10_000], vec![2u8; 10_000]);
        a.read_at(at, &mut x).unwrap();
        b.read_at(at, &mut y).unwrap();
        assert!(x == y, "bytes at {at} differ");
    }
    let expected = std::fs::read(&raw).unwrap();
    let mut x = vec![0u8; 4096];
    a.read_at(SIZE - 3000, &mut x).unwrap();
    assert_eq!(&x[..3000], &expected[(SIZE - 3000) as usize..]);
    assert!(
        x[3000..].iter().all(|&b| b == 0),
        "past the end reads as zeros"
    );
}

#[tokio::test]
async fn cancelled_write_stops_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.raw");
    let mut seed = 7u64;
    std::fs::write(&src, random(&mut seed, 96 << 20)).unwrap();
    let out = dir.path().join("out.vmdk");

    let cancel = Cancel::new();
    cancel.cancel();
    let e = vmdk::write_stream_optimized(&src, &out, Some(1), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, VmdkError::Cancelled(_)), "{e:?}");

    let cancel = Cancel::new();
    let (watch, c) = (out.clone(), cancel.clone());
    let canceller = std::thread::spawn(move || {
        // cancel as soon as the writer has started writing
        while !watch.exists() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        c.cancel();
    });
    let e = vmdk::write_stream_optimized(&src, &out, Some(1), &cancel)
        .await
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(e, VmdkError::Cancelled(_)), "{e:?}");
    assert!(!out.exists(), "the partial file is removed");
}

#[tokio::test]
async fn damaged_sources_are_errors_not_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_raw(dir.path());
    let out = dir.path().join("out.vmdk");

    // a truncated qcow2 (qemu reads its missing clusters as zeros)
    let qcow2 = to_qcow2(&raw, &[]);
    let len = std::fs::metadata(&qcow2).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&qcow2)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = vmdk::write_stream_optimized(&qcow2, &out, None, &Cancel::new())
        .await
        .unwrap_err();
    let msg = format!("{:#}", anyhow::Error::from(e));
    assert!(
        msg.contains("damaged") || msg.contains("truncated"),
        "{msg}"
    );
    assert!(!out.exists());

    // a compressed qcow2 whose cluster data is damaged: qemu-nbd's read
    // fails (qemu stores random data uncompressed: use text)
    let text_raw = dir.path().join("text.raw");
    let text: String = (0..400_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&text_raw, text.as_bytes()).unwrap();
    let qcow2 = to_qcow2(&text_raw, &["-c"]);
    let len = std::fs::metadata(&qcow2).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&qcow2)
        .unwrap();
    f.seek(SeekFrom::Start(len * 3 / 5)).unwrap();
    // 0xff: a deflate block of the reserved type, a decompression error
    f.write_all(&[0xff; 64 << 10]).unwrap();
    drop(f);
    let e = vmdk::write_stream_optimized(&qcow2, &out, None, &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        matches!(e, VmdkError::Source(SourceError::Nbd { .. })),
        "{e:?}"
    );
    assert!(!out.exists());

    // a qcow2 header pointing its L1 table far beyond the file
    let qcow2 = to_qcow2(&raw, &[]);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&qcow2)
        .unwrap();
    f.seek(SeekFrom::Start(40)).unwrap();
    f.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
    drop(f);
    let e = Source::open(&qcow2).await.unwrap_err();
    assert!(e.to_string().contains("qemu-img check"), "{e}");

    // an empty file
    let empty = dir.path().join("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    let e = Source::open(&empty).await.unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

#[tokio::test]
async fn gce_tar_gz_holds_a_whole_gib_disk_raw_equal_to_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_raw(dir.path());
    let qcow2 = to_qcow2(&raw, &[]);
    let out = dir.path().join("image.tar.gz");
    let stats = gce::write(&qcow2, &out, Some(2), &Cancel::new(), None)
        .await
        .unwrap();
    assert_eq!(stats.raw_bytes, 1 << 30);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), stats.file_bytes);
    // 5 MiB of random data, ~1 KiB per MiB of zeros
    assert!(stats.file_bytes < (5 << 20) + (2 << 20), "{stats:?}");

    let list = sh!("tar", "-tzvf", &out);
    assert_ok(&list, "tar -tzvf");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 1, "{list}");
    assert!(lines[0].ends_with(" disk.raw"), "{list}");
    assert!(lines[0].contains(&(1u64 << 30).to_string()), "{list}");
    assert_ok(&sh!("gzip", "-t", &out), "gzip -t");

    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    assert_ok(&sh!("tar", "-xzf", &out, "-C", &x), "tar -xzf");
    let disk = x.join("disk.raw");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1 << 30);
    assert_ok(
        &sh!("qemu-img", "compare", "-f", "raw", "-F", "raw", &raw, &disk),
        "qemu-img compare",
    );
    // the oldgnu header GCE asks for
    let head = sh!(
        "sh",
        "-c",
        &format!("gzip -dc {} | head -c 512", out.display())
    );
    assert_eq!(&head.stdout[257..265], b"ustar  \0");
}
