//! kiln's AWS side against a real moto server plus the VM Import/Export
//! peer (tests/peers/vmie/server.py): the full `kiln ami` flow and its
//! failure cases. Fails (never skips) when `.venv` is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kiln::ami::{BootMode, DiskFormat};
use kiln::aws::import::{self, ImportRequest};
use kiln::aws::poll::{self, PollOptions};
use kiln::aws::upload::{self, UploadRequest};
use kiln::aws::AwsError;
use support::moto::{MotoServer, ACCESS_KEY, REGION};

/// A secret key moto accepts and no log may ever show.
const SECRET: &str = "kilnTestSecret/DoNotLog/7f3a9c1e55";
const BUCKET: &str = "kiln-images";
const MIB: u64 = 1 << 20;

fn fast_poll() -> PollOptions {
    PollOptions {
        interval: Duration::from_millis(20),
        stall_polls: 50,
    }
}

/// A small disk that passes pre-flight: an MBR with one Linux partition at
/// 1 MiB holding an ext4 filesystem made by `mke2fs -d` from a folder (no
/// root needed) with what VM Import looks for.
fn make_disk(dir: &Path, size_mib: u64) -> PathBuf {
    make_disk_with(dir, size_mib, &[
        ("etc/fstab", "UUID=0a1b2c3d-0000-4000-8000-000000000001 / ext4 defaults 0 1\n"),
        ("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"),
        ("boot/vmlinuz-6.1.0-13-amd64", "kernel"),
        ("boot/grub/grub.cfg", "menuentry 'Debian' { linux /boot/vmlinuz-6.1.0-13-amd64 root=UUID=0a1b2c3d-0000-4000-8000-000000000001 }\n"),
        ("lib/modules/6.1.0-13-amd64/modules.dep", "kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko\nkernel/drivers/net/ethernet/amazon/ena/ena.ko:\nkernel/drivers/block/xen-blkfront.ko:\n"),
        ("lib/modules/6.1.0-13-amd64/modules.builtin", "kernel/drivers/block/virtio_blk.ko\n"),
        ("etc/network/interfaces", "source /etc/network/interfaces.d/*\nauto eth0\niface eth0 inet dhcp\n"),
        ("etc/cloud/cloud.cfg", "datasource_list: [ NoCloud, Ec2 ]\n"),
    ], &[(
        "boot/initrd.img-6.1.0-13-amd64",
        initrd(&["nvme/host/nvme.ko", "net/ethernet/amazon/ena/ena.ko", "block/xen-blkfront.ko"]),
    )])
}

