//! The `qemu-img` wrappers against the real qemu-img, on small images in
//! temp folders.

use std::path::{Path, PathBuf};

use kiln::disk::img::{self, Compression, ConvertOptions, Format, ImgError};
use kiln::util::task::TaskError;

const MIB: u64 = 1 << 20;

/// An 8 MiB raw disk with a few non-zero blocks.
fn raw_disk(dir: &Path) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("disk.raw");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(8 * MIB).unwrap();
    for (i, at) in [0, 3 * MIB + 17, 8 * MIB - 4096].into_iter().enumerate() {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&vec![0x41 + i as u8; 4096]).unwrap();
    }
    path
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn conversions_are_detected_and_equal() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    assert_eq!(img::detect_format(&raw).unwrap(), Format::Raw);
    let info = img::info(&raw).await.unwrap();
    assert_eq!((info.format.as_str(), info.virtual_size), ("raw", 8 * MIB));

    let mut zstd = ConvertOptions::to(Format::Qcow2);
    zstd.compress = Some(Compression::Zstd);
    let mut stream = ConvertOptions::to(Format::Vmdk);
    stream.options = vec!["subformat=streamOptimized".into()];
    let mut fixed_vhd = ConvertOptions::to(Format::Vpc);
    fixed_vhd.options = vec!["subformat=fixed".into()];
    let cases = [
        ("d.qcow2", zstd, Format::Qcow2, "qcow2"),
        ("d.vmdk", stream, Format::Vmdk, "vmdk"),
        (
            "d.vhdx",
            ConvertOptions::to(Format::Vhdx),
            Format::Vhdx,
            "vhdx",
        ),
        (
            "dyn.vhd",
            ConvertOptions::to(Format::Vpc),
            Format::Vpc,
            "vpc",
        ),
        // a fixed VHD has its only signature in the footer
        ("fixed.vhd", fixed_vhd, Format::Vpc, "vpc"),
    ];
    for (name, opts, format, qemu_name) in cases {
        let out = dir.path().join(name);
        img::convert(&raw, Some("raw"), &out, &opts).await.unwrap();
        assert_eq!(img::detect_format(&out).unwrap(), format, "{name}");
        assert_eq!(img::info(&out).await.unwrap().format, qemu_name, "{name}");
        assert!(img::compare(&raw, &out).await.unwrap(), "{name} differs");
    }
    // a VMDK text descriptor (the flat subformat's first file); converting
    // to it is refused: its extent file would keep the temporary name
    let mut flat = ConvertOptions::to(Format::Vmdk);
    flat.options = vec!["subformat=monolithicFlat".into()];
    let desc = dir.path().join("flat.vmdk");
    let e = img::convert(&raw, None, &desc, &flat).await.unwrap_err();
    assert!(e.to_string().contains("several files"), "{e}");
    let made = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
        ])
        .arg(&desc)
        .arg("1M")
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(img::detect_format(&desc).unwrap(), Format::Vmdk);
    assert_eq!(img::info(&desc).await.unwrap().virtual_size, MIB);

    // the zstd qcow2 really is compressed and clean
    let q = dir.path().join("d.qcow2");
    assert!(img::check(&q).await.unwrap().is_clean());
    // no temporary names left behind
    assert!(
        names(dir.path()).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        names(dir.path())
    );

    // a changed byte makes them differ
    let other = dir.path().join("other.raw");
    std::fs::copy(&raw, &other).unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&other)
            .unwrap();
        f.seek(SeekFrom::Start(5 * MIB)).unwrap();
        f.write_all(b"x").unwrap();
    }
    assert!(!img::compare(&q, &other).await.unwrap());
}

