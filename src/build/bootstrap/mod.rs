//! The `bootstrap` parent image: a cloud-init-ready Debian image built from
//! packages by the embedded script `debian.sh` (mmdebstrap, no root needed),
//! cached by the digest of its inputs in `<cache>/bootstrap/<digest>/`.
//!
//! A build runs in `<cache>/bootstrap/.tmp-<digest>-<pid>/` and is renamed
//! into place when whole. An exclusive lock on `<cache>/bootstrap/<digest>.lock`
//! makes a second kiln wait for the first and reuse its image; the script
//! inherits the lock, so it stays held while a stopped build cleans up.

pub mod index;
pub mod inputs;
pub mod preflight;
pub mod record;
pub mod script;
pub mod sources;

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use self::inputs::{BootstrapInputs, InputError};
use self::preflight::PreflightError;
use self::record::{parse_timings, BootstrapRecord};
use self::script::{ScriptError, ScriptRun};
use self::sources::SourcesError;
use super::cache::Cache;
use super::lock::{FileLock, LockError};
use super::parent::BootstrapSpec;
use crate::util::io::IoError;
use crate::util::io::ProgressFn;
use crate::util::task::{Task, TaskError};

/// The builder script (see `vm-fixtures/debian-bootstrap/NOTES.md`).
pub const SCRIPT: &str = include_str!("debian.sh");

/// The virtual disk size of a bootstrapped image (its root file system
/// grows with the disk at first boot).
pub const DISK_SIZE: u64 = 3 << 30;

/// The image file in a bootstrap folder.
pub const IMAGE_FILE: &str = "base.qcow2";

/// The record file in a bootstrap folder.
pub const RECORD_FILE: &str = "inputs.json";

/// Errors of bootstrapping a parent image.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The specification is not usable.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// The host's apt sources could not be read.
    #[error(transparent)]
    Sources(#[from] SourcesError),
    /// The host lacks something.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The script failed.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A tool could not run.
    #[error(transparent)]
    Tool(#[from] TaskError),
    /// A file could not be handled.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A record in the cache is unreadable.
    #[error("bootstrap record {path} is unreadable (delete its folder to rebuild): {source}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The script succeeded but left no image.
    #[error("the bootstrap script ended without writing {0}")]
    NoImage(PathBuf),
}

/// A bootstrapped image in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapImage {
    /// `<cache>/bootstrap/<digest>/base.qcow2`.
    pub path: PathBuf,
    /// What went in, timings, date.
    pub record: BootstrapRecord,
    /// True when it was in the cache already.
    pub cached: bool,
}

/// Checks the specification and gathers the inputs, with the mirrors of the
/// apt configuration under `etc_apt` (normally `/etc/apt`) when the
/// specification names none.
pub fn inputs_for(spec: &BootstrapSpec, etc_apt: &Path) -> Result<BootstrapInputs, BootstrapError> {
    let host = sources::debian_mirrors(&sources::read_host_sources(etc_apt)?);
    let (mirror, security) = sources::choose(spec.mirror.as_deref(), &host);
    Ok(BootstrapInputs::new(
        SCRIPT, spec, &mirror, &security, DISK_SIZE,
    )?)
}

/// The image for `spec`: from the cache, or built now (minutes: it
/// downloads and installs about 260 packages).
pub async fn ensure(
    spec: &BootstrapSpec,
    cache: &Cache,
    progress: ProgressFn<'_>,
) -> Result<BootstrapImage, BootstrapError> {
    let inputs = inputs_for(spec, Path::new("/etc/apt"))?;
    let digest = inputs.digest();
    let root = cache.bootstrap();
    let dir = root.join(&digest);
    if let Some(done) = cached(&dir)? {
        return Ok(done);
    }
    let path = preflight::search_path(std::env::var_os("PATH").as_deref());
    preflight::check(&path)?;
    std::fs::create_dir_all(&root).map_err(IoError::at("create", &root))?;
    let lock_path = root.join(format!("{digest}.lock"));
    let lock = FileLock::exclusive(&lock_path, &|| {
        progress(&format!(
            "waiting for another kiln that bootstraps the same image (lock {})",
            lock_path.display()
        ))
    })
    .await?;
    // whoever held the lock may have built it
    if let Some(done) = cached(&dir)? {
        return Ok(done);
    }
    sweep(&root, &digest).await?;
    // an incomplete folder (its image or record deleted) is rebuilt
    remove_tree(&dir).await?;
    build(inputs, &root, path, &lock, progress).await
}

