//! `kiln build` end to end, with real QEMU VMs under TCG (or KVM when it
//! works), real cloud-init and a Debian base image kiln bootstraps itself.
//!
//! Boots are few and each proves much:
//! - the example recipe: build VM (with a reboot), seal, flatten, a fresh
//!   test VM (boot test, test phases, reboot test), publish; then the
//!   manifest, the image and the sealed file system are checked from outside;
//!   its exports equal the image, and the VMDK and the VHDX boot side by side;
//! - a failing component with `--on-error abort`: the printed ssh command
//!   gets in, Ctrl-C cleans up, nothing is published, the logs are named;
//! - SIGTERM and SIGKILL during the build stage: no QEMU left, nothing published.
//!
//! The tests take a lock so their VMs do not compete for the two cores.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kiln::{
    assert_no_qemu, catalog_images, events, qemu_processes, wait_exit, KilnRun, Lines,
};

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn nothing_published(output: &Path, name: &str) {
    assert!(
        !output.join(name).exists(),
        "{name} was published: {:?}",
        std::fs::read_dir(output.join(name)).map(|d| d.count())
    );
    assert!(
        !output.join(".kiln-tmp").exists()
            || std::fs::read_dir(output.join(".kiln-tmp")).unwrap().count() == 0,
        "temporary build files left in {}",
        output.display()
    );
}

/// Reads files out of the image's root file system without booting it:
/// qemu-img → raw, the GPT's last partition → ext4 image, debugfs.
struct SealedFs {
    _dir: tempfile::TempDir,
    ext4: PathBuf,
}

impl SealedFs {
    fn open(image: &Path) -> SealedFs {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let ok = Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(image)
            .arg(&raw)
            .status()
            .unwrap();
        assert!(ok.success());
        let table = Command::new("sfdisk")
            .arg("--json")
            .arg(&raw)
            .output()
            .unwrap();
        let table: Value = serde_json::from_slice(&table.stdout).expect("sfdisk --json");
        let parts = table["partitiontable"]["partitions"].as_array().unwrap();
        let root = parts.last().unwrap();
        let (start, size) = (
            root["start"].as_u64().unwrap(),
            root["size"].as_u64().unwrap(),
        );
        let ext4 = dir.path().join("root.ext4");
        let ok = Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", ext4.display()))
            .args(["bs=512", "conv=sparse", "status=none"])
            .arg(format!("skip={start}"))
            .arg(format!("count={size}"))
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::remove_file(&raw).unwrap();
        SealedFs { _dir: dir, ext4 }
    }

