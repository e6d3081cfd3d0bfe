//! Removing a deleted image's files from disk.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::model::Image;
use super::CatalogError;

/// Removes what `image` published: its folder (`location`, only when it
/// still holds a `manifest.json`, so a folder reused for something else is
/// never removed) and any artifact outside it. Files already gone are not
/// an error. Returns the paths removed.
pub fn remove_published(image: &Image) -> Result<Vec<PathBuf>, CatalogError> {
    let mut removed = Vec::new();
    let folder = image
        .location
        .as_deref()
        .map(Path::new)
        .filter(|d| d.join("manifest.json").is_file());
    if let Some(dir) = folder {
        std::fs::remove_dir_all(dir).map_err(|source| CatalogError::RemoveFile {
            path: dir.to_path_buf(),
            source,
        })?;
        removed.push(dir.to_path_buf());
    }
    for a in &image.artifacts {
        let path = Path::new(&a.path);
        if folder.is_some_and(|d| path.starts_with(d)) {
            continue;
        }
        match std::fs::remove_file(path) {
            Ok(()) => removed.push(path.to_path_buf()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CatalogError::RemoveFile {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(removed)
}
