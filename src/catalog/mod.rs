//! The image catalog: every build kiln made, in SQLite. Images have a name,
//! a version `x.y.z` and a build number `n` kiln assigns, a status, their
//! files, AMIs, parent (ancestry), inputs digest, test results and logs.
//!
//! The database is in WAL mode with a busy timeout, and every write is one
//! IMMEDIATE transaction, so several kiln processes can share a catalog.
//! A `building` entry is backed by a lock its kiln process holds; opening
//! the catalog fails the entries whose process is gone ([`running`]).

pub mod files;
pub mod model;
pub mod parent;
pub mod running;
pub mod schema;
mod store;

use std::path::{Path, PathBuf};

pub use model::{
    Ami, Artifact, BuildNumber, FinishedBuild, Image, ImageId, NewBuild, Parent, Status,
};
pub use store::Catalog;

use crate::recipe::{Version, VersionFilter, VersionFilterError};

/// The catalog's file name inside the data folder.
pub const FILE_NAME: &str = "catalog.sqlite";

/// The folder of the builds' event files for the catalog at `catalog`:
/// `events/` beside it.
pub fn events_dir(catalog: &Path) -> PathBuf {
    catalog
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("events")
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog's folder could not be created.
    #[error("cannot create the catalog folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A database operation failed.
    #[error("catalog {}: {what}", path.display())]
    Sql {
        /// The catalog file.
        path: PathBuf,
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The catalog was written by a newer kiln.
    #[error("catalog {} has schema version {found}, this kiln knows up to {known}: use a newer kiln", path.display())]
    NewerSchema {
        /// The catalog file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// [`schema::current_version`].
        known: u32,
    },
    /// A stored value cannot be read back.
    #[error("catalog {}: image {id} has an invalid {what}: {detail}", path.display())]
    Corrupt {
        /// The catalog file.
        path: PathBuf,
        /// The image id.
        id: ImageId,
        /// The column.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No image matches.
    #[error("no image {what} in the catalog")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The image is not in a state that allows the operation.
    #[error("image {image} is {status}; {action} needs an image that is {wanted}")]
    WrongStatus {
        /// `NAME/x.y.z/n`.
        image: String,
        /// Its status.
        status: Status,
        /// What was attempted.
        action: &'static str,
        /// The statuses that allow it.
        wanted: &'static str,
    },
    /// Deleting an image other images were built on.
    #[error("image {image} is the parent of {}: delete those first", children.join(", "))]
    ParentOfOthers {
        /// `NAME/x.y.z/n`.
        image: String,
        /// The children, `NAME/x.y.z/n`.
        children: Vec<String>,
    },
    /// Deleting an image marked keep.
    #[error("image {image} is marked keep: unmark it first (`kiln images keep --off`)")]
    Kept {
        /// `NAME/x.y.z/n`.
        image: String,
    },
    /// An image reference is not of the form `NAME/VERSION[/BUILD]`.
    #[error("`{text}` is not an image reference: {reason}")]
    BadReference {
        /// The text given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A deleted image's file could not be removed.
    #[error("cannot remove {}", path.display())]
    RemoveFile {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An image has no qcow2 artifact to build on.
    #[error("image {image} has no qcow2 disk in the catalog, so it cannot be a parent")]
    NoDisk {
        /// `NAME/x.y.z/n`.
        image: String,
    },
    /// An image's disk file is gone.
    #[error("the disk of image {image}, {}, is missing: delete the image (`kiln images delete {image} --keep-files`) or restore the file", path.display())]
    DiskMissing {
        /// `NAME/x.y.z/n`.
        image: String,
        /// The disk file.
        path: PathBuf,
    },
    /// An image's disk file changed since it was published.
    #[error("the disk of image {image}, {}, has sha256 {actual} but was published with {recorded}: it was modified", path.display())]
    DiskChanged {
        /// `NAME/x.y.z/n`.
        image: String,
        /// The disk file.
        path: PathBuf,
        /// The digest recorded.
        recorded: String,
        /// The digest found.
        actual: String,
    },
    /// The lock that tells a build is running could not be taken.
    #[error("catalog {}: cannot lock the running build {id}", path.display())]
    RunningLock {
        /// The catalog file.
        path: PathBuf,
        /// The image id.
        id: ImageId,
        /// The cause.
        #[source]
        source: crate::util::flock::LockError,
    },
    /// No data folder is known (no `$KILN_DATA_DIR`, `$XDG_DATA_HOME` or `$HOME`).
    #[error(
        "no catalog location: set KILN_DATA_DIR, XDG_DATA_HOME or HOME, or pass --catalog PATH"
    )]
    NoLocation,
}

impl CatalogError {
    /// True when the error is the user's input (a bad reference, no such
    /// image, a refused operation) rather than a failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            CatalogError::NotFound { .. }
                | CatalogError::WrongStatus { .. }
                | CatalogError::ParentOfOthers { .. }
                | CatalogError::Kept { .. }
                | CatalogError::BadReference { .. }
                | CatalogError::NoDisk { .. }
                | CatalogError::DiskMissing { .. }
                | CatalogError::NoLocation
        )
    }
}