    fn debugfs(&self, request: &str) -> String {
        let out = Command::new("debugfs")
            .args(["-R", request])
            .arg(&self.ext4)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn cat(&self, path: &str) -> String {
        self.debugfs(&format!("cat {path}"))
    }

    fn ls(&self, path: &str) -> String {
        self.debugfs(&format!("ls -l {path}"))
    }
}

#[test]
fn example_recipe_end_to_end() {
    let _one = serial();
    let cache = support::base_image::test_cache().root;
    support::base_image::bootstrap_base_image();
    let out = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/debian-web/recipe.yml");
    let mut run = KilnRun::start(
        &[
            "build",
            recipe.to_str().unwrap(),
            "--output",
            out.path().to_str().unwrap(),
            "--json",
        ],
        &cache,
        &out.path().join(".catalog"),
    );
    let mut stdout = Lines::new(run.child.stdout.take().unwrap());
    let mut stderr = Lines::new(run.child.stderr.take().unwrap());
    let code = wait_exit(&mut run, Duration::from_secs(60 * 60));
    let lines = stdout.rest(Duration::from_secs(5));
    let err = stderr.rest(Duration::from_secs(5));
    assert_eq!(code, 0, "kiln build failed:\n{}", err.join("\n"));

    // progress: versioned JSON events, every stage started and ended in order
    let ev = events(&lines);
    assert!(ev.iter().all(|e| e["v"] == 1), "{ev:?}");
    let ended: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "stage-end")
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        ended,
        [
            "parent",
            "plan",
            "build",
            "seal",
            "flatten",
            "test",
            "distribute",
            "publish"
        ]
    );
    assert_eq!(ev[0]["event"], "build-start", "{ev:?}");
    assert_eq!(ev[0]["build"]["name"], "debian-web");
    let last = ev.last().unwrap();
    assert_eq!(last["event"], "build-finished", "{last}");
    assert_eq!(last["build"]["outcome"], "success", "{last}");
    assert_eq!(last["build"]["build"], 1, "{last}");
    assert_eq!(ev[ev.len() - 2]["event"], "result");
    // the same events are in the build's event file beside the catalog
    let id = last["build"]["id"].as_str().unwrap();
    let file = out.path().join(format!(".catalog/events/{id}.jsonl"));
    let stored = std::fs::read_to_string(&file).unwrap();
    let stored: Vec<Value> = stored
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stored.len(), ev.len(), "{}", file.display());
    assert_eq!(stored.last().unwrap()["build"], last["build"]);

    // the published folder and its manifest
    let dir = out.path().join("debian-web/1.0.0");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["manifestVersion"], 1);
    assert_eq!(manifest["image"]["name"], "debian-web");
    assert_eq!(manifest["image"]["version"], "1.0.0");
    assert_eq!(manifest["image"]["build"], 1);
    assert_eq!(manifest["recipe"]["sha256"], sha256(&recipe));
    // the recipe sets no network: the default, which keeps the host's
    // loopback out of the guests' reach (tests/target_ssh.rs checks it)
    assert_eq!(manifest["machine"]["network"], "outbound");
    let parent_path = PathBuf::from(manifest["parent"]["path"].as_str().unwrap());
    assert_eq!(manifest["parent"]["sha256"], sha256(&parent_path));
    let comps = manifest["components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["web-service", "web-service-test", "simple-boot-test-linux"]
    );
    assert_eq!(
        comps[0]["sha256"],
        sha256(&repo().join("recipes/debian-web/components/web-service.yml"))
    );
    assert_eq!(comps[0]["parameters"]["Port"], "8080");
    assert_eq!(comps[1]["testOnly"], true);
    assert_eq!(comps[2]["source"], "builtin:simple-boot-test-linux");
    let tests = &manifest["tests"];
    for t in tests["components"].as_array().unwrap() {
        let expect = if t["name"] == "web-service" {
            "none"
        } else {
            "success"
        };
        assert_eq!(t["status"], expect, "{t}");
    }
    assert_eq!(tests["cloudInitStatus"], "done");
    assert!(tests["rebootTest"]
        .as_str()
        .unwrap()
        .contains("new boot id"));
    let stages: Vec<&str> = manifest["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ended);
    // every artifact listed, with the right digest and size; nothing unlisted
    let mut listed = std::collections::BTreeSet::new();
    for a in manifest["artifacts"].as_array().unwrap() {
        let p = dir.join(a["path"].as_str().unwrap());
        assert_eq!(a["sha256"], sha256(&p), "{a}");
        assert_eq!(a["size"], std::fs::metadata(&p).unwrap().len(), "{a}");
        listed.insert(a["path"].as_str().unwrap().to_string());
    }
    for needed in [
        "image.qcow2",
        "logs/kiln.log",
        "logs/build-serial.log",
        "logs/test-serial.log",
        "logs/seal.log",
    ] {
        assert!(listed.contains(needed), "{needed} not in {listed:?}");
    }
    for stage in ["toe-build", "toe-test"] {
        assert!(
            listed
                .iter()
                .any(|p| p.starts_with(&format!("logs/{stage}/TOE_"))
                    && p.ends_with("detailedoutput.json")),
            "no {stage} report in {listed:?}"
        );
    }
    // the build VM rebooted once for the component and resumed
    let build_console = listed
        .iter()
        .find(|p| p.starts_with("logs/toe-build/") && p.ends_with("console.log"))
        .unwrap();
    let console = std::fs::read_to_string(dir.join(build_console)).unwrap();
    assert!(console.contains("rebooted; continuing"), "{console}");
    assert!(console.contains("back after the reboot"), "{console}");

    // the image: standalone qcow2 of the recipe's size, consistent
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dir.join("image.qcow2"))
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(info["virtual-size"], 4u64 << 30);
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(dir.join("image.qcow2"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // sealed: new-machine identity, no build user or keys, the service in place
    let fs = SealedFs::open(&dir.join("image.qcow2"));
    let machine_id = fs.debugfs("stat /etc/machine-id");
    assert!(machine_id.contains("Size: 0"), "{machine_id}");
    let ssh = fs.ls("/etc/ssh");
    assert!(ssh.contains("sshd_config"), "{ssh}");
    assert!(!ssh.contains("ssh_host_"), "host keys left: {ssh}");
    assert!(!fs.cat("/etc/passwd").contains("kiln-build"));
    assert!(!fs.cat("/etc/shadow").contains("kiln-build"));
    assert!(!fs.ls("/home").contains("kiln-build"));
    assert!(
        fs.ls("/root/.ssh").contains("not found")
            || !fs.ls("/root/.ssh").contains("authorized_keys")
    );
    assert!(!fs.ls("/etc/sudoers.d").contains("90-cloud-init-users"));
    let cloud = fs.ls("/var/lib/cloud");
    assert!(
        !cloud.contains("instance"),
        "cloud-init state left: {cloud}"
    );
    assert!(!fs.ls("/tmp").contains("TOE_"), "TOE files left");
    assert!(fs
        .ls("/etc/systemd/system/multi-user.target.wants")
        .contains("web.service"));
    assert!(fs
        .cat("/srv/www/index.html")
        .contains("Hello from a kiln golden image"));

    assert_no_qemu(out.path().to_str().unwrap());
    nothing_published_tmp(out.path());

    // recorded in the catalog: build 1, available, every file with its digest
    let data = out.path().join(".catalog");
    assert_eq!(
        catalog_images(&data),
        [("debian-web/1.0.0/1".to_string(), "available".to_string())]
    );
    let shown = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["images", "show", "debian-web/1.0.0/1", "--json"])
        .env("KILN_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let recorded: std::collections::BTreeMap<String, String> = shown["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_string(),
                a["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for a in manifest["artifacts"].as_array().unwrap() {
        let path = dir.join(a["path"].as_str().unwrap()).display().to_string();
        assert_eq!(
            recorded.get(&path).map(String::as_str),
            a["sha256"].as_str(),
            "{path}"
        );
    }
    assert_eq!(shown["parent"]["sha256"], manifest["parent"]["sha256"]);

    exports_equal_the_image_and_boot(&dir, &manifest);
}

/// The recipe's distribution formats: each listed in the manifest with its
/// format, equal to image.qcow2 (`qemu-img compare`; the OVA's disk read
/// out of the tar), accepted by `kiln verify`; and the VMDK and the VHDX
/// each boot to SSH, side by side, with the web service up.
fn exports_equal_the_image_and_boot(dir: &Path, manifest: &Value) {
    let image = dir.join("image.qcow2");
    let kinds: std::collections::BTreeMap<&str, &str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].as_str().unwrap(), a["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.get("image.vmdk"), Some(&"vmdk"), "{kinds:?}");
    assert_eq!(kinds.get("image.vhdx"), Some(&"vhdx"), "{kinds:?}");
    assert_eq!(kinds.get("image.ova"), Some(&"ova"), "{kinds:?}");
    for f in ["image.vmdk", "image.vhdx", "image.ova"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("verify")
            .arg(dir.join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let extracted = tempfile::tempdir().unwrap();
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(dir.join("image.ova"))
        .arg("-C")
        .arg(extracted.path())
        .status()
        .unwrap();
    assert!(tar.success());
    let ova_disk = std::fs::read_dir(extracted.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "vmdk"))
        .expect("a disk in the OVA");
    for disk in [dir.join("image.vmdk"), dir.join("image.vhdx"), ova_disk] {
        let cmp = Command::new("qemu-img")
            .arg("compare")
            .arg(&image)
            .arg(&disk)
            .output()
            .unwrap();
        assert!(cmp.status.success(), "{}: {cmp:?}", disk.display());
    }

    let work = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let selected = kiln::vm::accel::select(
            kiln::vm::accel::AccelChoice::Auto,
            "qemu-system-x86_64",
            work.path(),
        )
        .await
        .unwrap();
        let (vmdk, vhdx) = (dir.join("image.vmdk"), dir.join("image.vhdx"));
        let (a, b) = tokio::join!(
            boot_export(&vmdk, "vmdk", selected.accel, work.path()),
            boot_export(&vhdx, "vhdx", selected.accel, work.path()),
        );
        a.unwrap();
        b.unwrap();
    });
    assert_no_qemu(work.path().to_str().unwrap());
}

