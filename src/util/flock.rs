//! Exclusive advisory locks (`flock(2)`) on lock files: one kiln process
//! at a time does a thing, and a lock that is free tells that its last
//! holder is gone (a process's locks end with it, even when it is killed:
//! a pid could be reused, a lock cannot outlive its holder). The lock
//! belongs to the open file: it ends when the last process holding the
//! descriptor closes it (or dies).
//!
//! A holder may remove its lock file when it releases it
//! ([`FileLock::release_and_remove`]): a taker checks after locking that
//! the file it locked is still the one at the path, and starts over if not.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting process tries again.
const POLL: Duration = Duration::from_millis(250);

/// The most bytes of a lock file's note that are read.
const MAX_NOTE: u64 = 4096;

/// Errors of locking.
#[derive(Debug, thiserror::Error)]
#[error("{what} lock file {}", path.display())]
pub struct LockError {
    /// What was attempted.
    what: &'static str,
    /// The lock file.
    path: PathBuf,
    /// The cause.
    #[source]
    source: std::io::Error,
}

impl LockError {
    /// The lock at `path` is held by another holder (for callers that
    /// expected it free).
    pub fn held(path: &Path) -> Self {
        LockError {
            what: "take",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "it is held by another process",
            ),
        }
    }
}

/// What trying a lock found.
#[derive(Debug)]
pub enum Attempt {
    /// The lock is now held.
    Locked(FileLock),
    /// Another open file (another process, or another holder in this one)
    /// holds it.
    Held,
    /// There is no lock file (only when it was not to be created).
    Missing,
}

/// A held lock (exclusive, or shared with [`FileLock::try_shared`]);
/// dropping it releases it.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock if nobody holds it (creating the file if needed).
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, LockError> {
        match FileLock::try_lock(path, true)? {
            Attempt::Locked(lock) => Ok(Some(lock)),
            Attempt::Held | Attempt::Missing => Ok(None),
        }
    }

    /// Takes a shared lock (many holders at once) unless someone holds the
    /// lock exclusively (creating the file if needed).
    pub fn try_shared(path: &Path) -> Result<Option<FileLock>, LockError> {
        match FileLock::try_mode(path, true, libc::LOCK_SH)? {
            Attempt::Locked(lock) => Ok(Some(lock)),
            Attempt::Held | Attempt::Missing => Ok(None),
        }
    }

    /// Tries the lock at `path`; `create` makes the file if it is missing,
    /// else a missing file is [`Attempt::Missing`].
    pub fn try_lock(path: &Path, create: bool) -> Result<Attempt, LockError> {
        FileLock::try_mode(path, create, libc::LOCK_EX)
    }

    fn try_mode(path: &Path, create: bool, operation: libc::c_int) -> Result<Attempt, LockError> {
        let err = |what| {
            move |source| LockError {
                what,
                path: path.to_path_buf(),
                source,
            }
        };
        loop {
            let file = match std::fs::OpenOptions::new()
                .create(create)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Attempt::Missing)
                }
                Err(e) => return Err(err("open")(e)),
            };
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock => return Ok(Attempt::Held),
                    _ => return Err(err("lock")(e)),
                }
            }
            // the holder before may have removed the file while we waited
            // on it: then this lock guards nothing
            let locked = file.metadata().map_err(err("stat"))?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                    return Ok(Attempt::Locked(FileLock {
                        file,
                        path: path.to_path_buf(),
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(Attempt::Missing);
                }
                Err(e) => return Err(err("stat")(e)),
            }
        }
    }

    /// Takes the lock, waiting as long as another process holds it.
    /// `waiting` is called once if it has to wait. Polls, so dropping the
    /// future stops waiting at once.
    pub async fn exclusive(path: &Path, waiting: &dyn Fn()) -> Result<FileLock, LockError> {
        let mut told = false;
        loop {
            if let Some(lock) = FileLock::try_exclusive(path)? {
                return Ok(lock);
            }
            if !told {
                waiting();
                told = true;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the lock file's content with `note` (who holds it, for
    /// those who find it held; see [`read_note`]).
    pub fn set_note(&mut self, note: &str) -> Result<(), LockError> {
        let err = |source| LockError {
            what: "write",
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(err)?;
        self.file.rewind().map_err(err)?;
        self.file.write_all(note.as_bytes()).map_err(err)?;
        self.file.flush().map_err(err)
    }

    /// Removes the lock file, then releases the lock.
    pub fn release_and_remove(self) {
        // a file already gone is what was wanted
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AsRawFd for FileLock {
    /// The descriptor that holds the lock: a child process that inherits it
    /// keeps the lock held until it exits, too.
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// The note of the lock file at `path` ([`FileLock::set_note`]), if it can
/// be read (at most 4 KiB).
pub fn read_note(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_NOTE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = FileLock::try_exclusive(&path).unwrap().expect("free lock");
        // a second open file description conflicts, even in the same process
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        let waited = std::sync::atomic::AtomicBool::new(false);
        let release = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            drop(first);
        };
        let on_wait = || waited.store(true, std::sync::atomic::Ordering::SeqCst);
        let take = FileLock::exclusive(&path, &on_wait);
        let ((), second) = tokio::join!(release, take);
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(second.unwrap().path(), path);
    }

    #[test]
    fn missing_folder_is_an_error() {
        let e = FileLock::try_exclusive(Path::new("/nonexistent/dir/x.lock")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/dir/x.lock"), "{e}");
    }

    #[test]
    fn notes_missing_files_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.lock");
        assert!(matches!(
            FileLock::try_lock(&path, false).unwrap(),
            Attempt::Missing
        ));
        assert!(!path.exists(), "not created");
        let mut held = FileLock::try_exclusive(&path).unwrap().unwrap();
        held.set_note("pid 1234\nsecond line\n").unwrap();
        held.set_note("pid 42\n").unwrap();
        assert_eq!(read_note(&path).as_deref(), Some("pid 42\n"));
        assert!(matches!(
            FileLock::try_lock(&path, false).unwrap(),
            Attempt::Held
        ));
        held.release_and_remove();
        assert!(!path.exists());
        assert!(matches!(
            FileLock::try_lock(&path, false).unwrap(),
            Attempt::Missing
        ));
        let again = FileLock::try_exclusive(&path).unwrap().unwrap();
        assert!(path.exists());
        drop(again);
        // a free lock is taken, and with it the note left behind
        match FileLock::try_lock(&path, false).unwrap() {
            Attempt::Locked(l) => assert_eq!(l.path(), path),
            other => panic!("{other:?}"),
        }
    }
}
