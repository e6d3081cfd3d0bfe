//! Exclusive advisory locks (`flock(2)`) on lock files, so two kiln processes
//! do not build the same thing at once: the second waits, then reuses the
//! first one's result. The lock belongs to the open file: it ends when the
//! last process holding the descriptor closes it (or dies).

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting process tries again.
const POLL: Duration = Duration::from_millis(250);

/// Errors of locking.
#[derive(Debug, thiserror::Error)]
#[error("{what} lock file {path}")]
pub struct LockError {
    /// What was attempted.
    what: &'static str,
    /// The lock file.
    path: PathBuf,
    /// The cause.
    #[source]
    source: std::io::Error,
}

/// A held lock (exclusive or shared); dropping it releases it.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock if nobody holds it (creating the file if needed).
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>, LockError> {
        FileLock::try_lock(path, libc::LOCK_EX)
    }

    /// Takes a shared lock (many holders at once) unless someone holds the
    /// lock exclusively (creating the file if needed).
    pub fn try_shared(path: &Path) -> Result<Option<FileLock>, LockError> {
        FileLock::try_lock(path, libc::LOCK_SH)
    }

    fn try_lock(path: &Path, operation: libc::c_int) -> Result<Option<FileLock>, LockError> {
        let err = |what| {
            move |source| LockError {
                what,
                path: path.to_path_buf(),
                source,
            }
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err("open"))?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
                return Ok(Some(FileLock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(err("lock")(e)),
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
}

impl AsRawFd for FileLock {
    /// The descriptor that holds the lock: a child process that inherits it
    /// keeps the lock held until it exits, too.
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
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
}