/// An early-microcode cpio archive padded to 512 bytes.
fn microcode() -> Vec<u8> {
    let mut out = Vec::new();
    kiln::aws::initramfs::write_newc(
        &mut out,
        &[("kernel/x86/microcode/GenuineIntel.bin", &[0xAB; 300])],
    )
    .unwrap();
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// An initramfs as Debian writes it: an uncompressed early-microcode cpio
/// padded to 512 bytes, then a gzip-compressed cpio with `init` and the
/// given modules (paths under `kernel/drivers/`).
fn initrd(modules: &[&str]) -> Vec<u8> {
    use std::io::Write;
    let out = microcode();
    let paths: Vec<String> = modules
        .iter()
        .map(|m| format!("usr/lib/modules/6.1.0-13-amd64/kernel/drivers/{m}"))
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![("init", b"#!/bin/sh\n")];
    files.extend(paths.iter().map(|p| (p.as_str(), &b"\x7fELF"[..])));
    let mut main = Vec::new();
    kiln::aws::initramfs::write_newc(&mut main, &files).unwrap();
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    gz.write_all(&main).unwrap();
    gz.finish().unwrap()
}

/// The same layout with `files` (path, text) and `binary` (path, bytes)
/// in the root filesystem.
fn make_disk_with(
    dir: &Path,
    size_mib: u64,
    files: &[(&str, &str)],
    binary: &[(&str, Vec<u8>)],
) -> PathBuf {
    let tree = dir.join("tree");
    let texts = files.iter().map(|(p, c)| (*p, c.as_bytes()));
    for (path, content) in texts.chain(binary.iter().map(|(p, c)| (*p, c.as_slice()))) {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    // some content so the disk is not all zeros
    let noise: Vec<u8> = (0..(2 * MIB as usize))
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/payload"), &noise).unwrap();
    let part = dir.join("part.img");
    let part_mib = size_mib - 1;
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "root", "-d"])
        .arg(&tree)
        .arg(&part)
        .arg(format!("{part_mib}M"))
        .output()
        .expect("run mke2fs");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut disk = vec![0u8; MIB as usize];
    // MBR partition entry 1: type 0x83, LBA 2048, all remaining sectors
    let e = &mut disk[446..462];
    e[4] = 0x83;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&((part_mib * MIB / 512) as u32).to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xAA;
    disk.extend(std::fs::read(&part).unwrap());
    let raw = dir.join("disk.raw");
    std::fs::write(&raw, disk).unwrap();
    raw
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `qemu-img compare` (formats by their magic bytes, a fixed VHD's footer
/// included): true when the guest sees the same bytes.
async fn same_disk(a: &Path, b: &Path) -> bool {
    kiln::disk::img::compare(a, b)
        .await
        .expect("qemu-img compare")
}

/// Runs the kiln binary against the peer with a distinctive secret key,
/// and asserts the key appears nowhere in what it printed.
/// kiln with the peer's endpoint and test credentials, nothing else of
/// this host's AWS configuration.
fn kiln_command(peer: &MotoServer, work: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work)
        .env("KILN_CACHE_DIR", work.join("cache"))
        .env("AWS_ENDPOINT_URL", peer.endpoint())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    cmd
}

fn kiln(peer: &MotoServer, work: &Path, args: &[&str]) -> Output {
    let out = kiln_command(peer, work, args).output().expect("run kiln");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(SECRET),
        "the secret key leaked into kiln's output:\n{all}"
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn iam_role(peer: &MotoServer) {
    let conf = aws_sdk_iam::config::Builder::new()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new(REGION))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            ACCESS_KEY, SECRET, None, None, "test",
        ))
        .endpoint_url(peer.endpoint())
        .build();
    kiln::aws::role::setup(&aws_sdk_iam::Client::from_conf(conf), "vmimport", BUCKET)
        .await
        .expect("create the vmimport role");
}

fn import_request(key: &str, format: DiskFormat) -> ImportRequest {
    ImportRequest {
        bucket: BUCKET.into(),
        key: key.into(),
        format,
        architecture: "x86_64".into(),
        boot_mode: BootMode::LegacyBios,
        encrypt: None,
        role_name: "vmimport".into(),
        task_tags: vec![("suite".into(), "aws_vmie".into())],
        description: "kiln test".into(),
    }
}

async fn put_file(s3: &aws_sdk_s3::Client, key: &str, path: &Path) {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(
            aws_sdk_s3::primitives::ByteStream::from_path(path)
                .await
                .unwrap(),
        )
        .send()
        .await
        .expect("put object");
}