/// Boots a VM from an overlay on `disk` and checks the web service.
async fn boot_export(
    disk: &Path,
    format: &str,
    accel: kiln::vm::qemu::Accel,
    work: &Path,
) -> Result<(), String> {
    use kiln::build::guest::{Guest, GuestSpec};
    let overlay = work.join(format!("{format}.qcow2"));
    kiln::disk::img::create_overlay(disk, format, &overlay, None)
        .await
        .map_err(|e| e.to_string())?;
    let guest = Guest::boot(GuestSpec {
        name: format,
        disk: &overlay,
        accel,
        cpus: 1,
        memory_mib: 1024,
        network: kiln::vm::net::Network::default(),
        boot_timeout: Duration::from_secs(1200),
        vm_dir: work,
        log_dir: work.to_path_buf(),
        socket_dir: work,
        qemu: "qemu-system-x86_64",
        build_id: "exports",
    })
    .await
    .map_err(|e| format!("{format}: {e:?}"))?;
    let (code, out) = guest
        .shell("systemctl is-active web.service && cat /srv/www/index.html")
        .await
        .map_err(|e| format!("{format}: {e:?}"))?;
    if code != Some(0) || !out.contains("Hello from a kiln golden image") {
        return Err(format!("{format}: web service check: {code:?} {out}"));
    }
    guest
        .power_off(Duration::from_secs(120))
        .await
        .map_err(|e| format!("{format}: {e:?}"))
}

