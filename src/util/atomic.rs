//! Atomic publishing of written files: each output is written under a
//! hidden temporary name in its destination folder, flushed to disk, then
//! renamed into place (and the folder flushed); a file that is dropped
//! unpublished is removed. A reader sees the old file or the whole new one.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::io::IoError;

/// The permissions of a published file (before the umask of the folder's
/// creator: published files are meant to be read by others).
const PUBLISHED_MODE: u32 = 0o644;

/// A file being written, not yet visible under its final name.
#[derive(Debug)]
pub struct PendingFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl PendingFile {
    /// Creates `.NAME.XXXXXX.tmp` beside `dest` (the folder must exist).
    pub fn create(dest: &Path) -> Result<Self, IoError> {
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| IoError {
                what: "write",
                path: dest.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
            })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(IoError::at("create a temporary file in", dir))?;
        Ok(PendingFile {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The temporary path (removed when this is dropped unpublished).
    pub fn tmp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The open file, for writing.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Flushes the data to disk, renames the file into place and flushes
    /// the folder, so `dest` is either absent or whole, even after a crash.
    pub fn publish(self) -> Result<PathBuf, IoError> {
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(PUBLISHED_MODE))
            .map_err(IoError::at("set permissions of", self.tmp.path()))?;
        file.sync_all()
            .map_err(IoError::at("flush", self.tmp.path()))?;
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| IoError::at("rename the written file to", &dest)(e.error))?;
        sync_dir(parent_dir(&dest))?;
        Ok(dest)
    }
}

/// The folder a path is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a folder's entries (a rename in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IoError::at("flush", dir))
}

/// Writes `bytes` to `path` atomically (hidden temporary name beside it,
/// fsync, rename, folder fsync), with the temporary file's mode 0600: for
/// kiln's own records and reports, not for published outputs (see
/// [`PendingFile`]).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    use std::io::Write;
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(IoError::at("create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(IoError::at("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| IoError::at("rename the written file to", path)(e.error))?;
    sync_dir(dir)
}

/// Writes `value` as pretty JSON to `path` atomically, as [`write_file`].
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), IoError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| IoError::at("encode", path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    write_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn published_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("image.vmdk");
        let mut p = PendingFile::create(&dest).unwrap();
        p.file().write_all(b"data").unwrap();
        let tmp = p.tmp_path().to_path_buf();
        assert!(tmp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".image.vmdk."));
        assert!(!dest.exists());
        assert_eq!(p.publish().unwrap(), dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        assert!(!tmp.exists());
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, PUBLISHED_MODE);

        let mut dropped = PendingFile::create(&dir.path().join("other.raw")).unwrap();
        dropped.file().write_all(b"partial").unwrap();
        let tmp = dropped.tmp_path().to_path_buf();
        drop(dropped);
        assert!(!tmp.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the published file is left");
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let e = PendingFile::create(Path::new("/nonexistent-kiln-dir/x.vmdk")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-kiln-dir"), "{e}");
    }
}