/// image → upload → import → rename → copy to two regions → share → export
/// back → the downloaded disk equals the uploaded one.
#[tokio::test(flavor = "multi_thread")]
async fn full_flow_import_rename_copy_share_export() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 24);
    let image = tmp.path().join("web.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);

    let out = kiln(
        &peer,
        tmp.path(),
        &["ami", "setup-role", "--bucket", BUCKET],
    );
    assert!(out.status.success(), "{}", text(&out));

    let org = "arn:aws:organizations::123456789012:organization/o-abc123def4";
    let ou = "arn:aws:organizations::123456789012:ou/o-abc123def4/ou-ab12-cdef3456";
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            image.to_str().unwrap(),
            "--bucket",
            BUCKET,
            "--name",
            "kiln-web 1.0.0",
            "--copy-to-regions",
            "eu-west-1,us-west-2=arn:aws:kms:us-west-2:123456789012:key/1234abcd",
            "--share-accounts",
            "111122223333,444455556666",
            "--share-orgs",
            org,
            "--share-ous",
            ou,
            "--tags",
            "team=platform,env=test",
            "--part-size-mib",
            "5",
            "--poll-interval",
            "0.02",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // the status messages are shown verbatim as they change
    for msg in ["validating", "converting", "booting", "preparing ami"] {
        assert!(
            stderr.contains(msg),
            "no `{msg}` in the progress:\n{stderr}"
        );
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    let images = result["images"].as_array().unwrap();
    let regions: Vec<&str> = images
        .iter()
        .map(|i| i["region"].as_str().unwrap())
        .collect();
    assert_eq!(regions, ["us-east-1", "eu-west-1", "us-west-2"]);
    assert_eq!(result["upload_deleted"], true);

    for img in images {
        let region = img["region"].as_str().unwrap();
        let id = img["image_id"].as_str().unwrap();
        let ec2 = peer.ec2_client(region);
        let d = ec2.describe_images().image_ids(id).send().await.unwrap();
        let ami = &d.images()[0];
        assert_eq!(ami.name(), Some("kiln-web 1.0.0"), "{region}");
        let snaps: Vec<String> = img["snapshot_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert!(!snaps.is_empty(), "{region}: no snapshot");
        // tags on the AMI and its snapshots
        for res in std::iter::once(id.to_string()).chain(snaps) {
            let tags = ec2
                .describe_tags()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("resource-id")
                        .values(&res)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let pairs: Vec<(String, String)> = tags
                .tags()
                .iter()
                .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
                .collect();
            assert!(
                pairs.contains(&("team".into(), "platform".into())),
                "{res}: {pairs:?}"
            );
            assert!(
                pairs.contains(&("env".into(), "test".into())),
                "{res}: {pairs:?}"
            );
        }
        // launch permissions
        let lp = ec2
            .describe_image_attribute()
            .image_id(id)
            .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
            .send()
            .await
            .unwrap();
        let perms = lp.launch_permissions();
        let users: Vec<_> = perms.iter().filter_map(|p| p.user_id()).collect();
        assert_eq!(users, ["111122223333", "444455556666"], "{region}");
        assert!(
            perms.iter().any(|p| p.organization_arn() == Some(org)),
            "{region}: {perms:?}"
        );
        assert!(
            perms
                .iter()
                .any(|p| p.organizational_unit_arn() == Some(ou)),
            "{region}: {perms:?}"
        );
    }
    // the intermediate AMI (named after its import task) is gone
    let home = peer.ec2_client(REGION);
    let all = home.describe_images().owners("self").send().await.unwrap();
    let names: Vec<_> = all.images().iter().filter_map(|i| i.name()).collect();
    assert_eq!(names, ["kiln-web 1.0.0"], "{names:?}");
    // the upload was deleted
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());

    // export the renamed copy in eu-west-1 back and compare with the source;
    // the exported object is deleted after the download, or kept on request
    let eu_id = images[1]["image_id"].as_str().unwrap();
    for (fmt, keep) in [("raw", false), ("vmdk", true)] {
        let back = tmp.path().join(format!("back.{fmt}"));
        let output = back.to_str().unwrap();
        let mut args = vec![
            "ami",
            "export",
            eu_id,
            "--region",
            "eu-west-1",
            "--bucket",
            BUCKET,
            "--format",
            fmt,
            "--output",
            output,
            "--poll-interval",
            "0.02",
            "--json",
        ];
        if keep {
            args.push("--keep-export");
        }
        let out = kiln(&peer, tmp.path(), &args);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            same_disk(&raw, &back).await,
            "{fmt}: the exported disk differs from the imported one"
        );
        let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let key = done["key"].as_str().unwrap();
        assert!(
            key.starts_with("kiln-exports/export-ami-") && key.ends_with(fmt),
            "{key}"
        );
        assert_eq!(done["object_deleted"], !keep);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = if keep { "kept" } else { "deleted" };
        assert!(
            stderr.contains(&format!("{said} s3://{BUCKET}/{key}")),
            "{stderr}"
        );
        let head = s3.head_object().bucket(BUCKET).key(key).send().await;
        assert_eq!(
            head.is_ok(),
            keep,
            "{fmt}: s3://{BUCKET}/{key} after export: {head:?}"
        );
    }
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "only the kept export remains: {keys:?}");
}