#[tokio::test]
async fn failed_conversion_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.raw");
    let out = dir.path().join("out.qcow2");
    // without a format, kiln detects it (qemu-img never guesses): the
    // missing file is found missing before qemu-img runs
    let e = img::convert(&missing, None, &out, &ConvertOptions::to(Format::Qcow2))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ImgError::Io { path, .. } if path == &missing),
        "{e}"
    );
    let e = img::convert(
        &missing,
        Some("raw"),
        &out,
        &ConvertOptions::to(Format::Qcow2),
    )
    .await
    .unwrap_err();
    let ImgError::Tool(TaskError::Failed {
        command, stderr, ..
    }) = &e
    else {
        panic!("{e}");
    };
    assert!(
        command.starts_with("qemu-img convert -f raw -O qcow2 ") && command.contains("missing.raw"),
        "{command}"
    );
    assert!(stderr.contains("missing.raw"), "{stderr}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[tokio::test]
async fn overlays_and_resizing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let base = dir.path().join("base.qcow2");
    img::convert(&raw, None, &base, &ConvertOptions::to(Format::Qcow2))
        .await
        .unwrap();

    // the backing path is recorded resolved (absolute, no `..`)
    let overlay = dir.path().join("sub/overlay.qcow2");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let roundabout = dir.path().join("sub/../base.qcow2");
    img::create_overlay(&roundabout, "qcow2", &overlay, Some(16 * MIB))
        .await
        .unwrap();
    let info = img::info(&overlay).await.unwrap();
    assert_eq!(info.virtual_size, 16 * MIB);
    assert_eq!(
        info.backing_file.as_deref(),
        Some(std::fs::canonicalize(&base).unwrap().as_path())
    );
    assert_eq!(info.backing_format.as_deref(), Some("qcow2"));
    // the larger overlay shows the base's bytes, then zeros
    assert!(img::compare(&base, &overlay).await.unwrap());

    img::resize(&overlay, 32 * MIB).await.unwrap();
    assert_eq!(img::info(&overlay).await.unwrap().virtual_size, 32 * MIB);
    img::resize(&overlay, 32 * MIB).await.unwrap();
    let e = img::resize(&overlay, 8 * MIB).await.unwrap_err();
    assert!(e.to_string().contains("will not shrink"), "{e}");
    assert_eq!(img::info(&overlay).await.unwrap().virtual_size, 32 * MIB);
    img::resize(&raw, 9 * MIB).await.unwrap();
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 9 * MIB);

    let e = img::create_overlay(&dir.path().join("nope.qcow2"), "qcow2", &overlay, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope.qcow2"), "{e}");
}

#[tokio::test]
async fn check_is_for_formats_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let e = img::check(&raw).await.unwrap_err();
    assert!(e.to_string().contains("only qcow2, vmdk and vhdx"), "{e}");
    let vhdx = dir.path().join("d.vhdx");
    img::convert(&raw, None, &vhdx, &ConvertOptions::to(Format::Vhdx))
        .await
        .unwrap();
    assert!(img::check(&vhdx).await.unwrap().is_clean());
}

#[tokio::test]
async fn corruption_is_reported_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let q = dir.path().join("c.qcow2");
    img::convert(&raw, None, &q, &ConvertOptions::to(Format::Qcow2))
        .await
        .unwrap();
    // qcow2 header: refcount_table_offset at byte 48 (big-endian u64); the
    // table's first entry points at the first refcount block. Zero that
    // block: every allocated cluster now has refcount 0 (a corruption).
    let bytes = std::fs::read(&q).unwrap();
    let be = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    let table = be(48) as usize;
    let block = be(table) as usize;
    let mut broken = bytes.clone();
    broken[block..block + 65536].fill(0);
    std::fs::write(&q, broken).unwrap();
    let report = img::check(&q).await.unwrap();
    assert!(report.corruptions > 0, "{report:?}");
    assert!(!report.is_clean());
}

#[tokio::test]
async fn info_works_on_an_image_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path());
    let q = dir.path().join("busy.qcow2");
    img::convert(&raw, None, &q, &ConvertOptions::to(Format::Qcow2))
        .await
        .unwrap();
    // qemu-io holds the image open for writing (and locked) while it waits
    // for commands on stdin; its prompt shows once the image is open
    let mut holder = tokio::process::Command::new("qemu-io")
        .args(["-f", "qcow2"])
        .arg(&q)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = holder.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("qemu-io>") {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), stdout.read(&mut buf))
            .await
            .expect("qemu-io prompt")
            .unwrap();
        assert!(n > 0, "qemu-io ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let plain = std::process::Command::new("qemu-img")
        .arg("info")
        .arg(&q)
        .output()
        .unwrap();
    assert!(!plain.status.success(), "qemu-io did not lock the image");
    assert!(String::from_utf8_lossy(&plain.stderr).contains("lock"));
    assert_eq!(img::info(&q).await.unwrap().virtual_size, 8 * MIB);
    holder.kill().await.unwrap();
}
