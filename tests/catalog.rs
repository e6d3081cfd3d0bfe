//! The image catalog against real SQLite files: schema and migrations,
//! build numbers (also from two processes' worth of connections at once),
//! wildcard resolution, statuses, and refused deletions.

mod support;

use std::path::Path;

use kiln::catalog::{
    schema, Catalog, CatalogError, FinishedBuild, ImageRef, NewBuild, Parent, Status,
};
use kiln::recipe::{Version, VersionFilter};

fn new(name: &str, version: &str) -> NewBuild {
    support::catalog::new_build(name, version, None)
}

fn done(dir: &str) -> FinishedBuild {
    FinishedBuild {
        amis: vec![],
        test_results: Some(serde_json::json!({"rebootTest": "success"})),
        ..support::catalog::published(dir, 1 << 40)
    }
}

/// Builds and finishes `name/version`, returning its id.
fn publish(c: &mut Catalog, name: &str, version: &str) -> i64 {
    let b = c.begin_build(&new(name, version)).unwrap();
    c.finish_build(b.id, &done(&format!("/out/{name}/{version}")))
        .unwrap();
    b.id
}

#[test]
fn build_numbers_count_per_name_and_version_and_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/catalog.sqlite");
    let mut c = Catalog::open(&path).unwrap();
    let a = c.begin_build(&new("web", "1.0.0")).unwrap();
    let b = c.begin_build(&new("web", "1.0.0")).unwrap();
    let other = c.begin_build(&new("web", "1.0.1")).unwrap();
    let db = c.begin_build(&new("db", "1.0.0")).unwrap();
    assert_eq!((a.build, b.build, other.build, db.build), (1, 2, 1, 1));

    c.finish_build(a.id, &done("/out/web/1.0.0")).unwrap();
    c.fail_build(b.id, "component web failed", Some("/out/failed/web"))
        .unwrap();
    let img = c.get(a.id).unwrap();
    assert_eq!(img.status, Status::Available);
    assert_eq!(img.full_name(), "web/1.0.0/1");
    assert_eq!(img.disk().unwrap().size, 1 << 40);
    assert_eq!(img.test_results.as_ref().unwrap()["rebootTest"], "success");
    assert!(img.finished_at.is_some());
    let failed = c.get(b.id).unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.failure.as_deref(), Some("component web failed"));
    // a failed build cannot be finished afterwards
    assert!(matches!(
        c.finish_build(b.id, &done("/x")),
        Err(CatalogError::WrongStatus { .. })
    ));
    // the build number is never reused, even after a failure
    assert_eq!(c.begin_build(&new("web", "1.0.0")).unwrap().build, 3);
    drop(c);
    // reopening keeps everything
    let c = Catalog::open(&path).unwrap();
    assert_eq!(c.list(Some("web")).unwrap().len(), 4);
    assert_eq!(c.list(None).unwrap().len(), 5);
    let json = serde_json::to_value(c.get(a.id).unwrap()).unwrap();
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["status"], "available");
}

#[test]
fn wildcards_resolve_to_the_newest_available_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    publish(&mut c, "base", "1.2.0");
    let newest_1 = publish(&mut c, "base", "1.10.0");
    let second = publish(&mut c, "base", "1.10.0");
    let two = publish(&mut c, "base", "2.0.0");
    // a newer build that is still building or failed is not resolved
    c.begin_build(&new("base", "1.10.1")).unwrap();
    let f = c.begin_build(&new("base", "1.10.2")).unwrap();
    c.fail_build(f.id, "boom", None).unwrap();
    let resolve = |c: &Catalog, filter: &str| {
        c.resolve("base", &filter.parse::<VersionFilter>().unwrap())
            .unwrap()
            .map(|i| i.id)
    };
    assert_eq!(resolve(&c, "1.x.x"), Some(second));
    assert_eq!(resolve(&c, "1.10.x"), Some(second));
    assert_eq!(resolve(&c, "1.10.0/1"), Some(newest_1));
    assert_eq!(resolve(&c, "x.x.x"), Some(two));
    assert_eq!(resolve(&c, "3.x.x"), None);
    // deprecated images are skipped by wildcards, but found by exact reference
    c.deprecate(second).unwrap();
    assert_eq!(resolve(&c, "1.x.x"), Some(newest_1));
    let exact = c.find(&ImageRef::parse("base/1.10.0/2").unwrap()).unwrap();
    assert_eq!(exact.status, Status::Deprecated);
    assert!(matches!(
        c.find(&ImageRef::parse("base/9.x.x").unwrap()),
        Err(CatalogError::NotFound { .. })
    ));
    assert_eq!(c.last_successful("base").unwrap().unwrap().id, two);
    assert!(c.last_successful("nothing").unwrap().is_none());
}

