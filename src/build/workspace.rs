//! A build's files on the host, and how they end: published atomically as
//! `OUTPUT/<name>/<version>/`, or (failure, interrupt) nothing published,
//! disks and sockets removed, the logs moved to `OUTPUT/failed/…`.
//!
//! Layout while building, all under `OUTPUT/.kiln-tmp/<build-id>/` (the same
//! file system as the output, so publishing is one `rename`):
//! `stage/` becomes the published folder (`image.qcow2`, `logs/`,
//! `manifest.json`); `vm/` holds overlays, seeds, keys and the UEFI variables.
//! QMP sockets live in a short-named folder under the system's temp dir
//! (unix socket paths are limited to 108 bytes).
//!
//! Locks (`flock`, released by the kernel when kiln dies):
//! - `.kiln-tmp/<id>/lock`, held while the build's folder exists: a folder
//!   whose lock is free is a dead build's, cleaned up by the next build in
//!   this output folder ([`super::leftovers`]);
//! - `.kiln-tmp/<name>@<version>.lock` (per-version layout), held from the
//!   start to the publish: a second build of the same name and version is
//!   refused at once ([`WorkspaceError::Busy`]); with `--force` it runs,
//!   but waits for that lock before it publishes
//!   ([`Workspace::hold_version`]), so it never publishes over a build in
//!   progress.

use std::path::{Path, PathBuf};

use super::leftovers::{self, holder_pid, Owner, Removed, BUILD_LOCK, TMP};
use crate::util::flock::{FileLock, LockError};
use crate::util::io::IoError;

/// Errors of the build's files.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The version is already published.
    #[error(
        "{0} already exists; bump the recipe's semanticVersion, or pass --force to replace it"
    )]
    Exists(PathBuf),
    /// Another kiln process builds the same name and version into the same
    /// output folder.
    #[error("{name} {version} is being built by {} into {}; wait for it to end, or pass --force to build anyway (it publishes only after that build has ended)", holder(*pid), output.display())]
    Busy {
        /// The image name.
        name: String,
        /// Its version.
        version: String,
        /// The other build's kiln process, if its lock file says.
        pid: Option<u32>,
        /// The output folder.
        output: PathBuf,
    },
    /// A lock file could not be used.
    #[error("locking the build's files")]
    Lock(#[from] LockError),
}

/// [`WorkspaceError::Busy`] for the name/version lock at `lock`.
fn busy(output: &Path, name: &str, version: &str, lock: &Path) -> WorkspaceError {
    WorkspaceError::Busy {
        name: name.into(),
        version: version.into(),
        pid: holder_pid(lock),
        output: output.to_path_buf(),
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another kiln process".into(),
    }
}

/// The files of one build; dropping it unpublished cleans up (see module docs).
pub struct Workspace {
    root: PathBuf,
    stage: PathBuf,
    vm: PathBuf,
    sockets: tempfile::TempDir,
    destination: PathBuf,
    /// Per-build layout: the destination is `…/<version>/<build>`, known
    /// once [`Workspace::place`] is given the build number.
    per_build: bool,
    placed: bool,
    failed: PathBuf,
    finished: bool,
    /// Whether an existing destination may be replaced.
    replace: bool,
    /// The output folder, image name and version.
    output: PathBuf,
    name: String,
    version: String,
    /// `.kiln-tmp/<name>@<version>.lock` (per-version layout only).
    version_lock_path: Option<PathBuf>,
    /// That lock, once held.
    version_lock: Option<FileLock>,
    /// `.kiln-tmp/<id>/lock`, held while `root` exists.
    build_lock: Option<FileLock>,
    /// What [`leftovers::reconcile`] cleaned up before this build began.
    reconciled: Vec<Removed>,
}