/// ImportSnapshot + RegisterImage: the AMI is named at registration and
/// exports back to the same disk.
#[tokio::test(flavor = "multi_thread")]
async fn via_snapshot_registers_the_named_image() {
    let peer = MotoServer::start_vmie();
    peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 12);
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            raw.to_str().unwrap(),
            "--bucket",
            BUCKET,
            "--name",
            "kiln-snap",
            "--via-snapshot",
            "--format",
            "raw",
            "--keep-upload",
            "--poll-interval",
            "0.02",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["import_task_id"]
        .as_str()
        .unwrap()
        .starts_with("import-snap-"));
    assert_eq!(result["upload_deleted"], false);
    let id = result["images"][0]["image_id"].as_str().unwrap();
    let d = peer
        .ec2_client(REGION)
        .describe_images()
        .image_ids(id)
        .send()
        .await
        .unwrap();
    assert_eq!(d.images()[0].name(), Some("kiln-snap"));
    let back = tmp.path().join("back.vhd");
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "export",
            id,
            "--bucket",
            BUCKET,
            "--format",
            "vhd",
            "--output",
            back.to_str().unwrap(),
            "--poll-interval",
            "0.02",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(same_disk(&raw, &back).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monolithic_sparse_vmdk_fails_with_the_real_client_error() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    let sparse = tmp.path().join("sparse.vmdk");
    qemu_img(&[
        "convert",
        "-O",
        "vmdk",
        "-o",
        "subformat=monolithicSparse",
        raw.to_str().unwrap(),
        sparse.to_str().unwrap(),
    ]);
    put_file(&s3, "sparse.vmdk", &sparse).await;
    let ec2 = peer.ec2_client(REGION);
    let task = import::start_import_image(&ec2, &import_request("sparse.vmdk", DiskFormat::Vmdk))
        .await
        .unwrap();
    let err = poll::wait(
        fast_poll(),
        || import::describe_image_task(&ec2, &task),
        &|_| {},
    )
    .await
    .unwrap_err();
    match err {
        AwsError::TaskFailed {
            status, message, ..
        } => {
            assert_eq!(status, "deleting");
            assert_eq!(
                message,
                "ClientError: Disk validation failed [Unsupported VMDK File Format]"
            );
        }
        other => panic!("expected a failed task, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_or_role_is_refused_at_once() {
    let peer = MotoServer::start_vmie();
    let tmp = tempfile::tempdir().unwrap();
    let ec2 = peer.ec2_client(REGION);
    // no role yet
    let err = import::start_import_image(&ec2, &import_request("x.raw", DiskFormat::Raw))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("InvalidParameter: The service role <vmimport> does not exist"),
        "{err}"
    );
    iam_role(&peer).await;
    let err = import::start_import_image(&ec2, &import_request("x.raw", DiskFormat::Raw))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("S3 bucket does not exist: kiln-images"),
        "{err}"
    );
    // the CLI: the upload to a missing bucket fails before any import
    let raw = make_disk(tmp.path(), 8);
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            raw.to_str().unwrap(),
            "--bucket",
            "no-such-bucket",
            "--format",
            "raw",
            "--poll-interval",
            "0.02",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NoSuchBucket"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_without_the_role_fails_with_the_service_message() {
    let peer = MotoServer::start_vmie();
    peer.bucket(BUCKET).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            raw.to_str().unwrap(),
            "--bucket",
            BUCKET,
            "--format",
            "raw",
            "--poll-interval",
            "0.02",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "The service role <vmimport> does not exist or does not have sufficient permissions"
        ),
        "{}",
        text(&out)
    );
}