#[test]
fn deleting_parents_and_kept_images_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    let base = publish(&mut c, "base", "1.0.0");
    let mut child = new("web", "1.0.0");
    child.parent = Some(Parent {
        image_id: Some(base),
        sha256: "cd".repeat(32),
        origin: "kiln:base/1.x.x".into(),
    });
    child.pipeline = Some("web-nightly".into());
    let web = c.begin_build(&child).unwrap();
    let e = c.delete(base).unwrap_err();
    assert!(matches!(e, CatalogError::ParentOfOthers { .. }), "{e}");
    assert!(e.to_string().contains("web/1.0.0/1"), "{e}");
    // a building image cannot be deleted
    assert!(matches!(
        c.delete(web.id),
        Err(CatalogError::WrongStatus { .. })
    ));
    c.finish_build(web.id, &done("/out/web")).unwrap();
    assert_eq!(
        c.last_successful_of_pipeline("web-nightly")
            .unwrap()
            .unwrap()
            .id,
        web.id
    );
    assert_eq!(c.get(web.id).unwrap().parent.unwrap().image_id, Some(base));
    c.set_keep(web.id, true).unwrap();
    assert!(matches!(c.delete(web.id), Err(CatalogError::Kept { .. })));
    c.set_keep(web.id, false).unwrap();
    let removed = c.delete(web.id).unwrap();
    assert_eq!(removed.artifacts.len(), 1);
    // with the child gone the parent can go too, with its artifacts
    c.delete(base).unwrap();
    assert!(c.list(None).unwrap().is_empty());
    assert!(matches!(c.get(base), Err(CatalogError::NotFound { .. })));
}

/// A catalog made by schema version 1 (before keep marks, pipelines and
/// AMIs) is migrated on open with its rows kept.
#[test]
fn an_old_catalog_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO images (name, major, minor, patch, build, status, inputs_digest, created_at)
             VALUES ('old', 1, 2, 3, 4, 'available', 'd', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    }
    let mut c = Catalog::open(&path).unwrap();
    let old = c.list(Some("old")).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].full_name(), "old/1.2.3/4");
    assert!(!old[0].keep);
    assert_eq!(c.begin_build(&new("old", "1.2.3")).unwrap().build, 5);
    drop(c);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::current_version());
    assert_eq!(
        conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "wal"
    );
}

#[test]
fn a_newer_catalog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", schema::current_version() + 1)
        .unwrap();
    drop(conn);
    let e = Catalog::open(&path).err().unwrap();
    assert!(matches!(e, CatalogError::NewerSchema { .. }), "{e}");
}

/// Four connections (as four kiln processes would have) begin builds of the
/// same image at once on a fresh catalog: migration happens once, and every
/// build gets its own number.
#[test]
fn concurrent_builds_get_distinct_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Catalog::open(&path).unwrap();
                (0..25)
                    .map(|_| c.begin_build(&new("web", "1.0.0")).unwrap().build)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (1..=100).collect::<Vec<u64>>());
    let v: Version = "1.0.0".parse().unwrap();
    assert!(Catalog::open(&path)
        .unwrap()
        .list(None)
        .unwrap()
        .iter()
        .all(|i| i.version == v));
}

