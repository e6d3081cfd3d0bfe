//! Pipelines with real VM builds (QEMU under TCG, cloud-init, the Debian
//! base image the other VM tests use), three builds in all:
//!
//! 1. `kiln pipeline run --if-changed` on a new pipeline builds (there is
//!    no earlier build), publishes per build to its first output directory,
//!    copies to the second, notifies the webhook (a real loopback server)
//!    with the version and manifest, and records the pipeline in the catalog;
//! 2. the same command again skips, naming the build whose inputs match;
//! 3. after the component changes, `kiln serve` runs that pipeline and a
//!    second one at their cron time, two builds at once (two slots); a
//!    manual run of the busy pipeline is refused by its lock; both builds
//!    publish with distinct build numbers, the changed pipeline says what
//!    changed, its retention (keepLast 1) removes build 1, the HTTP API
//!    lists the builds, and SIGTERM leaves no QEMU behind. The second
//!    pipeline also uploads its image to an S3 prefix and imports it as an
//!    AMI (moto with the VM Import peer), so a pipeline's AWS distribution
//!    runs inside a real build.
//!
//! The component plants distinctive secrets in every build: a secret
//! parameter (echoed, and printed under `set -x` into the stderr of a step
//! that fails with `onFailure: Ignore`) and a WebDownload URL with a
//! password and a `token=` query (from a real loopback server). At the end
//! every published file, the catalog file, the event files, `serve.log`,
//! every API answer, the webhook bodies and kiln's output are searched for
//! them.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::Value;
use support::kiln::{assert_no_qemu, catalog_images, wait_exit, KilnRun, Lines};
use support::moto::{set_dummy_aws_env, MotoServer, REGION};

/// The secret parameter's value.
const SECRET: &str = "pvm-Secret-Xq58tr";
/// The password in the WebDownload URL.
const URL_PASSWORD: &str = "pvm-urlpw-Ha27k";
/// The `token=` of the WebDownload URL.
const QUERY_TOKEN: &str = "pvm-qtok-Me94w";
const NEEDLES: [&str; 3] = [SECRET, URL_PASSWORD, QUERY_TOKEN];

const COMPONENT: &str = r#"name: hello
schemaVersion: 1.0
parameters:
  - Token:
      type: string
phases:
  - name: build
    steps:
      - name: Write
        action: ExecuteBash
        inputs:
          commands: ["echo 'hello VERSION' > /etc/kiln-hello"]
      - name: EchoSecret
        action: ExecuteBash
        inputs:
          commands: ["echo 'the token is {{ Token }}'"]
      - name: Fetch
        action: WebDownload
        inputs:
          - source: "DOWNLOAD_URL"
            destination: /tmp/kiln-fetched/file.txt
      - name: FailsUnderSetX
        action: ExecuteBash
        onFailure: Ignore
        inputs:
          commands:
            - set -x
            - t='{{ Token }}'
            - echo "the secret is $t, from DOWNLOAD_URL" >&2
            - exit 3
  - name: test
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands: ["grep -qx 'hello VERSION' /etc/kiln-hello"]
"#;

/// The recipe, on the test base image as a file parent: a bootstrap
/// parent would put the Debian mirrors' package index into the inputs, and
/// a mirror update between two runs would turn the expected skip into a
/// build (the index digest is tested in parent_image.rs).
fn recipe(base: &Path) -> String {
    format!(
        "name: tiny\nsemanticVersion: 1.0.0\nparentImage: \"{}\"\ncomponents:\n  - component: ./hello.yml\n    parameters:\n      - {{name: Token, value: [{SECRET}], secret: true}}\n",
        base.display()
    )
}

/// The component, writing `version`, downloading from `url` (with the URL
/// password and token added).
fn write_component(dir: &Path, version: &str, url: &str) {
    let url = url.replacen("http://", &format!("http://kiln:{URL_PASSWORD}@"), 1)
        + &format!("?token={QUERY_TOKEN}");
    let text = COMPONENT
        .replace("VERSION", version)
        .replace("DOWNLOAD_URL", &url);
    std::fs::write(dir.join("hello.yml"), text).unwrap();
}

/// A pipeline file for the shared recipe; `distribution` adds keys to its
/// `distribution` map.
fn pipeline(name: &str, extra: &str, outputs: &[&Path], distribution: &str) -> String {
    let outputs: Vec<String> = outputs
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        "name: {name}\nrecipe: ../recipe.yml\ninfrastructure: {{cpus: 1, memoryMiB: 1024}}\ndistribution: {{outputDirectories: [{}]{distribution}}}\n{extra}",
        outputs.join(", ")
    )
}