/// `--encrypted` without `--kms-key` (the recipe's `encrypted: true`):
/// ImportImage gets `Encrypted` and no `KmsKeyId`, as the peer records it.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_imports_ask_for_the_default_key() {
    let peer = MotoServer::start_vmie();
    peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    let image = raw.to_str().unwrap();
    let task = |encrypted: bool| {
        let mut args = vec![
            "ami",
            "import",
            image,
            "--bucket",
            BUCKET,
            "--format",
            "raw",
            "--poll-interval",
            "0.02",
            "--json",
        ];
        if encrypted {
            args.push("--encrypted");
        }
        let out = kiln(&peer, tmp.path(), &args);
        assert!(out.status.success(), "{}", text(&out));
        let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        done["import_task_id"].as_str().unwrap().to_string()
    };
    let home = peer.ec2_client(REGION);
    for encrypted in [true, false] {
        let id = task(encrypted);
        let d = home
            .describe_import_image_tasks()
            .import_task_ids(&id)
            .send()
            .await
            .unwrap();
        let t = &d.import_image_tasks()[0];
        assert_eq!(t.encrypted(), Some(encrypted), "{t:?}");
        assert_eq!(t.kms_key_id(), None, "{t:?}");
    }
}

/// The peer's hook makes the task end `deleted` at `converting`; kiln
/// stops at `deleting` with the message verbatim.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_ends_deleted_fails_the_import_with_its_message() {
    let peer = MotoServer::start_vmie();
    peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            raw.to_str().unwrap(),
            "--bucket",
            BUCKET,
            "--format",
            "raw",
            "--description",
            "kiln-test-fail:Unsupported kernel version 4.15.0-1021-aws",
            "--poll-interval",
            "0.02",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed (deleting): ClientError: Unsupported kernel version 4.15.0-1021-aws"),
        "{err}"
    );
    assert!(err.contains("validating"), "{err}");
}

/// An upload dropped after two parts keeps its state; the next call sends
/// only the missing parts, and the object equals the file.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_resumes() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.raw");
    let data: Vec<u8> = (0..(27 * MIB as usize))
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let req = UploadRequest {
        file: file.clone(),
        bucket: BUCKET.into(),
        key: "disks/big.raw".into(),
        concurrency: 1,
        part_size: Some(5 * MIB),
        state_file: tmp.path().join("state/big.json"),
    };
    let (tx, mut rx) = tokio::sync::watch::channel(0u32);
    let report = move |p: upload::UploadProgress| {
        let _ = tx.send(p.parts_done);
    };
    let first = upload::upload(&s3, &req, &report);
    tokio::select! {
        r = first => panic!("the upload finished before the interruption: {r:?}"),
        _ = rx.wait_for(|n| *n >= 2) => {}
    }
    assert!(
        req.state_file.exists(),
        "the interrupted upload left no state"
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);

    let done = upload::upload(&s3, &req, &|_| {}).await.expect("resume");
    assert_eq!(done.parts, 6);
    assert!(done.reused_parts >= 2, "{done:?}");
    assert!(
        done.etag.as_deref().unwrap_or("").ends_with("-6\""),
        "{done:?}"
    );
    assert!(!req.state_file.exists());
    let got = s3
        .get_object()
        .bucket(BUCKET)
        .key("disks/big.raw")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(
        body.as_ref() == data.as_slice(),
        "the resumed object differs from the file"
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}

/// A failed upload (a part below S3's minimum) is aborted: no multipart
/// upload stays behind, and no state file.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_is_aborted() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f.raw");
    std::fs::write(&file, vec![1u8; 3 * MIB as usize]).unwrap();
    let req = UploadRequest {
        file,
        bucket: BUCKET.into(),
        key: "f.raw".into(),
        concurrency: 2,
        part_size: Some(MIB),
        state_file: tmp.path().join("f.json"),
    };
    let err = upload::upload(&s3, &req, &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("EntityTooSmall"), "{err}");
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert!(!req.state_file.exists());
}

