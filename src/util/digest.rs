//! SHA-256 digests of bytes and of files, streamed on a blocking thread.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::io::IoError;

/// Read size while hashing.
const CHUNK: usize = 1 << 20;

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex SHA-256 of a file's bytes, read in 1 MiB chunks on a blocking
/// thread, which stops when the returned future is dropped (Ctrl-C,
/// SIGTERM).
pub async fn sha256_file(path: &Path) -> Result<String, IoError> {
    let owned = path.to_path_buf();
    let cancel = super::cancel::Cancel::new();
    let _stop = cancel.on_drop();
    let hashed = tokio::task::spawn_blocking(move || -> Result<String, IoError> {
        let path = owned.as_path();
        let mut f = std::fs::File::open(path)
            .map(|f| cancel.reader(f))
            .map_err(IoError::at("open", path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).map_err(IoError::at("read", path))?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(|e| IoError::at("hash", path)(std::io::Error::other(e)))?;
    hashed
}
