//! The distribute stage's AMI import without a VM: a small disk imported
//! per a recipe-parsed `distribution.ami` (via snapshot, one copy region,
//! one share account) against a real moto server plus the VM Import/Export
//! peer (tests/peers/vmie/server.py); the AMIs are looked up in moto in
//! each region. Fails (never skips) when `.venv` is missing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln::aws::flow::LocalSettings;
use kiln::aws::poll::PollOptions;
use kiln::aws::Clients;
use kiln::build::distribute;
use kiln::build::manifest::AmiInfo;
use kiln::build::parent::ResolvedParent;
use kiln::build::record::Recorder;
use support::moto::{set_dummy_aws_env, MotoServer, REGION};

const BUCKET: &str = "kiln-builds";

/// A 4 MiB qcow2 with a non-zero pattern (pre-flight is skipped: it is
/// not an OS disk).
fn small_qcow2(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("disk.raw");
    let data: Vec<u8> = (0..4usize << 20).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&raw, data).unwrap();
    let qcow2 = dir.join("image.qcow2");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .output()
        .expect("run qemu-img");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    qcow2
}

fn recipe(bucket: &str) -> kiln::recipe::Recipe {
    let text = format!(
        "name: web
semanticVersion: 1.2.3
parentImage: ./base.qcow2
components:
  - component: update-linux
distribution:
  ami:
    bucket: {bucket}
    viaSnapshot: true
    skipPreflight: true
    copyToRegions:
      - region: eu-west-1
    shareAccounts: [111122223333]
    tags: {{suite: build_ami}}
"
    );
    kiln::recipe::parse("r.yml", &text, Path::new("/recipes")).expect("recipe")
}

fn spec(bucket: &str) -> kiln::ami::AmiSpec {
    recipe(bucket).distribution.ami.expect("distribution.ami")
}

/// What the build does with the AMIs: the manifest's `amis` and the
/// catalog entry (through the build's Recorder).
fn record(dir: &Path, images: &[kiln::aws::distribute::RegionImage]) {
    let amis: Vec<AmiInfo> = images
        .iter()
        .map(|i| AmiInfo {
            region: i.region.clone(),
            ami_id: i.image_id.clone(),
        })
        .collect();
    let json = serde_json::to_value(&amis).unwrap();
    assert_eq!(json[1]["region"], "eu-west-1");
    assert_eq!(json[1]["amiId"], images[1].image_id.as_str());

    let recipe = recipe(BUCKET);
    let parent = ResolvedParent {
        path: dir.join("base.qcow2"),
        format: kiln::disk::img::Format::Qcow2,
        sha256: "ab".repeat(32),
        virtual_size: 4 << 20,
        origin: "file base.qcow2".into(),
        mirror_index_sha256: None,
    };
    let db = dir.join("catalog.db");
    let mut rec = Recorder::open(&db).unwrap();
    let inputs = kiln::build::record::inputs("cd".repeat(32).as_str(), &parent, &[], &[], None);
    let build = rec
        .begin(&recipe, &parent, &inputs, &Default::default())
        .unwrap();
    rec.amis(&amis).unwrap();
    rec.failed("test ends here", None).unwrap();
    let got = kiln::catalog::Catalog::open(&db)
        .unwrap()
        .get(build.id)
        .unwrap();
    let got: Vec<(String, String)> = got
        .amis
        .iter()
        .map(|a| (a.region.clone(), a.ami_id.clone()))
        .collect();
    let want: Vec<(String, String)> = amis
        .iter()
        .map(|a| (a.region.clone(), a.ami_id.clone()))
        .collect();
    assert_eq!(sorted(got), sorted(want));
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn local() -> LocalSettings {
    LocalSettings {
        poll: PollOptions {
            interval: Duration::from_millis(20),
            stall_polls: 50,
        },
        ..LocalSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_distribute_stage_imports_copies_and_shares_the_ami() {
    let peer = MotoServer::start_vmie();
    set_dummy_aws_env();
    std::env::set_var("AWS_ENDPOINT_URL", peer.endpoint());
    peer.bucket(BUCKET).await;
    let home = Clients::new(Some(REGION)).await;
    kiln::aws::role::setup(&home.iam, "vmimport", BUCKET)
        .await
        .expect("create the vmimport role");
    let tmp = tempfile::tempdir().unwrap();
    let image = small_qcow2(tmp.path());
    let work = tmp.path().join("vm/ami");
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_string());
    let name = distribute::default_ami_name("web", "1.2.3");
    let images = distribute::import_ami(
        &home,
        &image,
        &spec(BUCKET),
        &name,
        &work,
        local(),
        &progress,
    )
    .await
    .expect("import the AMI");
    let regions: Vec<&str> = images.iter().map(|i| i.region.as_str()).collect();
    assert_eq!(regions, [REGION, "eu-west-1"]);
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ami: ImportSnapshot task import-snap-")),
        "{lines:#?}"
    );
    for img in &images {
        let ec2 = peer.ec2_client(&img.region);
        let found = ec2
            .describe_images()
            .image_ids(&img.image_id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeImages {} in {}: {e:?}", img.image_id, img.region));
        let ami = found
            .images()
            .first()
            .unwrap_or_else(|| panic!("{} is not in {}", img.image_id, img.region));
        assert_eq!(ami.name(), Some("web-1.2.3"), "{}", img.region);
        let lp = ec2
            .describe_image_attribute()
            .image_id(&img.image_id)
            .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
            .send()
            .await
            .unwrap();
        let users: Vec<_> = lp
            .launch_permissions()
            .iter()
            .filter_map(|p| p.user_id())
            .collect();
        assert_eq!(users, ["111122223333"], "{}", img.region);
    }
    record(tmp.path(), &images);

    // the upload is deleted (no keepUpload) and nothing staged is left
    let objects = home
        .s3
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(objects.contents().is_empty(), "{:?}", objects.contents());
    let staged: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".upload.json"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");

    // a bucket that does not exist fails the import (and so the build)
    let err = distribute::import_ami(
        &home,
        &image,
        &spec("no-such-bucket"),
        &name,
        &tmp.path().join("vm/ami2"),
        local(),
        &|_| {},
    )
    .await
    .expect_err("an import to a missing bucket");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}