fn nothing_published_tmp(output: &Path) {
    assert!(
        !output.join(".kiln-tmp").exists(),
        "temporary build files left in {}",
        output.display()
    );
}

fn write_failing_recipe(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("fail.yml"),
        r#"name: fails
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Works
        action: ExecuteBash
        inputs:
          commands: ["echo fine"]
      - name: Breaks
        action: ExecuteBash
        inputs:
          commands:
            - echo "output-before-the-failure"
            - echo "the reason, on stderr" >&2
            - exit 3
"#,
    )
    .unwrap();
    let recipe = dir.join("recipe.yml");
    std::fs::write(
        &recipe,
        r#"name: broken
semanticVersion: 0.1.0
parentImage:
  bootstrap:
    distro: debian
    suite: bookworm
components:
  - component: ./fail.yml
"#,
    )
    .unwrap();
    recipe
}

#[test]
fn failing_component_with_abort_keeps_the_vm_for_ssh_then_cleans_up() {
    let _one = serial();
    let cache = support::base_image::test_cache().root;
    support::base_image::bootstrap_base_image();
    let work = tempfile::tempdir().unwrap();
    let recipe = write_failing_recipe(work.path());
    let out = work.path().join("out");
    let mut run = KilnRun::start(
        &[
            "build",
            recipe.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--on-error",
            "abort",
        ],
        &cache,
        &work.path().join("catalog"),
    );
    let mut stdout = Lines::new(run.child.stdout.take().unwrap());
    let mut stderr = Lines::new(run.child.stderr.take().unwrap());
    // the failed step and its output are shown
    stderr.wait_for("step build/Breaks failed", Duration::from_secs(30 * 60));
    let ssh_line = stderr.wait_for("ssh -i ", Duration::from_secs(30));
    let all = stderr.seen.join("\n");
    assert!(all.contains("output-before-the-failure"), "{all}");
    assert!(all.contains("the reason, on stderr"), "{all}");
    // the printed command gets into the still-running VM, host key pinned
    let command = ssh_line.trim().to_string();
    let mut args: Vec<String> = command.split_whitespace().map(String::from).collect();
    assert_eq!(args.remove(0), "ssh", "{command}");
    let destination = args.pop().unwrap();
    args.extend(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"].map(String::from));
    args.push(destination);
    args.push("cat /etc/hostname".into());
    let got = Command::new("ssh").args(&args).output().unwrap();
    assert!(
        got.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "kiln-build");
    // Ctrl-C: QEMU stopped, nothing published, logs kept where it says
    run.signal(libc::SIGINT);
    let code = wait_exit(&mut run, Duration::from_secs(60));
    assert_eq!(code, 130);
    let err = stderr.rest(Duration::from_secs(5)).join("\n");
    let _ = stdout.rest(Duration::from_secs(1));
    let logs_line = err
        .lines()
        .find(|l| l.contains("the logs are in "))
        .unwrap_or_else(|| panic!("no logs path in:\n{err}"));
    let logs = PathBuf::from(logs_line.split("the logs are in ").nth(1).unwrap().trim());
    assert!(logs.join("kiln.log").exists(), "{}", logs.display());
    assert!(logs.join("build-serial.log").exists());
    let kiln_log = std::fs::read_to_string(logs.join("kiln.log")).unwrap();
    assert!(kiln_log.contains("step build/Breaks failed"), "{kiln_log}");
    assert_no_qemu(out.to_str().unwrap());
    nothing_published(&out, "broken");
    // the catalog gave the build a number and recorded the failure
    assert_eq!(
        catalog_images(&work.path().join("catalog")),
        [("broken/0.1.0/1".to_string(), "failed".to_string())]
    );
}

#[test]
fn sigterm_and_sigkill_during_the_build_stage_leave_no_qemu_and_publish_nothing() {
    let _one = serial();
    let cache = support::base_image::test_cache().root;
    support::base_image::bootstrap_base_image();
    let work = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/debian-web/recipe.yml");
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
        let out = work.path().join(name);
        let mut run = KilnRun::start(
            &[
                "build",
                recipe.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--json",
            ],
            &cache,
            &work.path().join(format!("catalog-{name}")),
        );
        let mut stdout = Lines::new(run.child.stdout.take().unwrap());
        let _stderr = Lines::new(run.child.stderr.take().unwrap());
        stdout.wait_for("starting the build VM", Duration::from_secs(10 * 60));
        // QEMU is up (its command line names the output folder)
        let deadline = Instant::now() + Duration::from_secs(60);
        while qemu_processes(out.to_str().unwrap()).is_empty() {
            assert!(Instant::now() < deadline, "QEMU never started");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(3));
        run.signal(sig);
        let code = wait_exit(&mut run, Duration::from_secs(60));
        if sig == libc::SIGTERM {
            assert_eq!(code, 130, "{name}");
            nothing_published(&out, "debian-web");
            assert!(out.join("failed").exists(), "logs not kept after {name}");
            // the interrupted build is not left `building` in the catalog
            assert_eq!(
                catalog_images(&work.path().join(format!("catalog-{name}"))),
                [("debian-web/1.0.0/1".to_string(), "failed".to_string())]
            );
        } else {
            assert_eq!(code, -1, "killed by a signal");
            // no cleanup can run, but nothing was published: publishing is a rename
            assert!(!out.join("debian-web").exists());
            assert_no_qemu(out.to_str().unwrap());
            the_next_kiln_cleans_up_after_a_killed_build(
                work.path(),
                &out,
                &work.path().join(format!("catalog-{name}")),
            );
        }
        assert_no_qemu(out.to_str().unwrap());
    }
}

