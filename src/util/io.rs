//! The one I/O error of the crate: what was attempted on which path, with
//! the operating system's error as its source.

use std::path::{Path, PathBuf};

/// Receives progress lines of long steps (downloads, bootstraps, exports).
pub type ProgressFn<'a> = &'a (dyn Fn(&str) + Sync);

/// A file-system operation on a path failed. Display names the operation
/// and the path; the operating system's error is the [`source`].
///
/// [`source`]: std::error::Error::source
#[derive(Debug, thiserror::Error)]
#[error("{what} {}", path.display())]
pub struct IoError {
    /// What was attempted.
    pub what: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// A `map_err` adapter: `.map_err(IoError::at("read", path))?`.
    pub fn at<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> IoError + 'a {
        move |source| IoError {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The kind of the operating system's error.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}