/// Dropping the guard of a running task (what Ctrl-C does) cancels it.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_import_is_cancelled() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    put_file(&s3, "d.raw", &raw).await;
    let ec2 = peer.ec2_client(REGION);
    let task = import::start_import_image(&ec2, &import_request("d.raw", DiskFormat::Raw))
        .await
        .unwrap();
    drop(import::CancelOnDrop::new(&ec2, &task));
    let s = import::describe_image_task(&ec2, &task).await.unwrap();
    assert!(s.status == "deleting" || s.status == "deleted", "{s:?}");
    assert_eq!(
        s.message.as_deref(),
        Some("cancelled by kiln (interrupted)")
    );
}

/// Ctrl-C (SIGINT) to `kiln ami import` while the task runs cancels the
/// task (CancelImportTask) before kiln exits 130.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_the_import_cancels_the_task() {
    use std::io::{BufRead, BufReader};
    let peer = MotoServer::start_vmie();
    peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    let args = [
        "ami",
        "import",
        raw.to_str().unwrap(),
        "--bucket",
        BUCKET,
        "--format",
        "raw",
        "--poll-interval",
        "1",
    ];
    let mut child = kiln_command(&peer, tmp.path(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut reader = BufReader::new(stderr).lines();
        for line in reader.by_ref().map_while(Result::ok) {
            let started = line.contains("validating");
            seen.push(line);
            if started {
                break;
            }
        }
        (reader, seen)
    });
    let (reader, mut seen) = tokio::time::timeout(std::time::Duration::from_secs(120), lines)
        .await
        .expect("the import task started within 120 s")
        .unwrap();
    assert!(
        seen.iter().any(|l| l.contains("validating")),
        "{}",
        seen.join("\n")
    );
    // SAFETY: kill(2) on our child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    seen.extend(reader.map_while(Result::ok));
    let all = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(all.contains("cancelled import task import-ami-"), "{all}");
    assert!(!all.contains(SECRET), "{all}");
    let ec2 = peer.ec2_client(REGION);
    let tasks = ec2.describe_import_image_tasks().send().await.unwrap();
    let tasks = tasks.import_image_tasks();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert!(
        matches!(tasks[0].status(), Some("deleting" | "deleted")),
        "{tasks:?}"
    );
    assert_eq!(
        tasks[0].status_message(),
        Some("cancelled by kiln (interrupted)")
    );
}