/// After a SIGKILLed build of debian-web into `out` recorded in the catalog
/// in `data`: the next kiln that opens the catalog marks its entry failed,
/// and the next build into `out` removes its temporary folder (keeping its
/// logs), each saying so in one line. Nothing boots.
fn the_next_kiln_cleans_up_after_a_killed_build(work: &Path, out: &Path, data: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_DATA_DIR", data)
            .env("KILN_CACHE_DIR", work.join("probe-cache"))
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let killed: Vec<String> = std::fs::read_dir(out.join(".kiln-tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(killed.len(), 1, "the killed build's folder: {killed:?}");

    let (code, listed, err) = run(&["images", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("marked failed"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("debian-web/1.0.0/1"), "{err}");
    let list: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(list[0]["status"], "failed", "{list}");

    // a build whose parent cannot be fetched opens the output folder and fails
    std::fs::write(
        work.join("probe.yml"),
        "name: probe\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Hi\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo hi\"]\n",
    )
    .unwrap();
    let recipe = work.join("probe-recipe.yml");
    std::fs::write(
        &recipe,
        format!(
            "name: probe\nsemanticVersion: 1.0.0\nparentImage: {{url: \"http://127.0.0.1:9/none.qcow2\", sha256: {}}}\ncomponents:\n  - component: ./probe.yml\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "build",
        recipe.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("removed the temporary files of 1 interrupted build(s)"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains(&killed[0]), "{err}");
    nothing_published_tmp(out);
    let logs = out.join(format!("failed/debian-web-1.0.0-{}", killed[0]));
    assert!(logs.join("kiln.log").exists(), "{}", logs.display());
    assert!(logs.join("build-serial.log").exists(), "{}", logs.display());
}