impl Workspace {
    /// Creates the folders for build `id` of `name`/`version` under `output`,
    /// after cleaning up what dead builds left there ([`Workspace::reconciled`]).
    /// Fails at once if another build of `name`/`version` runs there
    /// ([`WorkspaceError::Busy`], unless `replace`), or if the destination
    /// exists and `replace` is false. With `per_build`, the image goes to
    /// `output/name/version/<build>/` and [`Workspace::place`] must be
    /// called once the build number is known.
    pub fn create(
        output: &Path,
        name: &str,
        version: &str,
        id: &str,
        replace: bool,
        per_build: bool,
    ) -> Result<Workspace, WorkspaceError> {
        let reconciled = leftovers::reconcile(output);
        let tmp = output.join(TMP);
        let destination = output.join(name).join(version);
        let mut version_lock = None;
        let mut version_lock_path = None;
        if !per_build {
            std::fs::create_dir_all(&tmp).map_err(IoError::at("cannot create", &tmp))?;
            let path = tmp.join(format!("{name}@{version}.lock"));
            match FileLock::try_exclusive(&path)? {
                Some(mut lock) => {
                    lock.set_note(&format!("pid {}\n", std::process::id()))?;
                    version_lock = Some(lock);
                }
                None if replace => {}
                None => return Err(busy(output, name, version, &path)),
            }
            version_lock_path = Some(path);
        }
        if destination.exists() && !replace && !per_build {
            if let Some(lock) = version_lock {
                lock.release_and_remove();
            }
            remove_if_empty(Some(&tmp));
            return Err(WorkspaceError::Exists(destination));
        }
        let root = tmp.join(id);
        std::fs::create_dir_all(&root).map_err(IoError::at("cannot create", &root))?;
        let mut build_lock = FileLock::try_exclusive(&root.join(BUILD_LOCK))?
            .ok_or_else(|| LockError::held(&root.join(BUILD_LOCK)))?;
        let owner = Owner {
            pid: std::process::id(),
            name: name.into(),
            version: version.into(),
            destination: destination.clone(),
        };
        build_lock.set_note(&owner.note())?;
        let stage = root.join("stage");
        let vm = root.join("vm");
        for d in [stage.join("logs"), vm.clone()] {
            std::fs::create_dir_all(&d).map_err(IoError::at("cannot create", &d))?;
        }
        let sockets = tempfile::Builder::new()
            .prefix("kiln-")
            .tempdir()
            .map_err(IoError::at(
                "cannot create a folder in",
                &std::env::temp_dir(),
            ))?;
        Ok(Workspace {
            root,
            stage,
            vm,
            sockets,
            destination,
            per_build,
            placed: !per_build,
            failed: output.join("failed").join(format!("{name}-{version}-{id}")),
            finished: false,
            replace,
            output: output.to_path_buf(),
            name: name.into(),
            version: version.into(),
            version_lock_path,
            version_lock,
            build_lock: Some(build_lock),
            reconciled,
        })
    }

    /// What dead builds had left in the output folder and was cleaned up
    /// when this workspace was created.
    pub fn reconciled(&self) -> &[Removed] {
        &self.reconciled
    }

    /// Takes the name/version lock if this build does not hold it yet (a
    /// `--force` build started while another one ran): waits for that build
    /// to end, calling `waiting` with its pid once if it has to wait.
    /// [`Workspace::publish`] refuses to publish without it.
    pub async fn hold_version(
        &mut self,
        waiting: &dyn Fn(Option<u32>),
    ) -> Result<(), WorkspaceError> {
        let Some(path) = &self.version_lock_path else {
            return Ok(());
        };
        if self.version_lock.is_some() {
            return Ok(());
        }
        let holder = holder_pid(path);
        let mut lock = FileLock::exclusive(path, &|| waiting(holder)).await?;
        lock.set_note(&format!("pid {}\n", std::process::id()))?;
        self.version_lock = Some(lock);
        Ok(())
    }

    /// Sets the per-build destination `…/<version>/<build>/` (a no-op for
    /// the per-version layout). Fails if that folder exists (a catalog
    /// that was reset while the files stayed).
    pub fn place(&mut self, build: u64) -> Result<(), WorkspaceError> {
        if !self.per_build {
            return Ok(());
        }
        let destination = self.destination.join(build.to_string());
        if destination.exists() {
            return Err(WorkspaceError::Exists(destination));
        }
        self.destination = destination;
        self.placed = true;
        Ok(())
    }

    /// The folder that becomes `OUTPUT/<name>/<version>/`.
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// `stage/logs`.
    pub fn logs(&self) -> PathBuf {
        self.stage.join("logs")
    }

    /// The folder for VM files that are never published.
    pub fn vm(&self) -> &Path {
        &self.vm
    }

    /// A short folder for sockets.
    pub fn sockets(&self) -> &Path {
        self.sockets.path()
    }

    /// Where the image will be published.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Where the logs go if the build fails.
    pub fn failed_logs(&self) -> &Path {
        &self.failed
    }