/// A deliberately broken image: pre-flight stops the import before any
/// upload, naming every problem with its fix.
#[tokio::test(flavor = "multi_thread")]
async fn preflight_stops_a_broken_image_before_the_upload() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk_with(
        tmp.path(),
        8,
        &[
            ("etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n"),
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            ("boot/vmlinuz-4.15.0-1021-aws", "kernel"),
            ("boot/vmlinuz-6.1.0-13-amd64", "kernel"),
            ("boot/vmlinuz-6.1.0-14-amd64", "kernel"),
            ("boot/extlinux/extlinux.conf", "default linux\n"),
            (
                "lib/modules/4.15.0-1021-aws/modules.dep",
                "kernel/drivers/block/virtio_blk.ko:\nkernel/drivers/block/xen-blkfront.ko:\n",
            ),
            (
                "lib/modules/6.1.0-13-amd64/modules.dep",
                "kernel/drivers/nvme/host/nvme.ko:\nkernel/drivers/net/ethernet/amazon/ena/ena.ko:\nkernel/drivers/block/xen-blkfront.ko:\nkernel/drivers/block/virtio_blk.ko:\n",
            ),
            (
                "etc/network/interfaces",
                "auto eth0\niface eth0 inet static\n  address 10.0.0.5/24\n",
            ),
        ],
        &[
            // the module is installed but the initramfs lacks it
            ("boot/initrd.img-4.15.0-1021-aws", initrd(&["block/virtio_blk.ko"])),
            // xz: recognised, not read; modules.dep stands in
            ("boot/initramfs-6.1.0-13-amd64.img", [&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00][..], &[0x55; 64]].concat()),
            // junk after the microcode archive, more than a pipe holds (debugfs is cut off)
            ("boot/initrd.img-6.1.0-14-amd64", [microcode(), vec![0x55; 512 << 10]].concat()),
        ],
    );
    let image = tmp.path().join("broken.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    let out = kiln(
        &peer,
        tmp.path(),
        &[
            "ami",
            "import",
            image.to_str().unwrap(),
            "--bucket",
            BUCKET,
            "--boot-mode",
            "uefi",
            "--poll-interval",
            "0.02",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let damaged = format!("initramfs: the initramfs /boot/initrd.img-6.1.0-14-amd64 of kernel 6.1.0-14-amd64 is damaged: no cpio header or compression magic at byte {} (found 555555555555); checked modules.dep instead", microcode().len());
    for needle in [
        "fstab: /etc/fstab names a device by kernel name: `/dev/sda1 / ext4 defaults 0 1`",
        "mount by UUID=",
        "boot-mode: --boot-mode uefi but the disk has no EFI system partition",
        "bootloader: no /boot/grub/grub.cfg",
        "kernel: kernel 4.15.0-1021-aws is not listed by VM Import for debian 12",
        "has no `ena` module",
        "has no `nvme` module",
        "drivers: the initramfs /boot/initrd.img-4.15.0-1021-aws does not carry `xen-blkfront` (needed for disks on Xen instances); kernel 4.15.0-1021-aws has it as a module",
        "add `xen-blkfront` to /etc/initramfs-tools/modules and run `update-initramfs -u -k 4.15.0-1021-aws`",
        &damaged,
        "update-initramfs -c -k 6.1.0-14-amd64",
        "pre-flight Warning initramfs: cannot read compression xz of /boot/initramfs-6.1.0-13-amd64.img (kiln reads gzip and zstd); checked modules.dep instead",
        "no DHCP network configuration",
        "cloud-init is not installed",
        "--skip-preflight",
    ] {
        assert!(err.contains(needle), "no `{needle}` in:\n{err}");
    }
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(
        listed.contents().is_empty(),
        "something was uploaded: {:?}",
        listed.contents()
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}

/// A folder of symlinks to every program in `PATH` but `missing`: a host
/// where those tools are not installed.
fn path_without(dir: &Path, missing: &[&str]) -> std::ffi::OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for folder in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = bin.join(&name);
            if missing.iter().any(|m| name == *m) || link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), link).unwrap();
        }
    }
    bin.into_os_string()
}

/// A tool pre-flight needs that is not installed stops the import with
/// the package to install, never with a finding about the image (a
/// missing `mdir` once read as "the ESP has no fallback").
#[tokio::test(flavor = "multi_thread")]
async fn preflight_without_its_tools_names_the_package() {
    let peer = MotoServer::start_vmie();
    let s3 = peer.bucket(BUCKET).await;
    iam_role(&peer).await;
    let tmp = tempfile::tempdir().unwrap();
    let raw = make_disk(tmp.path(), 8);
    // the same disk with its partition typed as an EFI system partition
    let esp = tmp.path().join("esp.raw");
    let mut bytes = std::fs::read(&raw).unwrap();
    bytes[446 + 4] = 0xEF;
    std::fs::write(&esp, bytes).unwrap();
    for (image, tool, package) in [(&esp, "mdir", "mtools"), (&raw, "debugfs", "e2fsprogs")] {
        let path = path_without(&tmp.path().join(tool), &[tool]);
        let out = kiln_command(
            &peer,
            tmp.path(),
            &[
                "ami",
                "import",
                image.to_str().unwrap(),
                "--bucket",
                BUCKET,
                "--boot-mode",
                "uefi",
                "--poll-interval",
                "0.02",
            ],
        )
        .env("PATH", path)
        .output()
        .expect("run kiln");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("`{tool}` not found (install the Debian package {package})");
        assert!(err.contains(&want), "no `{want}` in:\n{err}");
        assert!(!err.contains("pre-flight found"), "{err}");
    }
    let listed = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());
}
