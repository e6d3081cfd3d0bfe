//! Parent images resolved for real: a local file (digest checked against
//! `sha256sum`), a URL served by a loopback HTTP server (cached, verified),
//! and one real Debian bootstrap through the library.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kiln::build::cache::Cache;
use kiln::build::parent::{resolve, ParentError, ParentImage};
use kiln::disk::img::{self, ConvertOptions, Format};
use support::http::{HttpServer, Reply};

/// File, URL and bootstrap parents never read the image catalog.
/// Resolves a file parent, quietly.
async fn file_parent(
    path: &std::path::Path,
    cache: &Cache,
) -> Result<kiln::build::parent::ResolvedParent, ParentError> {
    resolve(
        &ParentImage::File(path.to_path_buf()),
        cache,
        no_catalog(),
        &quiet,
    )
    .await
}

fn no_catalog() -> &'static std::path::Path {
    std::path::Path::new("/nonexistent/catalog.sqlite")
}

fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A 4 MiB raw disk with content, and its qcow2 conversion.
async fn images(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let raw = dir.join("disk.raw");
    let mut bytes = vec![0u8; 4 << 20];
    for (i, b) in bytes.iter_mut().enumerate().step_by(511) {
        *b = (i % 251) as u8;
    }
    std::fs::write(&raw, bytes).unwrap();
    let qcow2 = dir.join("disk.qcow2");
    img::convert(&raw, None, &qcow2, &ConvertOptions::to(Format::Qcow2))
        .await
        .unwrap();
    (raw, qcow2)
}

fn quiet(_: &str) {}

#[tokio::test]
async fn a_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let (raw, qcow2) = images(dir.path()).await;

    let r = file_parent(&qcow2, &cache).await.unwrap();
    assert_eq!(r.sha256, sha256sum(&qcow2));
    assert_eq!((r.format, r.virtual_size), (Format::Qcow2, 4 << 20));
    assert_eq!(r.path, qcow2);
    assert_eq!(r.origin, format!("file {}", qcow2.display()));

    let r = file_parent(&raw, &cache).await.unwrap();
    assert_eq!((r.format, &r.sha256), (Format::Raw, &sha256sum(&raw)));
    // the digests are remembered in the cache, one record per file
    assert_eq!(std::fs::read_dir(cache.digests()).unwrap().count(), 2);

    // a changed file gets a new digest
    let mut bytes = std::fs::read(&raw).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&raw, bytes).unwrap();
    let again = file_parent(&raw, &cache).await.unwrap();
    assert_eq!(again.sha256, sha256sum(&raw));
    assert_ne!(again.sha256, r.sha256);

    let missing = dir.path().join("missing.qcow2");
    let e = file_parent(&missing, &cache).await.unwrap_err();
    assert!(
        matches!(&e, ParentError::NotFound(p) if *p == missing),
        "{e}"
    );
}

#[tokio::test]
async fn a_url_downloaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let (_, qcow2) = images(dir.path()).await;
    let body = std::fs::read(&qcow2).unwrap();
    let sha256 = sha256sum(&qcow2);
    let server = HttpServer::start([
        ("/images/base.qcow2", Reply::Body(body.clone())),
        (
            "/moved.qcow2",
            Reply::Redirect(302, "/images/base.qcow2".into()),
        ),
    ])
    .await;

    let parent = ParentImage::Url {
        url: server.url("/moved.qcow2"),
        sha256: sha256.to_uppercase(),
    };
    let lines = std::sync::Mutex::new(Vec::new());
    let progress = |m: &str| lines.lock().unwrap().push(m.to_string());
    let first = resolve(&parent, &cache, no_catalog(), &progress)
        .await
        .unwrap();
    assert_eq!(first.path, cache.downloads().join(format!("{sha256}.img")));
    assert_eq!(std::fs::read(&first.path).unwrap(), body);
    assert_eq!(
        (first.format, first.sha256.as_str()),
        (Format::Qcow2, sha256.as_str())
    );
    assert_eq!(first.virtual_size, 4 << 20);
    assert_eq!(first.origin, format!("url {}", server.url("/moved.qcow2")));
    assert!(lines.lock().unwrap().iter().any(|l| l.contains("MiB")));
    assert_eq!(server.hits("/images/base.qcow2"), 1);

    // the second time: no network at all
    drop(server);
    let second = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap();
    assert_eq!(second.path, first.path);
    assert_eq!(second.sha256, first.sha256);
    assert!(second.origin.ends_with(" (cached)"), "{}", second.origin);
}

