//! Pipeline files: every field read, inline recipes, and each problem
//! reported at its file:line:column with a field and a hint.

mod support;

use std::path::Path;

use kiln::pipeline::{self, Notification, RecipeSource, StartCondition};
use kiln::recipe::Network;

const FILE: &str = "p.yml";

fn errors(text: &str) -> Vec<(usize, usize, String, &'static str, String)> {
    pipeline::parse(FILE, text, Path::new("/p"))
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|d| (d.pos.line, d.pos.column, d.field, d.code, d.message))
        .collect()
}

#[test]
fn a_full_pipeline() {
    let text = r#"name: web-nightly
description: the web image, every night
recipe: ../recipes/web/recipe.yml
infrastructure:
  cpus: 4
  memoryMiB: 4096
  accelerator: tcg
  network: host
  timeouts: {bootSeconds: 600}
distribution:
  formats: [vmdk, ova]
  outputDirectories: [/srv/images, out]
  s3Prefix: s3://images/web/
  ami: {bucket: kiln-imports, region: us-east-1, copyToRegions: [{region: eu-west-1}]}
schedule:
  expression: "0 2 * * 1-5"
  timezone: Europe/Paris
startCondition: ifChanged
notifications:
  - webhook: https://hooks.example/kiln
  - command: [/usr/local/bin/notify, --channel, images]
retention: {keepLast: 5, maxAgeDays: 90}
"#;
    let p = pipeline::parse(FILE, text, Path::new("/p")).unwrap();
    assert_eq!(p.name, "web-nightly");
    let RecipeSource::Path(r) = &p.recipe else {
        panic!("{:?}", p.recipe)
    };
    assert_eq!(r, Path::new("/p/../recipes/web/recipe.yml"));
    assert_eq!(p.infrastructure.cpus, Some(4));
    assert_eq!(p.infrastructure.memory_mib, Some(4096));
    assert_eq!(p.infrastructure.timeouts.boot_seconds, Some(600));
    assert_eq!(p.infrastructure.network, Some(Network::Host));
    let formats: Vec<String> = p
        .distribution
        .formats
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(formats, ["vmdk", "ova"]);
    assert_eq!(
        p.distribution.output_directories,
        [Path::new("/srv/images"), Path::new("/p/out")]
    );
    assert_eq!(
        p.distribution.s3_prefix.as_deref(),
        Some("s3://images/web/")
    );
    let ami = p.distribution.ami.as_ref().unwrap();
    assert_eq!(ami.bucket, "kiln-imports");
    assert_eq!(ami.regions[0].region, "eu-west-1");
    assert_eq!(p.distribution.ami_sha256.as_ref().unwrap().len(), 64);
    let s = p.schedule.as_ref().unwrap();
    assert_eq!(s.expression(), "0 2 * * 1-5");
    assert_eq!(s.time_zone().name(), "Europe/Paris");
    assert_eq!(p.start_condition, StartCondition::IfChanged);
    assert_eq!(
        p.notifications,
        [
            Notification::Webhook("https://hooks.example/kiln".into()),
            Notification::Command(vec![
                "/usr/local/bin/notify".into(),
                "--channel".into(),
                "images".into()
            ]),
        ]
    );
    assert_eq!(p.retention.keep_last, Some(5));
    assert_eq!(p.retention.max_age.unwrap().num_days(), 90);
}

#[test]
fn an_inline_recipe_and_defaults() {
    let text = "name: base\nrecipe:\n  name: base\n  semanticVersion: 1.2.0\n  parentImage: kiln:debian/1.x.x\n  components:\n    - component: update-linux\nschedule: \"*/30 * * * *\"\n";
    let p = pipeline::parse(FILE, text, Path::new("/p")).unwrap();
    let RecipeSource::Inline(r) = &p.recipe else {
        panic!("{:?}", p.recipe)
    };
    assert_eq!(r.version.to_string(), "1.2.0");
    assert_eq!(r.parent.summary(), "kiln:debian/1.x.x");
    assert_eq!(p.start_condition, StartCondition::Always);
    assert!(p.notifications.is_empty());
    assert_eq!(p.retention, Default::default());
    assert_eq!(p.schedule.unwrap().time_zone().name(), "UTC");
}

