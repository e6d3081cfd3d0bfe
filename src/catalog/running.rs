//! Which `building` entries still have a kiln process working on them.
//!
//! [`Catalog::begin_build`](super::Catalog::begin_build) takes an exclusive
//! lock (`flock`) on `<catalog>-running/<id>.lock` before the entry becomes
//! visible, and holds it until the entry is settled (published or failed).
//! A lock is released by the kernel when its process ends, SIGKILL
//! included, so a `building` entry whose lock is free (or missing: made by
//! an older kiln) belongs to a build that will never settle it.
//! [`Catalog::open`](super::Catalog::open) marks those failed
//! ([`INTERRUPTED`]) and says so in one line.

use std::path::{Path, PathBuf};

use super::{CatalogError, ImageId};
use crate::util::flock::{Attempt, FileLock};

/// The failure recorded for a build whose kiln process is gone.
pub const INTERRUPTED: &str =
    "interrupted: the kiln process running this build ended before it finished (killed or crashed)";

/// The folder of the running builds' locks of the catalog at `catalog`.
pub fn dir(catalog: &Path) -> PathBuf {
    let mut name = catalog
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push("-running");
    catalog.with_file_name(name)
}

fn lock_path(catalog: &Path, id: ImageId) -> PathBuf {
    dir(catalog).join(format!("{id}.lock"))
}

fn lock_error(
    catalog: &Path,
    id: ImageId,
) -> impl FnOnce(crate::util::flock::LockError) -> CatalogError {
    let catalog = catalog.to_path_buf();
    move |source| CatalogError::RunningLock {
        path: catalog,
        id,
        source,
    }
}

/// Takes the lock that says entry `id` has a live kiln (the entry is not
/// committed yet, so nobody else can hold it).
pub(crate) fn hold(catalog: &Path, id: ImageId) -> Result<FileLock, CatalogError> {
    let folder = dir(catalog);
    std::fs::create_dir_all(&folder).map_err(|source| CatalogError::CreateDir {
        path: folder.clone(),
        source,
    })?;
    let path = lock_path(catalog, id);
    let mut lock = FileLock::try_exclusive(&path)
        .map_err(lock_error(catalog, id))?
        .ok_or_else(|| CatalogError::RunningLock {
            path: catalog.to_path_buf(),
            id,
            source: crate::util::flock::LockError::held(&path),
        })?;
    lock.set_note(&format!("pid {}\n", std::process::id()))
        .map_err(lock_error(catalog, id))?;
    Ok(lock)
}

/// Whether the kiln process of entry `id` is gone: `Some(lock)` (held by
/// the caller while it settles the entry; `None` inside when there was no
/// lock file), or `None` while a process holds it. A lock that cannot be
/// checked counts as held: a live build is never failed by mistake.
pub(crate) fn owner_gone(catalog: &Path, id: ImageId) -> Option<Option<FileLock>> {
    match FileLock::try_lock(&lock_path(catalog, id), false) {
        Ok(Attempt::Locked(lock)) => Some(Some(lock)),
        Ok(Attempt::Missing) => Some(None),
        Ok(Attempt::Held) | Err(_) => None,
    }
}

/// The ids of the lock files in the running folder.
pub(crate) fn lock_ids(catalog: &Path) -> Vec<ImageId> {
    let Ok(entries) = std::fs::read_dir(dir(catalog)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".lock")?
                .parse::<ImageId>()
                .ok()
        })
        .collect()
}