#[tokio::test]
async fn a_url_with_the_wrong_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let server = HttpServer::start([
        ("/base.img", Reply::Body(b"not the image you want".to_vec())),
        ("/gone.img", Reply::Status(404)),
    ])
    .await;
    let expected = "0".repeat(64);
    let parent = ParentImage::Url {
        url: server.url("/base.img"),
        sha256: expected.clone(),
    };
    let e = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap_err()
        .to_string();
    let actual = kiln::util::digest::sha256_hex(b"not the image you want");
    assert!(e.contains(&expected) && e.contains(&actual), "{e}");
    let left: Vec<_> = std::fs::read_dir(cache.downloads()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    let gone = ParentImage::Url {
        url: server.url("/gone.img"),
        sha256: expected,
    };
    let e = resolve(&gone, &cache, no_catalog(), &quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
    assert_eq!(std::fs::read_dir(cache.downloads()).unwrap().count(), 0);
}

/// A qcow2 whose backing file is `secret` (an absolute host path), as a
/// hostile parent image carries it.
fn backed_by(dir: &Path, secret: &Path) -> std::path::PathBuf {
    let evil = dir.join("evil.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(secret)
        .arg(&evil)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    evil
}

fn assert_refused(e: &ParentError) {
    let text = kiln::pipeline::runner::error_chain(e);
    assert!(e.is_invalid_input(), "{text}");
    assert!(
        text.contains("refused") && text.contains("backing file"),
        "{text}"
    );
}

#[tokio::test]
async fn parents_with_backing_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, vec![b's'; 1 << 20]).unwrap();
    let evil = backed_by(dir.path(), &secret);

    let e = file_parent(&evil, &cache).await.unwrap_err();
    assert_refused(&e);

    let body = std::fs::read(&evil).unwrap();
    let sha256 = sha256sum(&evil);
    let server = HttpServer::start([("/evil.qcow2", Reply::Body(body))]).await;
    let parent = ParentImage::Url {
        url: server.url("/evil.qcow2"),
        sha256,
    };
    let e = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap_err();
    assert_refused(&e);
    // and again from the cache
    let e = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap_err();
    assert_refused(&e);
    assert_eq!(server.hits("/evil.qcow2"), 1);
}

#[tokio::test]
async fn a_damaged_cache_entry_is_downloaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let (_, qcow2) = images(dir.path()).await;
    let body = std::fs::read(&qcow2).unwrap();
    let sha256 = sha256sum(&qcow2);
    let server = HttpServer::start([("/base.qcow2", Reply::Body(body.clone()))]).await;
    let parent = ParentImage::Url {
        url: server.url("/base.qcow2"),
        sha256: sha256.clone(),
    };
    let first = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap();
    // the download was hashed while written: the cached use reads no byte
    // of it again (its digest record answers)
    let again = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap();
    assert!(again.origin.ends_with(" (cached)"), "{}", again.origin);
    assert_eq!(server.hits("/base.qcow2"), 1);

    // same size, other bytes: the name <sha256>.img is no proof
    let mut damaged = body.clone();
    let at = damaged.len() - 100;
    damaged[at] ^= 0xff;
    std::fs::write(&first.path, &damaged).unwrap();
    let lines = std::sync::Mutex::new(Vec::new());
    let progress = |m: &str| lines.lock().unwrap().push(m.to_string());
    let fixed = resolve(&parent, &cache, no_catalog(), &progress)
        .await
        .unwrap();
    assert_eq!(server.hits("/base.qcow2"), 2);
    assert_eq!(std::fs::read(&fixed.path).unwrap(), body);
    assert_eq!(fixed.sha256, sha256);
    assert!(
        lines.lock().unwrap().iter().any(|l| l.contains("damaged")),
        "{:?}",
        lines.lock().unwrap()
    );

    // a file put there by hand, never hashed by kiln
    std::fs::write(&first.path, b"QFI\xfbnot really").unwrap();
    let fixed = resolve(&parent, &cache, no_catalog(), &quiet)
        .await
        .unwrap();
    assert_eq!(server.hits("/base.qcow2"), 3);
    assert_eq!(std::fs::read(&fixed.path).unwrap(), body);
}