    /// Publishes the stage folder as the destination: every file and folder
    /// fsynced, then one rename. An existing destination (allowed by
    /// `replace` at creation) is moved aside first and removed after.
    /// Refused ([`WorkspaceError::Busy`]) while another build of the same
    /// name and version runs (see [`Workspace::hold_version`]).
    pub fn publish(mut self) -> Result<PathBuf, WorkspaceError> {
        assert!(
            self.placed,
            "a per-build workspace is published only after place()"
        );
        if let (Some(path), None) = (&self.version_lock_path, &self.version_lock) {
            match FileLock::try_exclusive(path)? {
                Some(lock) => self.version_lock = Some(lock),
                None => return Err(busy(&self.output, &self.name, &self.version, path)),
            }
        }
        if !self.replace && self.destination.exists() {
            return Err(WorkspaceError::Exists(self.destination.clone()));
        }
        sync_tree(&self.stage)?;
        let parent = self
            .destination
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        std::fs::create_dir_all(&parent).map_err(IoError::at("cannot create", &parent))?;
        let old = self.root.join("replaced");
        let had_old = self.destination.exists();
        if had_old {
            std::fs::rename(&self.destination, &old)
                .map_err(IoError::at("cannot move aside", &old))?;
        }
        std::fs::rename(&self.stage, &self.destination)
            .map_err(IoError::at("cannot publish", &self.destination))?;
        crate::util::atomic::sync_dir(&parent)?;
        self.finished = true;
        let _ = std::fs::remove_dir_all(&self.root);
        self.release_locks();
        Ok(self.destination.clone())
    }

    /// Lets the locks go (the build's folder is gone, or is left to the
    /// next build's clean-up) and removes `.kiln-tmp` if it is empty.
    fn release_locks(&mut self) {
        if let Some(lock) = self.version_lock.take() {
            lock.release_and_remove();
        }
        drop(self.build_lock.take());
        remove_if_empty(self.root.parent());
    }

    /// Ends a failed build: removes disks, seeds and sockets, moves the logs
    /// to [`Workspace::failed_logs`] and returns that path.
    pub fn fail(mut self) -> PathBuf {
        self.finished = true;
        self.keep_logs()
    }

    fn keep_logs(&mut self) -> PathBuf {
        let logs = self.logs();
        let kept = if logs.exists() {
            if let Some(p) = self.failed.parent() {
                let _ = std::fs::create_dir_all(p);
            }
            match std::fs::rename(&logs, &self.failed) {
                Ok(()) => self.failed.clone(),
                Err(_) => logs,
            }
        } else {
            self.failed.clone()
        };
        if kept == self.failed {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            // the logs could not move: keep them where they are, drop the rest
            let _ = std::fs::remove_dir_all(&self.vm);
            let _ = std::fs::remove_file(self.stage.join("image.qcow2"));
        }
        self.release_locks();
        kept
    }
}

impl Drop for Workspace {
    /// An interrupted build: nothing published, logs kept.
    fn drop(&mut self) {
        if !self.finished {
            let kept = self.keep_logs();
            eprintln!(
                "kiln: nothing was published; the logs are in {}",
                kept.display()
            );
        }
    }
}

fn remove_if_empty(dir: Option<&Path>) {
    if let Some(d) = dir {
        let _ = std::fs::remove_dir(d);
    }
}