/// The cached image in `dir`, if it is complete.
fn cached(dir: &Path) -> Result<Option<BootstrapImage>, BootstrapError> {
    let (image, record_path) = (dir.join(IMAGE_FILE), dir.join(RECORD_FILE));
    if !image.is_file() || !record_path.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&record_path).map_err(IoError::at("read", &record_path))?;
    let record = serde_json::from_slice(&bytes).map_err(|source| BootstrapError::Record {
        path: record_path,
        source,
    })?;
    Ok(Some(BootstrapImage {
        path: image,
        record,
        cached: true,
    }))
}

/// Removes what stopped builds of `digest` left behind. Only called with
/// the digest's lock held, so no live build owns them.
async fn sweep(root: &Path, digest: &str) -> Result<(), BootstrapError> {
    let prefix = format!(".tmp-{digest}-");
    let entries = std::fs::read_dir(root).map_err(IoError::at("list", root))?;
    for entry in entries {
        let entry = entry.map_err(IoError::at("list", root))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            remove_tree(&entry.path()).await?;
        }
    }
    Ok(())
}

/// Removes a folder tree. A rootless build's rootfs is owned by subordinate
/// ids, which only mmdebstrap's user namespace can remove.
async fn remove_tree(path: &Path) -> Result<(), BootstrapError> {
    let remove = |p: PathBuf| async move {
        let r = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&p))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    if remove(path.to_path_buf()).await.is_ok() {
        return Ok(());
    }
    // remove the subuid-owned part inside the namespace, then the rest. The
    // helper always fails on the top folder (owned by the real user, who is
    // unmapped there); whatever else it could not remove shows in the
    // second attempt's error.
    let helper = Task::new(
        "removing a rootless build's files with mmdebstrap --unshare-helper",
        "mmdebstrap",
    )
    .args(["--unshare-helper", "rm", "-rf"])
    .arg(path)
    .stdout(std::process::Stdio::null())
    .output()
    .await;
    match remove(path.to_path_buf()).await {
        Ok(()) => Ok(()),
        // a helper that could not start is why the files stayed
        Err(_) if helper.as_ref().is_err_and(TaskError::is_spawn) => {
            Err(BootstrapError::Tool(helper.unwrap_err()))
        }
        Err(e) => Err(IoError::at("remove", path)(e).into()),
    }
}