/// The catalog file given the environment (`get` reads a variable):
/// `$KILN_DATA_DIR/catalog.sqlite`, else `$XDG_DATA_HOME/kiln/…`, else
/// `$HOME/.local/share/kiln/…`. Empty variables count as unset.
pub fn default_path(get: impl Fn(&str) -> Option<String>) -> Result<PathBuf, CatalogError> {
    let var = |k: &str| get(k).filter(|v| !v.is_empty());
    let dir = if let Some(d) = var("KILN_DATA_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = var("XDG_DATA_HOME") {
        Path::new(&d).join("kiln")
    } else if let Some(h) = var("HOME") {
        Path::new(&h).join(".local/share/kiln")
    } else {
        return Err(CatalogError::NoLocation);
    };
    Ok(dir.join(FILE_NAME))
}

/// An image reference `NAME/FILTER`: `web/1.2.3/4`, `web/1.2.3` or `web/1.x.x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The image name.
    pub name: String,
    /// The version filter.
    pub filter: VersionFilter,
}

impl ImageRef {
    /// Parses `NAME/FILTER`.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let bad = |reason: String| CatalogError::BadReference {
            text: text.into(),
            reason,
        };
        let (name, filter) = text
            .split_once('/')
            .ok_or_else(|| bad("write NAME/VERSION, e.g. web/1.2.3/4 or web/1.x.x".into()))?;
        if name.is_empty() {
            return Err(bad("the name is empty".into()));
        }
        let filter = filter
            .parse()
            .map_err(|e: VersionFilterError| bad(e.to_string()))?;
        Ok(ImageRef {
            name: name.into(),
            filter,
        })
    }

    /// The exact version and build, when the reference names one build.
    pub fn exact(&self) -> Option<(Version, u64)> {
        Some((self.filter.exact()?, self.filter.build?))
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_path(env(&[("KILN_DATA_DIR", "/d"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/d/catalog.sqlite")
        );
        assert_eq!(
            default_path(env(&[("KILN_DATA_DIR", ""), ("XDG_DATA_HOME", "/x")])).unwrap(),
            PathBuf::from("/x/kiln/catalog.sqlite")
        );
        assert_eq!(
            default_path(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.local/share/kiln/catalog.sqlite")
        );
        assert!(matches!(
            default_path(env(&[])),
            Err(CatalogError::NoLocation)
        ));
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("web/1.2.3/4").unwrap();
        assert_eq!(r.name, "web");
        assert_eq!(r.exact(), Some(("1.2.3".parse().unwrap(), 4)));
        assert_eq!(r.to_string(), "web/1.2.3/4");
        assert_eq!(ImageRef::parse("web/1.x.x").unwrap().exact(), None);
        for bad in ["web", "/1.2.3", "web/x.1.x", "web/1.2"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
