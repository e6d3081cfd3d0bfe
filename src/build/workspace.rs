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

use std::path::{Path, PathBuf};

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
}

impl Workspace {
    /// Creates the folders for build `id` of `name`/`version` under `output`.
    /// Fails at once if the destination exists and `replace` is false. With
    /// `per_build`, the image goes to `output/name/version/<build>/` and
    /// [`Workspace::place`] must be called once the build number is known.
    pub fn create(
        output: &Path,
        name: &str,
        version: &str,
        id: &str,
        replace: bool,
        per_build: bool,
    ) -> Result<Workspace, WorkspaceError> {
        let destination = output.join(name).join(version);
        if destination.exists() && !replace && !per_build {
            return Err(WorkspaceError::Exists(destination));
        }
        let root = output.join(".kiln-tmp").join(id);
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
        })
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
    pub fn publish(mut self) -> Result<PathBuf, WorkspaceError> {
        assert!(
            self.placed,
            "a per-build workspace is published only after place()"
        );
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
        remove_if_empty(self.root.parent());
        Ok(self.destination.clone())
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
            remove_if_empty(self.root.parent());
        } else {
            // the logs could not move: keep them where they are, drop the rest
            let _ = std::fs::remove_dir_all(&self.vm);
            let _ = std::fs::remove_file(self.stage.join("image.qcow2"));
        }
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
