//! The staged build of a golden image: the parent image resolved to a local
//! file with its digest (a file, a verified download, or a Debian image
//! bootstrapped from packages, cached), then the build VM, seal, flatten,
//! test VM and publish. See [`run::Build`].

pub mod bootstrap;
pub mod cache;
pub mod digest;
pub mod distribute;
pub mod download;
pub mod guest;
pub mod leftovers;
pub mod lock;
pub mod manifest;
pub mod parent;
pub mod phases;
pub mod progress;
pub mod record;
pub mod run;
pub mod seal;
pub mod workspace;

/// Receives progress lines of long steps (downloads, bootstraps).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A file-system operation on a path failed (shared by the build modules'
/// errors).
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct IoError {
    /// What was attempted.
    pub what: &'static str,
    /// The path.
    pub path: std::path::PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// A `map_err` adapter: `.map_err(IoError::at("read", path))?`.
    pub fn at<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> IoError + 'a {
        move |source| IoError {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}