/// fsyncs every file and folder under `dir`, and `dir` itself.
pub fn sync_tree(dir: &Path) -> Result<(), WorkspaceError> {
    for e in std::fs::read_dir(dir).map_err(IoError::at("cannot read", dir))? {
        let e = e.map_err(IoError::at("cannot read", dir))?;
        let path = e.path();
        let ft = e.file_type().map_err(IoError::at("cannot stat", &path))?;
        if ft.is_dir() {
            sync_tree(&path)?;
        } else if ft.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(IoError::at("cannot sync", &path))?;
        }
    }
    Ok(crate::util::atomic::sync_dir(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_one_rename_and_cleans_up() {
        let out = tempfile::tempdir().unwrap();
        let ws = Workspace::create(out.path(), "img", "1.0.0", "b1", false, false).unwrap();
        std::fs::write(ws.stage().join("image.qcow2"), b"disk").unwrap();
        std::fs::write(ws.logs().join("kiln.log"), b"log").unwrap();
        std::fs::write(ws.vm().join("overlay.qcow2"), b"tmp").unwrap();
        let sockets = ws.sockets().to_path_buf();
        let dest = ws.publish().unwrap();
        assert_eq!(dest, out.path().join("img/1.0.0"));
        assert_eq!(std::fs::read(dest.join("image.qcow2")).unwrap(), b"disk");
        assert!(dest.join("logs/kiln.log").exists());
        assert!(!out.path().join(".kiln-tmp").exists());
        assert!(!sockets.exists());
        // the same version again is refused, or replaced when asked
        assert!(matches!(
            Workspace::create(out.path(), "img", "1.0.0", "b2", false, false),
            Err(WorkspaceError::Exists(_))
        ));
        let ws = Workspace::create(out.path(), "img", "1.0.0", "b3", true, false).unwrap();
        std::fs::write(ws.stage().join("image.qcow2"), b"new").unwrap();
        let dest = ws.publish().unwrap();
        assert_eq!(std::fs::read(dest.join("image.qcow2")).unwrap(), b"new");
        assert!(!dest.join("logs/kiln.log").exists());
    }

    #[test]
    fn failure_and_drop_publish_nothing_and_keep_logs() {
        let out = tempfile::tempdir().unwrap();
        let ws = Workspace::create(out.path(), "img", "1.0.0", "b1", false, false).unwrap();
        std::fs::write(ws.stage().join("image.qcow2"), b"half").unwrap();
        std::fs::write(ws.logs().join("kiln.log"), b"why").unwrap();
        let kept = ws.fail();
        assert_eq!(kept, out.path().join("failed/img-1.0.0-b1"));
        assert_eq!(std::fs::read(kept.join("kiln.log")).unwrap(), b"why");
        assert!(!out.path().join("img").exists());
        assert!(!out.path().join(".kiln-tmp").exists());

        let ws = Workspace::create(out.path(), "img", "1.0.0", "b2", false, false).unwrap();
        std::fs::write(ws.logs().join("serial.log"), b"boot").unwrap();
        drop(ws);
        assert!(out.path().join("failed/img-1.0.0-b2/serial.log").exists());
        assert!(!out.path().join("img").exists());
        assert!(!out.path().join(".kiln-tmp").exists());
    }

    #[tokio::test]
    async fn one_build_of_a_version_at_a_time_and_force_publishes_after_it() {
        let out = tempfile::tempdir().unwrap();
        let first = Workspace::create(out.path(), "img", "1.0.0", "b1", false, false).unwrap();
        std::fs::write(first.stage().join("image.qcow2"), b"first").unwrap();
        // refused at once, naming the first build's process
        let e = match Workspace::create(out.path(), "img", "1.0.0", "b2", false, false) {
            Err(e) => e,
            Ok(_) => panic!("a second build of img 1.0.0 was allowed"),
        };
        assert!(matches!(e, WorkspaceError::Busy { .. }));
        assert!(
            e.to_string().starts_with(&format!(
                "img 1.0.0 is being built by pid {}",
                std::process::id()
            )),
            "{e}"
        );
        assert!(!out.path().join(".kiln-tmp/b2").exists());
        // another version, or another output folder, is not held up
        drop(Workspace::create(out.path(), "img", "1.0.1", "b3", false, false).unwrap());
        let elsewhere = tempfile::tempdir().unwrap();
        drop(Workspace::create(elsewhere.path(), "img", "1.0.0", "b4", false, false).unwrap());

        // --force starts, but cannot publish over the build in progress
        let forced = Workspace::create(out.path(), "img", "1.0.0", "b5", true, false).unwrap();
        std::fs::write(forced.stage().join("image.qcow2"), b"forced").unwrap();
        assert!(matches!(forced.publish(), Err(WorkspaceError::Busy { .. })));
        assert!(!out.path().join("img/1.0.0").exists());
        let mut forced = Workspace::create(out.path(), "img", "1.0.0", "b6", true, false).unwrap();
        std::fs::write(forced.stage().join("image.qcow2"), b"forced").unwrap();
        let waited = std::sync::Mutex::new(None);
        let on_wait = |pid| *waited.lock().unwrap() = Some(pid);
        let wait = forced.hold_version(&on_wait);
        let first_publishes = async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            assert!(
                !out.path().join("img/1.0.0").exists(),
                "nothing published while the first builds"
            );
            first.publish().unwrap()
        };
        let (held, dest) = tokio::join!(wait, first_publishes);
        held.unwrap();
        assert_eq!(*waited.lock().unwrap(), Some(Some(std::process::id())));
        assert_eq!(std::fs::read(dest.join("image.qcow2")).unwrap(), b"first");
        let dest = forced.publish().unwrap();
        assert_eq!(std::fs::read(dest.join("image.qcow2")).unwrap(), b"forced");
        assert!(
            !out.path().join(".kiln-tmp").exists(),
            "no lock or build folder left"
        );
    }

    #[test]
    fn per_build_layout_publishes_beside_earlier_builds() {
        let out = tempfile::tempdir().unwrap();
        for (id, n) in [("b1", 1), ("b2", 2)] {
            let mut ws = Workspace::create(out.path(), "img", "1.0.0", id, false, true).unwrap();
            ws.place(n).unwrap();
            std::fs::write(ws.stage().join("image.qcow2"), id).unwrap();
            let dest = ws.publish().unwrap();
            assert_eq!(dest, out.path().join("img/1.0.0").join(n.to_string()));
        }
        let mut ws = Workspace::create(out.path(), "img", "1.0.0", "b3", false, true).unwrap();
        assert!(matches!(ws.place(2), Err(WorkspaceError::Exists(_))));
        drop(ws);
        assert_eq!(
            std::fs::read(out.path().join("img/1.0.0/1/image.qcow2")).unwrap(),
            b"b1"
        );
    }
}