/// The one real bootstrap (minutes, network to the Debian mirror the first
/// time): the shared test base image, then checks on it and on the cache.
#[tokio::test]
async fn bootstrap_debian_bookworm() {
    let image = support::base_image::bootstrap_base_image();
    assert_eq!(image.format, Format::Qcow2);
    assert_eq!(image.virtual_size, 3 << 30);
    assert!(
        image
            .origin
            .starts_with("bootstrap debian bookworm from http"),
        "{}",
        image.origin
    );
    let report = img::check(&image.path).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(image.sha256, sha256sum(&image.path));

    // the record of the build sits next to the image
    let dir = image.path.parent().unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("inputs.json")).unwrap()).unwrap();
    assert_eq!(record["inputs"]["suite"], "bookworm");
    assert_eq!(record["digest"], dir.file_name().unwrap().to_str().unwrap());
    assert!(
        record["timings"]["mmdebstrap"].as_f64().unwrap() > 0.0,
        "{record}"
    );
    assert!(dir.join("build.log").is_file() && !dir.join("work").exists());

    // a second resolve answers from the cache at once
    let started = Instant::now();
    let again = resolve(
        &ParentImage::Bootstrap(support::base_image::base_spec()),
        &support::base_image::test_cache(),
        no_catalog(),
        &quiet,
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((&again.path, &again.sha256), (&image.path, &image.sha256));
    assert!(
        again.origin.contains("(cached, digest "),
        "{}",
        again.origin
    );
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
        {
            continue; // a zombie runs nothing
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// A bootstrap whose future is dropped (what Ctrl-C does to kiln) while
/// mmdebstrap runs: its processes end, its trap removes the rootfs, and the
/// lock is free again once the cleanup is done.
#[tokio::test]
async fn a_dropped_bootstrap_stops_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let mut spec = support::base_image::base_spec();
    spec.packages = vec!["htop".into()]; // not the shared image's digest
    let parent = ParentImage::Bootstrap(spec);
    let started = std::sync::atomic::AtomicBool::new(false);
    let progress = |m: &str| {
        if m.starts_with("mmdebstrap ") {
            started.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let stop = async {
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // let mmdebstrap get going
        tokio::time::sleep(Duration::from_secs(20)).await;
    };
    tokio::select! {
        r = resolve(&parent, &cache, no_catalog(), &progress) => panic!("the bootstrap ended early: {r:?}"),
        () = stop => {}
    }
    let needle = dir.path().to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !processes_mentioning(&needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still running: {:?}",
            processes_mentioning(&needle)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let bootstrap = cache.bootstrap();
    let lock = std::fs::read_dir(&bootstrap)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .expect("the lock file");
    assert!(
        kiln::build::lock::FileLock::try_exclusive(&lock)
            .unwrap()
            .is_some(),
        "the lock is still held"
    );
    // the work tree (the rootfs) is gone; only the small files remain
    let tmp: Vec<_> = std::fs::read_dir(&bootstrap)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert_eq!(tmp.len(), 1, "{tmp:?}");
    assert!(!tmp[0].join("work").exists(), "the trap left {:?}", tmp[0]);
}

/// A bootstrap that fails (its mirror answers 404 to everything): the error
/// names the kept log and shows its end; no image and no temporary folder
/// are left in the cache.
#[tokio::test]
async fn a_failed_bootstrap_reports_and_leaves_no_image() {
    use kiln::build::bootstrap::script::ScriptError;
    use kiln::build::bootstrap::BootstrapError;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let server = HttpServer::start(Vec::<(String, Reply)>::new()).await;
    let mut spec = support::base_image::base_spec();
    spec.mirror = Some(server.url("/debian"));
    let e = resolve(&ParentImage::Bootstrap(spec), &cache, no_catalog(), &quiet)
        .await
        .unwrap_err();
    let ParentError::Bootstrap(BootstrapError::Script(ScriptError::Failed { log, tail, .. })) = &e
    else {
        panic!("{e}");
    };
    assert!(server.total_hits() > 0, "mmdebstrap never asked the mirror");
    assert!(tail.contains("404"), "{tail}");
    assert!(tail.contains("failed (exit 1)"), "{tail}");
    assert!(tail.lines().count() <= 30);
    assert!(e.to_string().contains(log.to_str().unwrap()), "{e}");
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("mmdebstrap bookworm from"));
    let left: Vec<String> = std::fs::read_dir(cache.bootstrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "logs" && !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// While another process holds a digest's lock, a bootstrap of the same
/// inputs waits, and then takes the image that process put in place instead
/// of building its own.
#[tokio::test]
async fn a_second_kiln_waits_for_the_first_and_reuses_its_image() {
    use kiln::build::bootstrap::{self, record::BootstrapRecord};
    use kiln::build::lock::FileLock;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let mut spec = support::base_image::base_spec();
    spec.packages = vec!["tmux".into()];
    let inputs = bootstrap::inputs_for(&spec, Path::new("/etc/apt")).unwrap();
    let digest = inputs.digest();
    std::fs::create_dir_all(cache.bootstrap()).unwrap();
    let held = FileLock::try_exclusive(&cache.bootstrap().join(format!("{digest}.lock")))
        .unwrap()
        .unwrap();

    let waiting = std::sync::atomic::AtomicBool::new(false);
    let progress = |m: &str| {
        if m.starts_with("waiting for another kiln") {
            waiting.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let other_kiln = async {
        while !waiting.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // the first kiln finishes: its image and record appear, the lock goes
        let (_, qcow2) = images(dir.path()).await;
        let done = cache.bootstrap().join(&digest);
        std::fs::create_dir(&done).unwrap();
        std::fs::rename(&qcow2, done.join("base.qcow2")).unwrap();
        let record = BootstrapRecord {
            digest: digest.clone(),
            inputs: inputs.clone(),
            built_at: "2026-01-01T00:00:00Z".into(),
            kiln_version: "test".into(),
            seconds: 1.0,
            timings: Default::default(),
            image_bytes: 1,
        };
        std::fs::write(
            done.join("inputs.json"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        drop(held);
    };
    let parent = ParentImage::Bootstrap(spec);
    let (resolved, ()) = tokio::join!(
        resolve(&parent, &cache, no_catalog(), &progress),
        other_kiln
    );
    let resolved = resolved.unwrap();
    assert_eq!(
        resolved.path,
        cache.bootstrap().join(&digest).join("base.qcow2")
    );
    assert_eq!(resolved.virtual_size, 4 << 20);
    assert!(
        resolved.origin.contains("(cached, digest "),
        "{}",
        resolved.origin
    );
    // no build was started
    assert!(!cache.bootstrap().join("logs").exists());
}

/// The package-index digest of a bootstrap's mirrors (a real HTTP server on
/// loopback as the mirrors): InRelease first, Release when it is missing;
/// it changes with either index; an unreachable index is an error.
#[tokio::test]
async fn the_mirrors_package_index_digest() {
    use kiln::build::bootstrap::{index, inputs::BootstrapInputs};
    let server = HttpServer::start([
        (
            "/debian/dists/bookworm/InRelease",
            Reply::Body(b"main v1".to_vec()),
        ),
        (
            "/security/dists/bookworm-security/InRelease",
            Reply::Status(404),
        ),
        (
            "/security/dists/bookworm-security/Release",
            Reply::Body(b"security v1".to_vec()),
        ),
    ])
    .await;
    let inputs = BootstrapInputs {
        script_sha256: String::new(),
        distro: "debian".into(),
        suite: "bookworm".into(),
        mirror: server.url("/debian"),
        security_mirror: server.url("/security/"),
        packages: vec![],
        disk_size: 0,
    };
    let first = index::digest(&inputs).await.unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(index::digest(&inputs).await.unwrap(), first);
    assert_eq!(server.hits("/security/dists/bookworm-security/Release"), 2);
    server.route(
        "/security/dists/bookworm-security/Release",
        Reply::Body(b"security v2".to_vec()),
    );
    let second = index::digest(&inputs).await.unwrap();
    assert_ne!(second, first, "a security update changes the digest");
    server.route("/debian/dists/bookworm/InRelease", Reply::Status(404));
    let e = index::digest(&inputs).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
}
