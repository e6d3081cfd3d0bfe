//! The scheduler of `kiln serve`, in process with an injected clock: due
//! cron jobs run their pipelines (two at once with two slots), the webhook
//! reaches a real HTTP server on loopback, invalid files are reported, the
//! HTTP API shows the state, and a restarted scheduler catches up missed
//! occurrences by the coalescing rule. The pipelines' builds fail at once
//! (their parent is not in the catalog), so no VM is needed here; the VM
//! test `pipeline_vm` runs real builds through `kiln serve`.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln::build::cache::Cache;
use kiln::build::run::OnError;
use kiln::catalog::Catalog;
use kiln::pipeline::runner::{RunSettings, Trigger};
use kiln::serve::daemon::{Clock, Daemon, ServeOptions};
use kiln::serve::http::{self, CatalogApi, Exposure};
use serde_json::Value;

struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn set(&self, t: &str) {
        *self.0.lock().unwrap() = at(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
}

fn pipeline(name: &str, cron: &str, hook: &str) -> String {
    format!(
        "name: {name}\nrecipe:\n  name: {name}-image\n  semanticVersion: 1.0.0\n  parentImage: kiln:missing/1.x.x\n  components:\n    - component: update-linux\nschedule: {{expression: \"{cron}\", timezone: UTC}}\nnotifications:\n  - webhook: {hook}/hooks/kiln?token=s3cr3t\n"
    )
}

fn options(root: &Path, parallel: usize) -> ServeOptions {
    ServeOptions {
        dir: root.join("pipelines"),
        parallel,
        settings: RunSettings {
            catalog: root.join("data/catalog.sqlite"),
            cache: Cache::new(root.join("cache")),
            qemu: "qemu-system-x86_64".into(),
            output: root.join("out"),
            if_changed: false,
            accel: None,
            on_error: OnError::Cleanup,
            json: false,
            echo: false,
            quiet: true,
            trigger: Trigger::Manual,
        },
        tick: Duration::from_millis(50),
        log: root.join("data/serve.log"),
    }
}

/// The next `n` webhook bodies (JSON), within 60 s.
async fn hooks(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    n: usize,
) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for _ in 0..n {
        let (line, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("a webhook within 60 s")
            .expect("the receiver runs");
        assert!(line.starts_with("POST /hooks/kiln?token=s3cr3t "), "{line}");
        out.push(serde_json::from_slice(&body).unwrap());
    }
    out.sort_by_key(|v| v["pipeline"].as_str().unwrap_or_default().to_string());
    out
}

async fn get(base: &str, path: &str) -> Value {
    let body = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Waits until `check` holds (within 10 s).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_jobs_run_notify_and_are_caught_up_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    let (hook, mut rx) = support::http::receiver(200).await;
    std::fs::write(
        dir.join("nightly.yml"),
        pipeline("nightly", "0 2 * * *", &hook),
    )
    .unwrap();
    std::fs::write(
        dir.join("hourly.yaml"),
        pipeline("hourly", "0 * * * *", &hook),
    )
    .unwrap();
    std::fs::write(dir.join("broken.yml"), "name: broken\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a pipeline").unwrap();
    let catalog = root.path().join("data/catalog.sqlite");
    let log = root.path().join("data/serve.log");

    // first start, 01:59:30: both pipelines are seen for the first time
    let clock = Arc::new(ManualClock(Mutex::new(at("2026-12-01T01:59:30Z"))));
    let daemon = Daemon::new(options(root.path(), 2), clock.clone()).unwrap();
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(CatalogApi::open(&catalog, daemon.view()).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = daemon.run(async {
        let _ = stopped.await;
    });
    let body = async {
        until("the first sighting is remembered", || {
            let c = Catalog::open(&catalog).unwrap();
            c.schedule_last("nightly").unwrap().is_some()
                && c.schedule_last("hourly").unwrap().is_some()
        })
        .await;
        let c = Catalog::open(&catalog).unwrap();
        assert_eq!(
            c.schedule_last("nightly").unwrap(),
            Some(at("2026-12-01T01:59:30Z"))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "nothing is due before 02:00");

        let health = get(&base, "/health").await;
        assert_eq!(health["status"], "ok");
        assert_eq!(health["pipelines"], 2);
        assert_eq!(health["parallel"], 2);
        let invalid = health["invalid"].as_array().unwrap();
        assert_eq!(invalid.len(), 1, "{health}");
        assert!(invalid[0]["file"].as_str().unwrap().ends_with("broken.yml"));
        let p = get(&base, "/v1/pipelines/nightly").await;
        assert_eq!(p["schedule"]["next"], "2026-12-01T02:00:00Z", "{p}");
        assert_eq!(p["running"], false);

        // 02:00:05: both are due; two slots, so both run
        clock.set("2026-12-01T02:00:05Z");
        let got = hooks(&mut rx, 2).await;
        for (v, name) in got.iter().zip(["hourly", "nightly"]) {
            assert_eq!(v["event"], "build-finished", "{v}");
            assert_eq!(v["outcome"], "failure", "{v}");
            assert_eq!(v["pipeline"], name, "{v}");
            assert_eq!(v["image"], format!("{name}-image"), "{v}");
            let why = v["failure"].as_str().unwrap();
            assert!(why.contains("missing"), "{why}");
        }
        until("the runs are recorded", || {
            let c = Catalog::open(&catalog).unwrap();
            c.schedule_last("nightly").unwrap() == Some(at("2026-12-01T02:00:00Z"))
        })
        .await;
        let p = get(&base, "/v1/pipelines/nightly").await;
        for _ in 0..100 {
            if p["lastRun"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let p = get(&base, "/v1/pipelines/nightly").await;
        assert_eq!(p["lastRun"]["outcome"], "failed", "{p}");
        assert_eq!(p["lastRun"]["scheduled"], "2026-12-01T02:00:00Z", "{p}");
        assert_eq!(p["schedule"]["next"], "2026-12-02T02:00:00Z", "{p}");
        // nothing more until the next occurrence
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "a run repeated");
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(
        async {
            tokio::select! {
                r = scheduler => r,
                () = http::serve(listener, api.clone(), std::future::pending()) => unreachable!(),
            }
        },
        body
    );
    ran.unwrap();
    drop(daemon);

    // restart three days later, at 03:30 on the 4th, with one slot: each
    // pipeline runs once for its latest occurrence, the missed ones coalesced
    let clock = Arc::new(ManualClock(Mutex::new(at("2026-12-04T03:30:00Z"))));
    let daemon = Daemon::new(options(root.path(), 1), clock).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = daemon.run(async {
        let _ = stopped.await;
    });
    let body = async {
        let got = hooks(&mut rx, 2).await;
        assert_eq!(got[0]["pipeline"], "hourly");
        assert_eq!(got[1]["pipeline"], "nightly");
        until("both occurrences are remembered", || {
            let c = Catalog::open(&catalog).unwrap();
            c.schedule_last("hourly").unwrap() == Some(at("2026-12-04T03:00:00Z"))
                && c.schedule_last("nightly").unwrap() == Some(at("2026-12-04T02:00:00Z"))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "a missed occurrence ran twice");
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(scheduler, body);
    ran.unwrap();
    drop(daemon);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("broken.yml is invalid and is not scheduled"),
        "{text}"
    );
    assert_eq!(
        text.matches("broken.yml is invalid").count(),
        2,
        "the invalid file is logged once per start: {text}"
    );
    assert!(
        text.contains("pipeline nightly: starting the run scheduled for 2026-12-01T02:00:00Z\n"),
        "{text}"
    );
    assert!(
        text.contains("pipeline nightly: starting the run scheduled for 2026-12-04T02:00:00Z (2 earlier missed occurrence(s) coalesced into it)"),
        "{text}"
    );
    assert!(
        text.contains("pipeline hourly: starting the run scheduled for 2026-12-04T03:00:00Z (72 earlier missed occurrence(s) coalesced into it)"),
        "{text}"
    );
    assert!(text.contains("pipeline nightly: failed: "), "{text}");
    assert!(text.contains("kiln serve stopped"), "{text}");
    assert!(
        !text.contains("s3cr3t"),
        "the webhook's token is in the log: {text}"
    );
}

/// `kiln serve` refuses a non-loopback API address (exit 2) before its
/// scheduler starts or writes a log; a missing folder is refused too.
#[test]
fn bad_serve_arguments_exit_2_and_start_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let dir = root.path().to_str().unwrap();
    let out = run(&["serve", dir, "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0") && err.contains("not a loopback address"),
        "{err}"
    );
    let out = run(&["serve", &format!("{dir}/missing")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a folder"),
        "{out:?}"
    );
    assert!(!data.join("serve.log").exists(), "a log was written");
}

/// Hostile files dropped into the served folder (a YAML alias bomb, deep
/// nesting, a file over the size limit, before and while the daemon runs)
/// are reported as invalid, each with its reason, and the daemon keeps
/// running and serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_in_the_folder_are_invalid_and_the_daemon_lives() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    let bomb = {
        let mut t = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            t.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        t
    };
    std::fs::write(dir.join("bomb.yml"), &bomb).unwrap();
    std::fs::write(dir.join("deep.yml"), "- ".repeat(100_000) + "x\n").unwrap();
    std::fs::File::create(dir.join("big.yml"))
        .unwrap()
        .set_len((16 << 20) + 1)
        .unwrap();
    let (hook, _rx) = support::http::receiver(200).await;
    std::fs::write(dir.join("ok.yml"), pipeline("ok", "0 2 * * *", &hook)).unwrap();
    let catalog = root.path().join("data/catalog.sqlite");
    let clock = Arc::new(ManualClock(Mutex::new(at("2026-12-01T01:00:00Z"))));
    let daemon = Daemon::new(options(root.path(), 1), clock).unwrap();
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(CatalogApi::open(&catalog, daemon.view()).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = daemon.run(async {
        let _ = stopped.await;
    });
    let invalid = |health: &Value| -> Vec<(String, String)> {
        health["invalid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let file = i["file"].as_str().unwrap();
                let name = Path::new(file).file_name().unwrap().to_string_lossy();
                (name.into_owned(), i["error"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let body = async {
        let mut health = Value::Null;
        for _ in 0..200 {
            health = get(&base, "/health").await;
            if health["pipelines"] == 1 && invalid(&health).len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["pipelines"], 1, "{health}");
        let found = invalid(&health);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["big.yml", "bomb.yml", "deep.yml"], "{health}");
        assert!(found[0].1.contains("larger than 16 MiB"), "{}", found[0].1);
        assert!(
            found[1].1.contains(":6:8: error[yaml-limit]"),
            "{}",
            found[1].1
        );
        assert!(
            found[2].1.contains("nested more than 128 levels"),
            "{}",
            found[2].1
        );
        // a bomb dropped while the daemon runs
        std::fs::write(dir.join("later.yml"), &bomb).unwrap();
        until("the new file is seen", || {
            std::fs::read_to_string(root.path().join("data/serve.log"))
                .unwrap_or_default()
                .contains("later.yml is invalid")
        })
        .await;
        let health = get(&base, "/health").await;
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(invalid(&health).len(), 4, "{health}");
        let p = get(&base, "/v1/pipelines/ok").await;
        assert_eq!(p["name"], "ok", "{p}");
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(
        async {
            tokio::select! {
                r = scheduler => r,
                () = http::serve(listener, api.clone(), std::future::pending()) => unreachable!(),
            }
        },
        body
    );
    ran.unwrap();
}

/// A pipeline whose build fails at boot: its "QEMU" (a script standing for
/// a guest that prints what it should not) puts a secret parameter value,
/// a URL password and a query token on its serial console and its standard
/// error, so they are in the failure text; its webhook has a token in the
/// path. An invalid pipeline's webhook URL holds a password and a token.
/// None of them shows in `serve.log`, `/health`, `/v1/pipelines`,
/// `/v1/builds`, `/v1/images`, the webhook's body, the catalog file, the
/// event files or the kept logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_texts_and_webhook_urls_are_never_shown() {
    const SECRET: &str = "svc-Secret-Jx81qd";
    const URL_PASSWORD: &str = "urlpw-Kq2r7";
    const QUERY_TOKEN: &str = "qtok-W3n6p";
    const HOOK_TOKEN: &str = "hooktok-T9c4v";
    const BAD_HOOK_PASSWORD: &str = "ftppw-L5m8z";
    let needles = [
        SECRET,
        URL_PASSWORD,
        QUERY_TOKEN,
        HOOK_TOKEN,
        BAD_HOOK_PASSWORD,
    ];
    let root = tempfile::tempdir().unwrap();
    let inputs = root.path().join("in");
    let dir = root.path().join("pipelines");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&inputs).unwrap();
    let base = inputs.join("base.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("64M")
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        inputs.join("c.yml"),
        "name: c\nschemaVersion: 1.0\nparameters:\n  - Token:\n      type: string\nphases:\n  - name: build\n    steps:\n      - name: Use\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo {{ Token }}\"]\n",
    )
    .unwrap();
    let qemu = inputs.join("fake-qemu");
    std::fs::write(
        &qemu,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in file,id=serial0,path=*) log=\"${{a#file,id=serial0,path=}}\";; esac; done\n\
             printf 'cloud-init: token is {SECRET}\\nfetching https://kiln:{URL_PASSWORD}@mirror.example/x?token={QUERY_TOKEN}\\n' > \"$log\"\n\
             echo \"qemu: {SECRET} https://kiln:{URL_PASSWORD}@mirror.example/?token={QUERY_TOKEN}\" >&2\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (hook, mut rx) = support::http::receiver(200).await;
    let recipe = format!(
        "recipe:\n  name: leaky-image\n  semanticVersion: 1.0.0\n  parentImage: {}\n  components:\n    - component: {}\n      parameters:\n        - {{name: Token, value: [{SECRET}], secret: true}}\n",
        base.display(),
        inputs.join("c.yml").display()
    );
    std::fs::write(
        dir.join("leaky.yml"),
        format!("name: leaky\n{recipe}schedule: {{expression: \"0 2 * * *\", timezone: UTC}}\nnotifications:\n  - webhook: {hook}/hooks/{HOOK_TOKEN}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.yml"),
        format!("name: broken\n{recipe}notifications:\n  - webhook: ftp://kiln:{BAD_HOOK_PASSWORD}@hooks.example/x/{HOOK_TOKEN}?token={QUERY_TOKEN}\n"),
    )
    .unwrap();
    let catalog = root.path().join("data/catalog.sqlite");
    let mut opts = options(root.path(), 1);
    opts.settings.qemu = qemu.display().to_string();
    opts.settings.accel = Some(kiln::vm::accel::AccelChoice::Tcg);

    let clock = Arc::new(ManualClock(Mutex::new(at("2026-12-01T01:59:30Z"))));
    let daemon = Daemon::new(opts, clock.clone()).unwrap();
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let api_base = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(CatalogApi::open(&catalog, daemon.view()).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = daemon.run(async {
        let _ = stopped.await;
    });
    let body = async {
        until("the first sighting is remembered", || {
            let c = Catalog::open(&catalog).unwrap();
            c.schedule_last("leaky").unwrap().is_some()
        })
        .await;
        clock.set("2026-12-01T02:00:05Z");
        let (line, hook_body) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("a webhook within 120 s")
            .unwrap();
        assert!(
            line.contains(HOOK_TOKEN),
            "the hook gets its own URL: {line}"
        );
        let event: Value = serde_json::from_slice(&hook_body).unwrap();
        assert_eq!(event["outcome"], "failure", "{event}");
        let failure = event["failure"].as_str().unwrap();
        assert!(
            failure.contains("qemu: ***"),
            "the failure text is kept: {failure}"
        );
        support::leak::assert_clean("the webhook's body", &hook_body, &needles);
        let mut answers = Vec::new();
        for _ in 0..200 {
            answers = Vec::new();
            for path in [
                "/health",
                "/v1/pipelines",
                "/v1/pipelines/leaky",
                "/v1/builds",
                "/v1/images",
            ] {
                answers.push((path, get(&api_base, path).await));
            }
            if answers[2].1["lastRun"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, leaky) = &answers[2];
        assert_eq!(leaky["lastRun"]["outcome"], "failed", "{leaky}");
        let detail = leaky["lastRun"]["detail"].as_str().unwrap();
        assert!(detail.contains("token is ***"), "{detail}");
        let (_, health) = &answers[0];
        let invalid = health["invalid"].as_array().unwrap();
        assert_eq!(invalid.len(), 1, "{health}");
        assert!(
            invalid[0]["error"]
                .as_str()
                .unwrap()
                .contains("its scheme is `ftp`"),
            "{health}"
        );
        let (_, builds) = &answers[3];
        assert_eq!(builds["builds"].as_array().unwrap().len(), 1, "{builds}");
        assert_eq!(builds["builds"][0]["status"], "failed", "{builds}");
        for (path, answer) in &answers {
            support::leak::assert_clean(path, answer.to_string().as_bytes(), &needles);
        }
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(
        async {
            tokio::select! {
                r = scheduler => r,
                () = http::serve(listener, api.clone(), std::future::pending()) => unreachable!(),
            }
        },
        body
    );
    ran.unwrap();
    drop(daemon);

    let log = std::fs::read_to_string(root.path().join("data/serve.log")).unwrap();
    assert!(log.contains("pipeline leaky: failed: "), "{log}");
    assert!(log.contains("broken.yml is invalid"), "{log}");
    // the catalog (SQLite file bytes), the event files, serve.log and the
    // failed build's logs (the serial console included)
    let data = support::leak::assert_tree_clean(&root.path().join("data"), &needles);
    let out = support::leak::assert_tree_clean(&root.path().join("out"), &needles);
    assert!(
        data >= 3 && out >= 2,
        "catalog, events, serve.log; kiln.log, serial log"
    );
    let serial: Vec<_> = support::leak::files_under(&root.path().join("out"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("build-serial.log"))
        .collect();
    assert_eq!(serial.len(), 1, "the serial log is kept");
    let text = std::fs::read_to_string(&serial[0]).unwrap();
    assert!(text.contains("token is ***"), "{text}");
}