fn kiln(catalog: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("images")
        .arg("--catalog")
        .arg(catalog)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `kiln images` on a catalog with a real published folder: list, show,
/// refused and accepted deletes (the folder goes too), deprecate, keep.
#[test]
fn images_command_lists_shows_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let cat_path = dir.path().join("c.sqlite");
    let folder = dir.path().join("out/web/1.0.0");
    std::fs::create_dir_all(folder.join("logs")).unwrap();
    std::fs::write(folder.join("image.qcow2"), b"disk").unwrap();
    std::fs::write(folder.join("manifest.json"), b"{}").unwrap();
    let mut c = Catalog::open(&cat_path).unwrap();
    let base = publish(&mut c, "base", "1.0.0");
    let mut web = new("web", "1.0.0");
    web.parent = Some(Parent {
        image_id: Some(base),
        sha256: "ef".repeat(32),
        origin: "kiln:base/1.0.0/1".into(),
    });
    let w = c.begin_build(&web).unwrap();
    c.finish_build(w.id, &done(folder.to_str().unwrap()))
        .unwrap();
    drop(c);

    let (code, out, _) = kiln(&cat_path, &["list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("IMAGE"), "{out}");
    assert!(
        out.contains("web/1.0.0/1") && out.contains("kiln:base/1.0.0/1"),
        "{out}"
    );
    let (code, out, _) = kiln(&cat_path, &["list", "web", "--json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["status"], "available");
    let (code, out, _) = kiln(&cat_path, &["show", "web/1.x.x"]);
    assert_eq!(code, 0);
    assert!(out.contains("image:    web/1.0.0/1"), "{out}");

    let (code, _, err) = kiln(&cat_path, &["delete", "base/1.0.0/1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the parent of web/1.0.0/1"), "{err}");
    let (code, _, err) = kiln(&cat_path, &["delete", "web/1.x.x"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not name one build"), "{err}");
    let (code, _, err) = kiln(&cat_path, &["show", "web/x.1.x"]);
    assert_eq!(code, 2);
    assert!(err.contains("may only be followed by wildcards"), "{err}");

    assert_eq!(kiln(&cat_path, &["keep", "web/1.0.0/1"]).0, 0);
    let (code, _, err) = kiln(&cat_path, &["delete", "web/1.0.0/1"]);
    assert_eq!(code, 2);
    assert!(err.contains("marked keep"), "{err}");
    assert_eq!(kiln(&cat_path, &["keep", "--off", "web/1.0.0/1"]).0, 0);
    let (code, out, err) = kiln(&cat_path, &["delete", "web/1.0.0/1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted web/1.0.0/1"), "{out}");
    assert!(!folder.exists());

    let (code, out, _) = kiln(&cat_path, &["deprecate", "base/1.0.0/1", "--json"]);
    assert_eq!(code, 0);
    let img: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(img["status"], "deprecated");
    let (code, _, err) = kiln(&cat_path, &["show", "base/1.x.x"]);
    assert_eq!(code, 2);
    assert!(err.contains("no image base/1.x.x"), "{err}");
}

/// A recipe's `parentImage: kiln:base/1.x.x` parses (and a misplaced
/// wildcard is a positioned diagnostic), then resolves to the newest
/// available build's disk, whose digest is checked.
#[test]
fn kiln_parent_images_parse_and_resolve() {
    use kiln::catalog::parent;
    use kiln::recipe::ParentImage;
    let recipe = |p: &str| {
        format!("name: web\nsemanticVersion: 1.0.0\nparentImage: {p}\ncomponents:\n  - component: update-linux\n")
    };
    let r = kiln::recipe::parse("r.yml", &recipe("kiln:base/1.x.x"), Path::new("/r")).unwrap();
    let ParentImage::Catalog { name, filter } = &r.parent else {
        panic!("{:?}", r.parent)
    };
    assert_eq!(r.parent.summary(), "kiln:base/1.x.x");
    let d = kiln::recipe::parse("r.yml", &recipe("kiln:base/x.1.x"), Path::new("/r")).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].pos.line, d[0].pos.column, d[0].code),
        (3, 14, "parent-image")
    );
    assert!(
        d[0].message.contains("may only be followed by wildcards"),
        "{}",
        d[0].message
    );

    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    assert!(matches!(
        parent::resolve(&c, name, filter),
        Err(CatalogError::NotFound { .. })
    ));
    let disk = dir.path().join("base.qcow2");
    std::fs::write(&disk, b"abc").unwrap();
    let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        let b = c.begin_build(&new("base", version)).unwrap();
        let mut f = done("/nowhere");
        f.artifacts[0].path = disk.display().to_string();
        f.artifacts[0].sha256 = sha.into();
        c.finish_build(b.id, &f).unwrap();
    }
    let p = parent::resolve(&c, name, filter).unwrap();
    assert_eq!(p.image.full_name(), "base/1.1.0/1");
    assert_eq!(p.origin, "kiln:base/1.1.0/1 (from kiln:base/1.x.x)");
    assert_eq!(p.path, disk);
    parent::check_digest(&p, sha).unwrap();
    assert!(matches!(
        parent::check_digest(&p, &"0".repeat(64)),
        Err(CatalogError::DiskChanged { .. })
    ));
    assert_eq!(
        c.find_by_disk_digest(sha).unwrap().unwrap().full_name(),
        "base/2.0.0/1"
    );
    std::fs::remove_file(&disk).unwrap();
    assert!(matches!(
        parent::resolve(&c, name, filter),
        Err(CatalogError::DiskMissing { .. })
    ));
}

/// The inputs and the event file of a build come back as stored; the
/// scheduler's last occurrence per pipeline survives reopening; `recent`
/// lists newest first, per pipeline.
#[test]
fn inputs_events_schedule_state_and_recent_builds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let mut c = Catalog::open(&path).unwrap();
    let inputs = serde_json::json!({"recipeSha256": "r", "components": []});
    let mut first = new("web", "1.0.0");
    first.inputs = Some(inputs.clone());
    first.events = Some("/data/events/abc.jsonl".into());
    first.pipeline = Some("nightly".into());
    let a = c.begin_build(&first).unwrap();
    let b = c.begin_build(&new("web", "1.0.0")).unwrap();
    let img = c.get(a.id).unwrap();
    assert_eq!(img.inputs, Some(inputs));
    assert_eq!(img.events.as_deref(), Some("/data/events/abc.jsonl"));
    assert_eq!(c.get(b.id).unwrap().inputs, None);
    let recent: Vec<i64> = c.recent(None, 10).unwrap().iter().map(|i| i.id).collect();
    assert_eq!(recent, [b.id, a.id]);
    let nightly: Vec<i64> = c
        .recent(Some("nightly"), 10)
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(nightly, [a.id]);
    assert_eq!(c.recent(None, 1).unwrap().len(), 1);

    assert_eq!(c.schedule_last("nightly").unwrap(), None);
    let t1 = chrono::DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    c.set_schedule_last("nightly", t1).unwrap();
    let t2 = t1 + chrono::Duration::days(1);
    c.set_schedule_last("nightly", t2).unwrap();
    drop(c);
    let c = Catalog::open(&path).unwrap();
    assert_eq!(c.schedule_last("nightly").unwrap(), Some(t2));
    assert_eq!(c.schedule_last("weekly").unwrap(), None);
}

/// What a build records (its failure text with a step's stderr tail, its
/// parent's origin, its inputs and test results) reaches the SQLite file
/// with every secret masked: a registered secret value, a URL password, a
/// query token; `kiln images show` prints the masked text.
#[test]
fn secrets_never_reach_the_catalog_file() {
    const SECRET: &str = "cat-Secret-Rb62kw";
    const URL_PASSWORD: &str = "urlpw-Hd38s";
    const QUERY_TOKEN: &str = "qtok-Vz51m";
    kiln::util::redact::register([SECRET]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let mut c = Catalog::open(&path).unwrap();
    let url = format!("https://kiln:{URL_PASSWORD}@mirror.example/base.qcow2?token={QUERY_TOKEN}");
    let failed = c
        .begin_build(&NewBuild {
            inputs: Some(serde_json::json!({"recipeSha256": "r", "note": SECRET})),
            parent: Some(Parent {
                image_id: None,
                sha256: "ab".repeat(32),
                origin: url.clone(),
            }),
            ..new("web", "1.0.0")
        })
        .unwrap();
    c.fail_build(
        failed.id,
        &format!("build stage: step build/Use failed: bash exited with status 3: + echo {SECRET} | curl {url}"),
        None,
    )
    .unwrap();
    let ok = c.begin_build(&new("web", "1.0.1")).unwrap();
    c.finish_build(
        ok.id,
        &FinishedBuild {
            test_results: Some(serde_json::json!({"components": [{"failure": SECRET}]})),
            ..support::catalog::published("/out/web/1.0.1/1", 1)
        },
    )
    .unwrap();
    let shown = c.get(failed.id).unwrap();
    assert_eq!(
        shown.failure.as_deref(),
        Some("build stage: step build/Use failed: bash exited with status 3: + echo *** | curl https://kiln:***@mirror.example/base.qcow2?token=***")
    );
    drop(c);
    let needles = [SECRET, URL_PASSWORD, QUERY_TOKEN];
    support::leak::assert_tree_clean(dir.path(), &needles);
    let (code, out, err) = kiln(&path, &["show", "web/1.0.0/1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("failure:  build stage"), "{out}");
    support::leak::assert_clean("kiln images show", out.as_bytes(), &needles);
}

#[test]
fn building_entries_whose_kiln_is_gone_are_failed_when_the_catalog_opens() {
    use kiln::catalog::running;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let status = |c: &Catalog, id: i64| c.get(id).unwrap().status;

    // a live build: its catalog handle (in a kiln that runs) stays open
    let mut live = Catalog::open(&path).unwrap();
    let running_id = live.begin_build(&new("web", "1.0.0")).unwrap().id;
    // a build whose kiln died: its handle is gone without settling it
    let mut dead = Catalog::open(&path).unwrap();
    let dead_id = dead.begin_build(&new("web", "1.0.0")).unwrap().id;
    // one from an older kiln, which took no lock
    let old_id = dead.begin_build(&new("db", "2.0.0")).unwrap().id;
    std::fs::remove_file(running::dir(&path).join(format!("{old_id}.lock"))).unwrap();
    drop(dead);

    let mut next = Catalog::open(&path).unwrap();
    assert_eq!(status(&next, running_id), Status::Building);
    for id in [dead_id, old_id] {
        let image = next.get(id).unwrap();
        assert_eq!(image.status, Status::Failed, "{}", image.full_name());
        assert_eq!(image.failure.as_deref(), Some(running::INTERRUPTED));
        assert!(image.finished_at.is_some());
    }
    assert!(next.reconcile().unwrap().is_empty(), "nothing more to do");

    // the live build settles normally; its lock goes with it
    live.finish_build(running_id, &done("/out/web/1.0.0"))
        .unwrap();
    assert_eq!(status(&next, running_id), Status::Available);
    assert_eq!(
        std::fs::read_dir(running::dir(&path)).unwrap().count(),
        0,
        "no lock file left"
    );
    // a build settled by another handle than the one that began it
    let id = live.begin_build(&new("web", "1.0.1")).unwrap().id;
    next.fail_build(id, "boom", None).unwrap();
    assert_eq!(status(&next, id), Status::Failed);
    drop(live);
    assert!(next.reconcile().unwrap().is_empty());
    assert_eq!(next.get(id).unwrap().failure.as_deref(), Some("boom"));
    assert_eq!(std::fs::read_dir(running::dir(&path)).unwrap().count(), 0);
}
