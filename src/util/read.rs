//! Reading a whole file that a user or a peer named (recipes, pipelines,
//! component documents, saved run states), bounded: only a regular file is
//! read (a FIFO, a device or a folder is refused without blocking on it),
//! and at most a given number of bytes.
//!
//! The file is opened with `O_NONBLOCK`, so opening a FIFO never waits for
//! a writer, and its type is checked on the open descriptor (no race with a
//! rename). Reading a regular file does not block on anything a signal
//! cannot interrupt, so Ctrl-C and SIGTERM still stop kiln.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most bytes kiln reads of a document, recipe, pipeline or other
/// text file a user names.
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// Why a file could not be read. The caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a regular file.
    #[error("it is {0}, not a regular file")]
    NotAFile(&'static str),
    /// Larger than the limit.
    #[error("it is larger than {}, the most kiln reads of such a file", human(*.limit))]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// Opening or reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// True when the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// What a file that is not regular is, in words.
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a named pipe (FIFO)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Reads the regular file at `path` (symlinks followed), refusing it when
/// it is not a regular file or holds more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // open(2) on a socket
            Some(libc::ENXIO) => ReadError::NotAFile("a socket"),
            _ => ReadError::Io(e),
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile(kind_of(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    // the size may change while reading (or be 0 for /proc files): read at
    // most one byte past the limit to tell
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error()))
}

/// [`read_text`] with the limit for documents, recipes and pipelines
/// ([`MAX_DOCUMENT_BYTES`]).
pub fn read_document(path: &Path) -> Result<String, ReadError> {
    read_text(path, MAX_DOCUMENT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yml");
        std::fs::write(&f, "name: x\n").unwrap();
        assert_eq!(read_document(&f).unwrap(), "name: x\n");
        assert!(matches!(
            read_text(&f, 3),
            Err(ReadError::TooLarge { limit: 3 })
        ));
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_document(&f), Err(ReadError::NotUtf8(_))));
        assert!(read_document(&dir.path().join("missing"))
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn refuses_devices_folders_and_fifos_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_document(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        let e = read_document(dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "it is a folder, not a regular file");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_document(&fifo).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a named pipe (FIFO), not a regular file"
        );
        let e = read_text(Path::new("/proc/self/status"), 10).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 10 }), "{e}");
        let e = read_text(Path::new("/proc/self/status"), 16 << 20);
        assert!(e.is_ok());
        assert_eq!(
            ReadError::TooLarge { limit: 16 << 20 }.to_string(),
            "it is larger than 16 MiB, the most kiln reads of such a file"
        );
    }
}