/// Runs the script into a temporary folder and renames it into place.
async fn build(
    inputs: BootstrapInputs,
    root: &Path,
    path: OsString,
    lock: &FileLock,
    progress: ProgressFn<'_>,
) -> Result<BootstrapImage, BootstrapError> {
    let digest = inputs.digest();
    let tmp = root.join(format!(".tmp-{digest}-{}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(IoError::at("create", &tmp))?;
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).map_err(IoError::at("create", &logs))?;
    let log = logs.join(format!("{digest}.log"));
    let mmdebstrap_log = logs.join(format!("{digest}.mmdebstrap.log"));
    let env: Vec<(String, OsString)> = vec![
        ("PATH".into(), path),
        ("SUITE".into(), inputs.suite.clone().into()),
        ("MIRROR".into(), inputs.mirror.clone().into()),
        (
            "SECURITY_MIRROR".into(),
            inputs.security_mirror.clone().into(),
        ),
        ("EXTRA_PACKAGES".into(), inputs.packages.join(",").into()),
        ("DISK_SIZE".into(), inputs.disk_size.to_string().into()),
        ("MMDEBSTRAP_LOG".into(), mmdebstrap_log.clone().into()),
    ];
    progress(&format!(
        "bootstrapping {} {} from {} (digest {}, log {})",
        inputs.distro,
        inputs.suite,
        inputs.mirror,
        &digest[..12],
        log.display()
    ));
    let started = Instant::now();
    let run = ScriptRun {
        script: SCRIPT,
        name: "debian.sh",
        out_dir: &tmp,
        env,
        log: &log,
        inherit_fd: Some(lock.as_raw_fd()),
    };
    if let Err(e) = script::run(&run, progress).await {
        if let Err(cleanup) = remove_tree(&tmp).await {
            progress(&format!("{cleanup} (the next bootstrap removes it)"));
        }
        return Err(e.into());
    }
    let image = tmp.join(IMAGE_FILE);
    let image_bytes = std::fs::metadata(&image)
        .map_err(|_| BootstrapError::NoImage(image.clone()))?
        .len();
    remove_tree(&tmp.join("work")).await?;
    for (from, name) in [(&log, "build.log"), (&mmdebstrap_log, "mmdebstrap.log")] {
        let to = tmp.join(name);
        std::fs::rename(from, &to).map_err(IoError::at("move the log to", &to))?;
    }
    let timings_path = tmp.join("timings.txt");
    let timings =
        std::fs::read_to_string(&timings_path).map_err(IoError::at("read", &timings_path))?;
    let record = BootstrapRecord {
        digest: digest.clone(),
        inputs,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        timings: parse_timings(&timings),
        image_bytes,
    };
    let record_path = tmp.join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(&record).map_err(|source| BootstrapError::Record {
        path: record_path.clone(),
        source,
    })?;
    std::fs::write(&record_path, json).map_err(IoError::at("write", &record_path))?;
    for file in [&image, &record_path] {
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(IoError::at("flush", file))?;
    }
    let dir = root.join(&digest);
    std::fs::rename(&tmp, &dir).map_err(IoError::at("move the image into", &dir))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(IoError::at("flush", root))?;
    progress(&format!(
        "bootstrapped {} in {:.0} s ({} MiB)",
        dir.join(IMAGE_FILE).display(),
        record.seconds,
        image_bytes >> 20
    ));
    Ok(BootstrapImage {
        path: dir.join(IMAGE_FILE),
        record,
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            distro: "debian".into(),
            suite: "bookworm".into(),
            mirror: None,
            packages: vec![],
        }
    }

    #[test]
    fn the_script_keeps_what_kiln_needs() {
        // NoCloud first (kiln's seed), Ec2 for images imported into AWS
        assert!(SCRIPT.contains("datasource_list: [ NoCloud, Ec2, None ]"));
        for knob in [
            "SUITE",
            "MIRROR",
            "SECURITY_MIRROR",
            "EXTRA_PACKAGES",
            "DISK_SIZE",
            "MMDEBSTRAP_LOG",
        ] {
            assert!(SCRIPT.contains(&format!("${{{knob}:")), "{knob}");
        }
        assert!(SCRIPT.contains("trap on_exit EXIT"));
    }

    #[test]
    fn mirrors_come_from_the_host_unless_given() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir(etc.path().join("sources.list.d")).unwrap();
        std::fs::write(
            etc.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://near.example/debian\nSuites: bookworm\n\n\
             Types: deb\nURIs: http://near.example/debian-security\nSuites: bookworm-security\n",
        )
        .unwrap();
        let host = inputs_for(&spec(), etc.path()).unwrap();
        assert_eq!(host.mirror, "http://near.example/debian");
        assert_eq!(host.security_mirror, "http://near.example/debian-security");
        assert_eq!(host.disk_size, DISK_SIZE);
        let mut given = spec();
        given.mirror = Some("http://given.example/debian".into());
        let given = inputs_for(&given, etc.path()).unwrap();
        assert_eq!(given.mirror, "http://given.example/debian");
        assert_ne!(host.digest(), given.digest());
        let none = inputs_for(&spec(), &etc.path().join("absent")).unwrap();
        assert_eq!(none.mirror, sources::DEFAULT_MIRROR);
    }

    #[tokio::test]
    async fn stale_temporary_folders_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join(".tmp-abc-12345/work/rootfs/etc");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("fstab"), "x").unwrap();
        let other = root.path().join(".tmp-abd-1");
        std::fs::create_dir(&other).unwrap();
        sweep(root.path(), "abc").await.unwrap();
        assert!(!root.path().join(".tmp-abc-12345").exists());
        assert!(other.exists(), "another digest's folder is not ours");
    }
}
