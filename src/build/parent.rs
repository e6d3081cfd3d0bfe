//! A recipe's parent image resolved to a local file, its format, its size
//! and its SHA-256 (the parent digest in the build manifest).

use std::path::PathBuf;

use super::bootstrap::{self, BootstrapError};
use super::cache::Cache;
use super::digest::{self, DigestError};
use super::download::{self, DownloadError};
use crate::disk::img::{self, Format, ImgError};
use crate::util::io::ProgressFn;

pub use crate::recipe::{BootstrapSpec, ParentImage};

/// A parent image ready to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedParent {
    /// The local file (never written to: builds use overlays).
    pub path: PathBuf,
    /// Its format, from its magic bytes.
    pub format: Format,
    /// The SHA-256 of the file's bytes.
    pub sha256: String,
    /// The virtual disk size in bytes.
    pub virtual_size: u64,
    /// Where it came from, for people: `file …`, `url … (cached)`,
    /// `bootstrap debian bookworm from MIRROR (cached, digest …)`.
    pub origin: String,
    /// For a bootstrapped parent, the digest of its mirrors' package
    /// indexes now ([`bootstrap::index`]); `None` when unreachable or for
    /// other parents.
    pub mirror_index_sha256: Option<String>,
}

/// Errors of resolving a parent image.
#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    /// The file does not exist (or is no regular file).
    #[error("parent image {0} does not exist or is not a file")]
    NotFound(PathBuf),
    /// The image could not be inspected.
    #[error(transparent)]
    Image(#[from] ImgError),
    /// The file could not be hashed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The bootstrap failed.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// A `kiln:NAME/…` parent could not be resolved in the catalog.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

impl ParentError {
    /// Whether the recipe's parent is at fault (exit code 2): missing, or
    /// an image kiln refuses to read.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ParentError::NotFound(_) => true,
            ParentError::Image(e) => e.is_invalid_input(),
            _ => false,
        }
    }
}

/// Resolves `parent` to a local file in or through `cache` (a `kiln:`
/// parent through the image catalog at `catalog`). Downloads and
/// bootstraps happen once; later calls find them in the cache.
pub async fn resolve(
    parent: &ParentImage,
    cache: &Cache,
    catalog: &std::path::Path,
    progress: ProgressFn<'_>,
) -> Result<ResolvedParent, ParentError> {
    let mut mirror_index_sha256 = None;
    let (path, sha256, origin) = match parent {
        ParentImage::File(path) => {
            if !path.is_file() {
                return Err(ParentError::NotFound(path.clone()));
            }
            let sha256 = digest::cached_sha256(cache, path).await?;
            (path.clone(), sha256, format!("file {}", path.display()))
        }
        ParentImage::Url { url, sha256 } => {
            let d = download::fetch(url, sha256, cache, progress).await?;
            let origin = format!(
                "url {}{}",
                download::display_url(url),
                if d.cached { " (cached)" } else { "" }
            );
            (d.path, d.sha256, origin)
        }
        ParentImage::Bootstrap(spec) => {
            let b = bootstrap::ensure(spec, cache, progress).await?;
            let sha256 = digest::cached_sha256(cache, &b.path).await?;
            let i = &b.record.inputs;
            match bootstrap::index::digest(i).await {
                Ok(d) => mirror_index_sha256 = Some(d),
                Err(e) => progress(&format!(
                    "warning: {e}; the inputs digest leaves the package index out"
                )),
            }
            let origin = format!(
                "bootstrap {} {} from {} ({}digest {})",
                i.distro,
                i.suite,
                i.mirror,
                if b.cached { "cached, " } else { "" },
                &b.record.digest[..12]
            );
            (b.path, sha256, origin)
        }
        ParentImage::Catalog { name, filter } => {
            let cat = crate::catalog::Catalog::open(catalog)?;
            let p = crate::catalog::parent::resolve(&cat, name, filter)?;
            let sha256 = digest::cached_sha256(cache, &p.path).await?;
            crate::catalog::parent::check_digest(&p, &sha256)?;
            (p.path, sha256, p.origin)
        }
    };
    let format = img::detect_format(&path)?;
    // a parent is not trusted: no backing file or extent may pull another
    // host file into the build VM (and from there into the published image)
    let virtual_size = img::info_untrusted(&path).await?.virtual_size;
    Ok(ResolvedParent {
        path,
        format,
        sha256,
        virtual_size,
        origin,
        mirror_index_sha256,
    })
}
