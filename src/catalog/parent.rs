//! `parentImage: kiln:NAME/1.x.x`: a catalog image as a build's parent.

use std::path::PathBuf;

use super::model::Image;
use super::{Catalog, CatalogError, ImageRef};
use crate::recipe::VersionFilter;

/// A catalog image chosen as a parent.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogParent {
    /// The image chosen.
    pub image: Image,
    /// Its disk (`image.qcow2`).
    pub path: PathBuf,
    /// The disk's sha256 as the catalog recorded it.
    pub sha256: String,
    /// `kiln:NAME/x.y.z/n (from kiln:NAME/FILTER)`, for people and the manifest.
    pub origin: String,
}

/// The newest available build of `name` matching `filter`, with its disk.
/// Fails when none matches, when it has no qcow2 artifact, or when that
/// file is gone.
pub fn resolve(
    cat: &Catalog,
    name: &str,
    filter: &VersionFilter,
) -> Result<CatalogParent, CatalogError> {
    let wanted = ImageRef {
        name: name.into(),
        filter: *filter,
    };
    let image = cat
        .resolve(name, filter)?
        .ok_or_else(|| CatalogError::NotFound {
            what: format!("{wanted} that is available (`kiln images list {name}` shows them)"),
        })?;
    let disk = image.disk().ok_or_else(|| CatalogError::NoDisk {
        image: image.full_name(),
    })?;
    let path = PathBuf::from(&disk.path);
    if !path.is_file() {
        return Err(CatalogError::DiskMissing {
            image: image.full_name(),
            path,
        });
    }
    Ok(CatalogParent {
        origin: format!("kiln:{} (from kiln:{wanted})", image.full_name()),
        sha256: disk.sha256.clone(),
        path,
        image,
    })
}

/// Checks that the disk's bytes still have the digest the catalog recorded.
pub fn check_digest(parent: &CatalogParent, actual: &str) -> Result<(), CatalogError> {
    if actual == parent.sha256 {
        Ok(())
    } else {
        Err(CatalogError::DiskChanged {
            image: parent.image.full_name(),
            path: parent.path.clone(),
            recorded: parent.sha256.clone(),
            actual: actual.into(),
        })
    }
}