#[test]
fn infrastructure_network_overrides_the_recipe() {
    let pipeline = |infrastructure: &str| {
        let text = format!("name: base\nrecipe:\n  name: base\n  semanticVersion: 1.2.0\n  parentImage: kiln:debian/1.x.x\n  components:\n    - component: update-linux\n  build: {{network: none}}\n{infrastructure}");
        let p = pipeline::parse(FILE, &text, Path::new("/p")).unwrap();
        pipeline::runner::recipe_of(&p).unwrap().0.build.network
    };
    assert_eq!(pipeline(""), Some(Network::None), "the recipe's setting");
    assert_eq!(
        pipeline("infrastructure: {network: outbound}\n"),
        Some(Network::Outbound)
    );
    assert_eq!(
        errors("name: b\nrecipe: r.yml\ninfrastructure: {network: hostt}\n"),
        [(
            3,
            27,
            "infrastructure.network".to_string(),
            "network",
            "kiln does not support the network `hostt`".to_string()
        )]
    );
}

#[test]
fn every_problem_has_a_position() {
    let text = r#"name: "bad name"
recipe:
  name: r
  semanticVersion: 1.x.0
  parentImage: kiln:base/x.1.x
  components: [{component: update-linux}]
distribution: {formats: [vmdkk], s3Prefix: images/web, amis: {}}
schedule: {expression: "61 * * * *", timezone: Mars/Olympus}
startCondition: whenChanged
notifications:
  - webhook: ftp://x
  - {webhook: "https://a", command: [x]}
  - command: []
retention: {}
"#;
    let e = errors(text);
    let at: Vec<(usize, usize, &str, &str)> = e
        .iter()
        .map(|(l, c, f, code, _)| (*l, *c, f.as_str(), *code))
        .collect();
    assert_eq!(
        at,
        [
            (1, 7, "name", "invalid-name"),
            (4, 20, "recipe.semanticVersion", "invalid-version"),
            (5, 16, "recipe.parentImage", "parent-image"),
            (7, 26, "distribution.formats[0]", "unknown-format"),
            (7, 44, "distribution.s3Prefix", "invalid-s3-prefix"),
            (7, 56, "distribution.amis", "unknown-key"),
            (8, 24, "schedule.expression", "invalid-schedule"),
            (8, 48, "schedule.timezone", "invalid-schedule"),
            (9, 17, "startCondition", "start-condition"),
            (11, 14, "notifications[0].webhook", "invalid-url"),
            (12, 5, "notifications[1]", "notification"),
            (13, 14, "notifications[2].command", "notification"),
            (14, 12, "retention", "retention"),
        ],
        "{e:#?}"
    );
}

#[tokio::test]
async fn the_webhook_receives_the_event_as_json() {
    use kiln::pipeline::notify::{send, BuildEvent, Outcome};
    let (base, mut rx) = support::http::receiver(200).await;
    let mut event = BuildEvent::new(Outcome::Success, "web-nightly", "web", "1.0.0/3");
    event.manifest = Some(serde_json::json!({"image": {"name": "web"}}));
    let url = format!("{base}/hooks/secret-token");
    send(&Notification::Webhook(url), &event).await.unwrap();
    let (line, body) = rx.recv().await.unwrap();
    assert_eq!(line, "POST /hooks/secret-token HTTP/1.1");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["outcome"], "success");
    assert_eq!(json["pipeline"], "web-nightly");
    assert_eq!(json["version"], "1.0.0/3");
    assert_eq!(json["manifest"]["image"]["name"], "web");

    // a refusing server is an error that does not show the token
    let (base, mut rx) = support::http::receiver(500).await;
    let url = format!("{base}/hooks/secret-token");
    let e = send(&Notification::Webhook(url), &event).await.unwrap_err();
    assert!(rx.recv().await.is_some());
    let text = format!("{e} {:?}", std::error::Error::source(&e));
    assert!(text.contains("answered HTTP 500"), "{text}");
    assert!(!text.contains("secret-token"), "{text}");
    // nothing listening: a request error, without the token either
    let url = format!("{base}/hooks/secret-token").replace(&base, "http://127.0.0.1:9");
    let e = send(&Notification::Webhook(url), &event).await.unwrap_err();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(!text.contains("secret-token"), "{text}");
}

#[tokio::test]
async fn a_command_receives_the_event_on_stdin() {
    use kiln::pipeline::notify::{send, BuildEvent, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let mut event = BuildEvent::new(Outcome::Failure, "p", "web", "1.0.0/1");
    event.failure = Some("component web failed".into());
    let argv = vec![
        "sh".to_string(),
        "-c".into(),
        format!("cat > {}", out.display()),
    ];
    send(&Notification::Command(argv), &event).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["outcome"], "failure");
    assert_eq!(json["failure"], "component web failed");
    let e = send(
        &Notification::Command(vec!["sh".into(), "-c".into(), "exit 3".into()]),
        &event,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("exit status: 3"), "{e}");
}

