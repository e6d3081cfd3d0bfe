//! `kiln build` runs that are refused, killed or racing, without booting a
//! VM: a parent URL served slowly by a loopback HTTP server keeps a build in
//! its parent stage, and a build on a blank local disk is killed right after
//! its catalog entry is made.
//!
//! - a second build of the same name and version into the same output folder
//!   is refused at once, naming the first one's pid; `--force` starts;
//! - what SIGKILLed builds leave (their `.kiln-tmp/<id>` folders, their
//!   `building` catalog entries) is cleaned up by the next kiln, which says so.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::http::{HttpServer, Reply};
use support::kiln::{assert_no_qemu, wait_exit, KilnRun, Lines};

const COMPONENT: &str = r#"name: hello
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Hello
        action: ExecuteBash
        inputs:
          commands: ["echo hello"]
"#;

/// Writes `recipe.yml` (name `lockdemo`, version 1.0.0) with `parent` and a
/// one-step component into `dir`.
fn recipe(dir: &Path, parent: &str) -> PathBuf {
    std::fs::write(dir.join("hello.yml"), COMPONENT).unwrap();
    let path = dir.join("recipe.yml");
    std::fs::write(
        &path,
        format!(
            "name: lockdemo\nsemanticVersion: 1.0.0\nparentImage: {parent}\ncomponents:\n  - component: ./hello.yml\n"
        ),
    )
    .unwrap();
    path
}

/// Runs kiln to its end: (exit code, stdout, stderr).
fn kiln(args: &[&str], cache: &Path, data: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_CACHE_DIR", cache)
        .env("KILN_DATA_DIR", data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The build folders in `out/.kiln-tmp`.
fn build_folders(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join(".kiln-tmp"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_build_is_refused_and_killed_builds_are_cleaned_up_by_the_next() {
    let work = tempfile::tempdir().unwrap();
    let (cache, data, out) = (
        work.path().join("cache"),
        work.path().join("data"),
        work.path().join("out"),
    );
    // 16 MiB at 64 KiB per 200 ms: the download lasts a minute
    let server = HttpServer::start([(
        "/parent.qcow2",
        Reply::Slow {
            body: vec![7u8; 16 << 20],
            chunk: 64 << 10,
            pause: Duration::from_millis(200),
        },
    )])
    .await;
    let parent = format!(
        "{{url: \"{}\", sha256: {}}}",
        server.url("/parent.qcow2"),
        "ab".repeat(32)
    );
    let recipe = recipe(work.path(), &parent);
    let r = recipe.to_str().unwrap();
    let o = out.to_str().unwrap();

    let mut first = KilnRun::start(&["build", r, "--output", o, "--json"], &cache, &data);
    let mut first_out = Lines::new(first.child.stdout.take().unwrap());
    let _first_err = Lines::new(first.child.stderr.take().unwrap());
    first_out.wait_for("resolving the parent image", Duration::from_secs(60));

    // the same name and version into the same folder: refused at once
    let started = std::time::Instant::now();
    let (code, _, err) = kiln(&["build", r, "--output", o], &cache, &data);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "lockdemo 1.0.0 is being built by pid {}",
            first.pid()
        )),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        build_folders(&out).len(),
        1,
        "the refused build made no folder"
    );

    // --force starts anyway (it will publish only after the first ends)
    let mut forced = KilnRun::start(
        &["build", r, "--output", o, "--json", "--force"],
        &cache,
        &data,
    );
    let mut forced_out = Lines::new(forced.child.stdout.take().unwrap());
    let _forced_err = Lines::new(forced.child.stderr.take().unwrap());
    forced_out.wait_for("resolving the parent image", Duration::from_secs(60));
    assert_eq!(build_folders(&out).len(), 2);

    // both killed: no clean-up can run
    first.signal(libc::SIGKILL);
    forced.signal(libc::SIGKILL);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(30)), -1);
    assert_eq!(wait_exit(&mut forced, Duration::from_secs(30)), -1);
    let left = build_folders(&out);
    assert_eq!(left.len(), 2, "{left:?}");

    // the next build in this folder cleans up after them and says so; the
    // parent is gone now, so it fails in its parent stage
    server.route("/parent.qcow2", Reply::Status(404));
    let (code, _, err) = kiln(&["build", r, "--output", o], &cache, &data);
    assert_eq!(code, 1, "{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("removed the temporary files of"))
        .collect();
    assert_eq!(said.len(), 1, "one line: {err}");
    assert!(
        said[0].contains("2 interrupted build(s)")
            && left.iter().all(|id| said[0].contains(id.as_str())),
        "{err}"
    );
    assert!(err.contains("404"), "{err}");
    assert!(
        !out.join(".kiln-tmp").exists(),
        "temporary files left: {:?}",
        std::fs::read_dir(out.join(".kiln-tmp")).map(|d| d.count())
    );
    // the killed builds' logs were kept, as an interrupted build's are
    for id in &left {
        let logs = out.join(format!("failed/lockdemo-1.0.0-{id}"));
        assert!(logs.join("kiln.log").exists(), "{}", logs.display());
    }
    assert!(!out.join("lockdemo").exists(), "nothing was published");
}

#[test]
fn a_build_killed_after_its_catalog_entry_is_marked_failed_by_the_next_kiln() {
    let work = tempfile::tempdir().unwrap();
    let (cache, data, out) = (
        work.path().join("cache"),
        work.path().join("data"),
        work.path().join("out"),
    );
    // a blank disk: the build VM would never boot, but kiln is killed first
    let disk = work.path().join("blank.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("64M")
        .status()
        .unwrap();
    assert!(made.success());
    let recipe = recipe(work.path(), disk.to_str().unwrap());
    let o = out.to_str().unwrap();

    let mut run = KilnRun::start(
        &[
            "build",
            recipe.to_str().unwrap(),
            "--output",
            o,
            "--json",
            "--accel",
            "tcg",
        ],
        &cache,
        &data,
    );
    let mut stdout = Lines::new(run.child.stdout.take().unwrap());
    let _stderr = Lines::new(run.child.stderr.take().unwrap());
    stdout.wait_for("catalog build lockdemo/1.0.0/1", Duration::from_secs(120));
    run.signal(libc::SIGKILL);
    assert_eq!(wait_exit(&mut run, Duration::from_secs(30)), -1);
    assert_no_qemu(o);
    assert_eq!(build_folders(&out).len(), 1);

    // the next kiln that opens the catalog fails the entry, in one line
    let (code, listed, err) = kiln(&["images", "list", "--json"], &cache, &data);
    assert_eq!(code, 0, "{err}");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("marked failed"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("lockdemo/1.0.0/1"), "{err}");
    let list: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(list[0]["status"], "failed", "{list}");
    let (_, shown, _) = kiln(
        &["images", "show", "lockdemo/1.0.0/1", "--json"],
        &cache,
        &data,
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert!(
        shown["failure"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{shown}"
    );
    // once is enough
    let (_, _, err) = kiln(&["images", "list"], &cache, &data);
    assert!(!err.contains("marked failed"), "{err}");
}