/// Runs kiln to the end; (exit code, stdout lines, stderr lines).
fn kiln(
    args: &[&str],
    cache: &Path,
    data: &Path,
    limit: Duration,
) -> (i32, Vec<String>, Vec<String>) {
    let mut run = KilnRun::start(args, cache, data);
    let mut out = Lines::new(run.child.stdout.take().unwrap());
    let mut err = Lines::new(run.child.stderr.take().unwrap());
    let code = wait_exit(&mut run, limit);
    (
        code,
        out.rest(Duration::from_secs(5)),
        err.rest(Duration::from_secs(5)),
    )
}

/// [`kiln`] on a blocking thread, so the webhook receiver keeps running.
async fn kiln_async(
    args: &[&str],
    cache: &Path,
    data: &Path,
    limit: Duration,
) -> (i32, Vec<String>, Vec<String>) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (cache, data) = (cache.to_path_buf(), data.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kiln(&args, &cache, &data, limit)
    })
    .await
    .unwrap()
}

/// The last JSON object printed.
fn outcome(lines: &[String]) -> Value {
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('{') && l.contains("\"outcome\""))
        .unwrap_or_else(|| panic!("no outcome line in {lines:?}"));
    serde_json::from_str(line).unwrap()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn wait_for_file_line(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line with {needle:?} in {} within {limit:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn get_json(url: String) -> Value {
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_changed_builds_skips_then_serve_builds_two_at_once() {
    // a local AWS (moto + the VM Import peer) for the S3 copy and the AMI
    let peer = MotoServer::start_vmie();
    set_dummy_aws_env();
    std::env::set_var("AWS_ENDPOINT_URL", peer.endpoint());
    peer.bucket("kiln-imports").await;
    let s3 = peer.bucket("kiln-images").await;
    let home = kiln::aws::Clients::new(Some(REGION)).await;
    kiln::aws::role::setup(&home.iam, "vmimport", "kiln-imports")
        .await
        .expect("create the vmimport role");
    let cache = support::base_image::test_cache().root;
    let base = tokio::task::spawn_blocking(support::base_image::base_image)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let data = work.join("data");
    let pipelines = work.join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(work.join("recipe.yml"), recipe(&base)).unwrap();
    let files = support::http::HttpServer::start([(
        "/file.txt",
        support::http::Reply::Body(b"fetched\n".to_vec()),
    )])
    .await;
    let download = files.url("/file.txt");
    write_component(work, "v1", &download);
    // what kiln printed, searched for the secrets at the end
    let mut printed: Vec<String> = Vec::new();
    let (out1, out2, out_b) = (work.join("out1"), work.join("out2"), work.join("out-b"));
    let (hook, mut hooks) = support::http::receiver(200).await;
    let nightly = pipelines.join("nightly.yml");
    let nightly_text = |schedule: &str| {
        pipeline(
            "tiny-nightly",
            &format!("startCondition: ifChanged\nnotifications: [{{webhook: \"{hook}/kiln\"}}]\nretention: {{keepLast: 1}}\n{schedule}"),
            &[&out1, &out2],
            "",
        )
    };
    std::fs::write(&nightly, nightly_text("")).unwrap();
    let nightly_arg = nightly.to_str().unwrap().to_string();

    // 1. the first run builds
    let (code, out, err) = kiln_async(
        &["pipeline", "run", &nightly_arg, "--if-changed", "--json"],
        &cache,
        &data,
        Duration::from_secs(45 * 60),
    )
    .await;
    assert_eq!(code, 0, "the first run failed:\n{}", err.join("\n"));
    printed.extend(out.iter().chain(&err).cloned());
    let first = outcome(&out);
    assert_eq!(first["outcome"], "built", "{first}");
    assert_eq!(first["image"], "tiny/1.0.0/1", "{first}");
    assert_eq!(
        first["reasons"][0], "no successful build of this pipeline yet",
        "{first}"
    );
    let dir1 = out1.join("tiny/1.0.0/1");
    assert_eq!(PathBuf::from(first["dir"].as_str().unwrap()), dir1);
    let m1 = manifest(&dir1);
    assert_eq!(m1["image"]["build"], 1);
    let copy = out2.join("tiny/1.0.0/1");
    assert_eq!(manifest(&copy)["buildId"], m1["buildId"]);
    assert_eq!(
        std::fs::read(copy.join("image.qcow2")).unwrap(),
        std::fs::read(dir1.join("image.qcow2")).unwrap()
    );
    let (line, body) = tokio::time::timeout(Duration::from_secs(10), hooks.recv())
        .await
        .expect("the webhook was called")
        .unwrap();
    assert!(line.starts_with("POST /kiln "), "{line}");
    support::leak::assert_clean("the first webhook body", &body, &NEEDLES);
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(event["pipeline"], "tiny-nightly");
    assert_eq!(event["version"], "1.0.0/1");
    assert_eq!(event["manifest"]["buildId"], m1["buildId"]);
    assert_eq!(
        catalog_images(&data),
        [("tiny/1.0.0/1".to_string(), "available".to_string())]
    );
    let events = std::fs::read_to_string(
        data.join("events")
            .join(format!("{}.jsonl", m1["buildId"].as_str().unwrap())),
    )
    .unwrap();
    assert!(events.lines().next().unwrap().contains("\"build-start\""));
    assert!(events
        .lines()
        .last()
        .unwrap()
        .contains("\"build-finished\""));
    // the secrets were there, masked: echoed, in a failure under set -x,
    // in the WebDownload's inputs
    let logs1 = dir1.join("logs");
    let toe: Vec<PathBuf> = support::leak::files_under(&logs1)
        .into_iter()
        .filter(|p| p.ends_with("detailedoutput.json") || p.ends_with("console.log"))
        .collect();
    let toe_text: String = toe
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for shown in [
        "the token is ***",
        "the secret is ***",
        "kiln:***@127.0.0.1",
        "token=***",
    ] {
        assert!(toe_text.contains(shown), "{shown:?} not in {toe:?}");
    }
    assert_eq!(
        m1["components"][0]["parameters"]["Token"], "<redacted>",
        "{m1}"
    );
    assert_eq!(files.hits("/file.txt"), 1, "the download ran");

    // 2. the same inputs: skipped, saying which build they match
    let (code, out, err) = kiln_async(
        &["pipeline", "run", &nightly_arg, "--if-changed", "--json"],
        &cache,
        &data,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    printed.extend(out.iter().chain(&err).cloned());
    let second = outcome(&out);
    assert_eq!(second["outcome"], "skipped", "{second}");
    let reason = second["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("inputs unchanged since tiny/1.0.0/1"),
        "{reason}"
    );
    assert_eq!(catalog_images(&data).len(), 1);
    assert!(hooks.try_recv().is_err(), "a skipped run notified");

    // 3. the component changes; both pipelines are due in ~40 s under serve
    write_component(work, "v2", &download);
    let due = Utc::now() + chrono::Duration::seconds(40);
    let cron = format!(
        "schedule: {{expression: \"{} {} {} * * *\", timezone: UTC}}\n",
        due.second(),
        due.minute(),
        due.hour()
    );
    std::fs::write(&nightly, nightly_text(&cron)).unwrap();
    std::fs::write(
        pipelines.join("weekly.yml"),
        pipeline(
            "tiny-weekly",
            &format!("notifications: [{{webhook: \"{hook}/kiln\"}}]\n{cron}"),
            &[&out_b],
            ", s3Prefix: \"s3://kiln-images/weekly\", ami: {bucket: kiln-imports, viaSnapshot: true, tags: {pipeline: tiny-weekly}}",
        ),
    )
    .unwrap();
    let log = data.join("serve.log");
    let mut serve = KilnRun::start(
        &[
            "serve",
            pipelines.to_str().unwrap(),
            "--parallel",
            "2",
            "--listen",
            "127.0.0.1:0",
        ],
        &cache,
        &data,
    );
    let _serve_out = Lines::new(serve.child.stdout.take().unwrap());
    let _serve_err = Lines::new(serve.child.stderr.take().unwrap());
    let api_line = wait_for_file_line(&log, "HTTP API on http://", Duration::from_secs(30));
    let api = api_line
        .split("HTTP API on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    for name in ["tiny-nightly", "tiny-weekly"] {
        wait_for_file_line(
            &log,
            &format!("pipeline {name}: starting the run scheduled for"),
            Duration::from_secs(120),
        );
    }
    // the busy pipeline refuses a manual run at once
    let (code, _, err) = kiln_async(
        &["pipeline", "run", &nightly_arg],
        &cache,
        &data,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.iter()
            .any(|l| l.contains("pipeline tiny-nightly is already running")),
        "{err:?}"
    );
    let health: Value = get_json(format!("{api}/health")).await;
    assert_eq!(health["running"], 2, "{health}");

    // both builds finish and notify
    let mut got = Vec::new();
    for _ in 0..2 {
        let (_, body) = tokio::time::timeout(Duration::from_secs(60 * 60), hooks.recv())
            .await
            .expect("both scheduled builds notified within an hour")
            .unwrap();
        got.push(serde_json::from_slice::<Value>(&body).unwrap());
    }
    got.sort_by_key(|v| v["pipeline"].as_str().unwrap().to_string());
    for v in &got {
        assert_eq!(v["outcome"], "success", "{v}");
        support::leak::assert_clean("a webhook body", v.to_string().as_bytes(), &NEEDLES);
    }
    let versions: Vec<&str> = got.iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert!(
        versions == ["1.0.0/2", "1.0.0/3"] || versions == ["1.0.0/3", "1.0.0/2"],
        "{versions:?}"
    );
    let built = wait_for_file_line(
        &log,
        "pipeline tiny-nightly: built: ",
        Duration::from_secs(60),
    );
    assert!(built.contains("changed since tiny/1.0.0/1"), "{built}");
    wait_for_file_line(
        &log,
        "pipeline tiny-weekly: built: ",
        Duration::from_secs(60),
    );

    // retention: keepLast 1 removed build 1 of tiny-nightly (and its folder)
    let nightly_build = versions[0].rsplit('/').next().unwrap();
    assert!(!dir1.exists(), "build 1 was not pruned");
    assert!(out1
        .join("tiny/1.0.0")
        .join(nightly_build)
        .join("manifest.json")
        .is_file());
    let mut images = catalog_images(&data);
    images.sort();
    assert_eq!(
        images,
        [
            ("tiny/1.0.0/2".to_string(), "available".to_string()),
            ("tiny/1.0.0/3".to_string(), "available".to_string())
        ]
    );
    let weekly_build = versions[1].rsplit('/').next().unwrap();
    assert!(out_b
        .join("tiny/1.0.0")
        .join(weekly_build)
        .join("manifest.json")
        .is_file());

    // tiny-weekly also went to S3 (every file, the manifest among them)
    // and became an AMI (via ImportSnapshot), recorded in its manifest
    let weekly_dir = out_b.join("tiny/1.0.0").join(weekly_build);
    let listed = s3
        .list_objects_v2()
        .bucket("kiln-images")
        .prefix(format!("weekly/tiny/1.0.0/{weekly_build}/"))
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    for file in ["image.qcow2", "manifest.json", "logs/kiln.log"] {
        let key = format!("weekly/tiny/1.0.0/{weekly_build}/{file}");
        assert!(keys.contains(&key.as_str()), "{key} not in {keys:?}");
    }
    let uploaded = s3
        .get_object()
        .bucket("kiln-images")
        .key(format!("weekly/tiny/1.0.0/{weekly_build}/manifest.json"))
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        uploaded.as_ref(),
        std::fs::read(weekly_dir.join("manifest.json")).unwrap()
    );
    let wm = manifest(&weekly_dir);
    let amis = wm["amis"].as_array().unwrap();
    assert_eq!(amis.len(), 1, "{wm}");
    assert_eq!(amis[0]["region"], REGION);
    let found = home
        .ec2
        .describe_images()
        .image_ids(amis[0]["amiId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(found.images()[0].name(), Some("tiny-1.0.0"), "{found:?}");
    assert_eq!(
        manifest(&out1.join("tiny/1.0.0").join(nightly_build))["amis"],
        serde_json::json!([])
    );

    let builds: Value = get_json(format!("{api}/v1/builds?pipeline=tiny-nightly")).await;
    let builds = builds["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0]["status"], "available");
    let p: Value = get_json(format!("{api}/v1/pipelines/tiny-weekly")).await;
    assert_eq!(p["lastRun"]["outcome"], "built", "{p}");

    // no secret in any API answer
    let mut paths: Vec<String> = [
        "/health",
        "/v1/pipelines",
        "/v1/pipelines/tiny-nightly",
        "/v1/pipelines/tiny-weekly",
        "/v1/builds",
        "/v1/images",
    ]
    .map(String::from)
    .to_vec();
    let all: Value = get_json(format!("{api}/v1/builds")).await;
    for b in all["builds"].as_array().unwrap() {
        paths.push(format!("/v1/builds/{}", b["id"]));
        paths.push(format!("/v1/images/{}", b["id"]));
    }
    for path in &paths {
        let answer = get_json(format!("{api}{path}")).await;
        support::leak::assert_clean(path, answer.to_string().as_bytes(), &NEEDLES);
    }

    serve.signal(libc::SIGTERM);
    let code = tokio::task::spawn_blocking(move || {
        let code = wait_exit(&mut serve, Duration::from_secs(60));
        drop(serve);
        code
    })
    .await
    .unwrap();
    assert_eq!(code, 130);
    assert_no_qemu(work.to_str().unwrap());

    // no secret in any published file (disk images aside: what components
    // leave in the guest is the product), the catalog file, the event
    // files, serve.log, nor in what kiln printed
    for dir in [&out1, &out2, &out_b, &data] {
        let checked = support::leak::assert_tree_clean(dir, &NEEDLES);
        assert!(checked > 0, "nothing in {}", dir.display());
    }
    assert!(data.join("serve.log").is_file() && data.join("events").is_dir());
    support::leak::assert_clean("kiln's output", printed.join("\n").as_bytes(), &NEEDLES);
}
