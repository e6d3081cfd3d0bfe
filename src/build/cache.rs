//! Where kiln keeps what it can reuse between builds: downloaded and
//! bootstrapped parent images and file digests.

use std::ffi::OsString;
use std::path::PathBuf;

/// Errors of the cache location.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No variable says where the cache is.
    #[error("cannot place kiln's cache: set KILN_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoLocation,
}

/// kiln's cache directory. Layout:
/// `downloads/<sha256>.img` (URL parents), `bootstrap/<digest>/` (bootstrapped
/// parents), `digests/` (file digests by path, size and mtime), `layers/`
/// (saved build VMs, see [`super::layers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    /// The root folder.
    pub root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
    pub fn from_env() -> Result<Self, CacheError> {
        let var = |name| std::env::var_os(name);
        cache_root(var("KILN_CACHE_DIR"), var("XDG_CACHE_HOME"), var("HOME"))
            .map(Cache::new)
            .ok_or(CacheError::NoLocation)
    }

    /// Downloaded parent images, named by their sha256.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Bootstrapped parent images, one folder per input digest.
    pub fn bootstrap(&self) -> PathBuf {
        self.root.join("bootstrap")
    }

    /// Remembered file digests.
    pub fn digests(&self) -> PathBuf {
        self.root.join("digests")
    }

    /// Saved build VMs: booted parents and component layers.
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
}

/// The cache root from the three variables. Empty values count as unset; a
/// relative `XDG_CACHE_HOME` is ignored, as the XDG specification says.
fn cache_root(
    kiln: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(kiln)
        .or_else(|| set(xdg).filter(|p| p.is_absolute()).map(|p| p.join("kiln")))
        .or_else(|| set(home).map(|h| h.join(".cache/kiln")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(k: Option<&str>, x: Option<&str>, h: Option<&str>) -> Option<PathBuf> {
        cache_root(k.map(Into::into), x.map(Into::into), h.map(Into::into))
    }

    #[test]
    fn location_order() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(root(Some("/k"), Some("/x"), Some("/h")), p("/k"));
        assert_eq!(root(None, Some("/x"), Some("/h")), p("/x/kiln"));
        assert_eq!(root(Some(""), Some("/x"), Some("/h")), p("/x/kiln"));
        assert_eq!(root(None, Some("rel"), Some("/h")), p("/h/.cache/kiln"));
        assert_eq!(root(None, None, Some("/h")), p("/h/.cache/kiln"));
        assert_eq!(root(None, Some(""), None), None);
        let c = Cache::new("/c");
        assert_eq!(c.downloads(), PathBuf::from("/c/downloads"));
        assert_eq!(c.bootstrap(), PathBuf::from("/c/bootstrap"));
    }
}