/// `kiln pipeline validate` and `kiln pipeline prune` (dry run, then for
/// real) against a real catalog: old builds go, a kept one and the parent
/// of another pipeline's image stay.
#[test]
fn prune_applies_retention_to_the_catalog() {
    use kiln::catalog::{Artifact, Catalog, FinishedBuild, NewBuild, Parent};
    let dir = tempfile::tempdir().unwrap();
    let cat_path = dir.path().join("c.sqlite");
    let file = dir.path().join("p.yml");
    std::fs::write(
        &file,
        "name: nightly\nrecipe: ./r.yml\nretention: {keepLast: 1}\n",
    )
    .unwrap();
    let mut c = Catalog::open(&cat_path).unwrap();
    let mut ids = Vec::new();
    for n in 0..4 {
        let folder = dir.path().join(format!("out/web/1.0.{n}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("manifest.json"), b"{}").unwrap();
        std::fs::write(folder.join("image.qcow2"), b"disk").unwrap();
        let b = c
            .begin_build(&NewBuild {
                name: "web".into(),
                version: format!("1.0.{n}").parse().unwrap(),
                inputs_digest: "d".into(),
                inputs: None,
                events: None,
                parent: None,
                pipeline: Some("nightly".into()),
            })
            .unwrap();
        c.finish_build(
            b.id,
            &FinishedBuild {
                artifacts: vec![Artifact {
                    path: folder.join("image.qcow2").display().to_string(),
                    format: "qcow2".into(),
                    sha256: "00".repeat(32),
                    size: 4,
                }],
                location: Some(folder.display().to_string()),
                ..Default::default()
            },
        )
        .unwrap();
        ids.push(b.id);
    }
    c.set_keep(ids[0], true).unwrap();
    // another pipeline's image built on 1.0.1
    c.begin_build(&NewBuild {
        name: "app".into(),
        version: "1.0.0".parse().unwrap(),
        inputs_digest: "d".into(),
        inputs: None,
        events: None,
        parent: Some(Parent {
            image_id: Some(ids[1]),
            sha256: "00".repeat(32),
            origin: "kiln:web/1.0.1/1".into(),
        }),
        pipeline: Some("app".into()),
    })
    .unwrap();
    drop(c);

    let kiln = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let f = file.to_str().unwrap();
    let cp = cat_path.to_str().unwrap();
    // `pipeline validate` checks the recipe file the pipeline names
    std::fs::write(
        dir.path().join("r.yml"),
        "name: web\nsemanticVersion: 1.0.0\nparentImage: kiln:debian/1.x.x\ncomponents:\n  - component: update-linux\n",
    )
    .unwrap();
    let (code, out, err) = kiln(&["pipeline", "validate", f]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pipeline nightly:") && out.contains("keep last 1"),
        "{out}"
    );
    let (code, out, err) = kiln(&["pipeline", "prune", f, "--catalog", cp, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "would delete web/1.0.2/1: older than the 1 newest successful builds",
            "keeps web/1.0.3/1: one of the 1 newest successful builds",
            "keeps web/1.0.1/1: parent of app/1.0.0/1, which stays",
            "keeps web/1.0.0/1: marked keep",
        ],
        "{out}"
    );
    assert!(dir.path().join("out/web/1.0.2").exists());
    let (code, out, err) = kiln(&["pipeline", "prune", f, "--catalog", cp]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted web/1.0.2/1"), "{out}");
    assert!(!dir.path().join("out/web/1.0.2").exists());
    assert!(dir.path().join("out/web/1.0.1").exists());
    let left: Vec<String> = Catalog::open(&cat_path)
        .unwrap()
        .list(Some("web"))
        .unwrap()
        .iter()
        .map(|i| i.full_name())
        .collect();
    assert_eq!(left, ["web/1.0.0/1", "web/1.0.1/1", "web/1.0.3/1"]);
    // a file with no retention is refused with a hint
    std::fs::write(&file, "name: nightly\nrecipe: ./r.yml\n").unwrap();
    let (code, _, err) = kiln(&["pipeline", "prune", f, "--catalog", cp]);
    assert_eq!(code, 2);
    assert!(err.contains("has no retention policy"), "{err}");
}
