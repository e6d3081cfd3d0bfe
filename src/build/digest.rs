//! SHA-256 digests of image files, streamed, and remembered in the cache by
//! the file's identity and change stamps, so a large parent image is hashed
//! once, not at every build.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::cache::Cache;
use crate::util::digest::{sha256_file, sha256_hex};
use crate::util::io::IoError;

/// Errors of digesting a file.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// A file could not be handled.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What identifies one version of a file: any write, truncation, rename over
/// it or metadata change moves one of these.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A remembered digest.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    path: PathBuf,
    stamp: Stamp,
    sha256: String,
}

/// The file's SHA-256, from the cache when the file has not changed since it
/// was hashed, else computed and remembered.
pub async fn cached_sha256(cache: &Cache, path: &Path) -> Result<String, DigestError> {
    let path = std::fs::canonicalize(path).map_err(IoError::at("resolve", path))?;
    let stat = |p: &Path| std::fs::metadata(p).map(|m| Stamp::of(&m));
    let before = stat(&path).map_err(IoError::at("stat", &path))?;
    let remembered = std::fs::read(record_path(cache, &path))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter(|r| r.path == path && r.stamp == before);
    if let Some(r) = remembered {
        return Ok(r.sha256);
    }
    let sha256 = sha256_file(&path).await?;
    // remember it only if the file did not change while it was read
    if stat(&path).map_err(IoError::at("stat", &path))? == before {
        save_record(
            cache,
            &Record {
                path: path.clone(),
                stamp: before,
                sha256: sha256.clone(),
            },
        )?;
    }
    Ok(sha256)
}

/// Remembers that the file at `path`, as it is now, has this SHA-256 (it
/// was hashed while it was written, e.g. a download), so that
/// [`cached_sha256`] does not read it again until it changes.
pub fn remember(cache: &Cache, path: &Path, sha256: &str) -> Result<(), DigestError> {
    let path = std::fs::canonicalize(path).map_err(IoError::at("resolve", path))?;
    let meta = std::fs::metadata(&path).map_err(IoError::at("stat", &path))?;
    save_record(
        cache,
        &Record {
            path: path.clone(),
            stamp: Stamp::of(&meta),
            sha256: sha256.to_string(),
        },
    )
}

/// The file of `path`'s record in the digest cache.
fn record_path(cache: &Cache, path: &Path) -> PathBuf {
    cache.digests().join(format!(
        "{}.json",
        sha256_hex(path.as_os_str().as_encoded_bytes())
    ))
}

fn save_record(cache: &Cache, record: &Record) -> Result<(), DigestError> {
    let dir = cache.digests();
    std::fs::create_dir_all(&dir).map_err(IoError::at("create", &dir))?;
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| IoError::at("encode the digest record of", &record.path)(e.into()))?;
    Ok(crate::util::atomic::write_file(
        &record_path(cache, &record.path),
        &json,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let file = dir.path().join("f.img");
        std::fs::write(&file, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&file).await.unwrap(), abc);
        assert_eq!(cached_sha256(&cache, &file).await.unwrap(), abc);

        // the record is what answers while the file is unchanged: forge it
        let records: Vec<_> = std::fs::read_dir(cache.digests())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(records.len(), 1);
        let text = std::fs::read_to_string(&records[0]).unwrap();
        std::fs::write(&records[0], text.replace(abc, "forged")).unwrap();
        assert_eq!(cached_sha256(&cache, &file).await.unwrap(), "forged");

        // same size, new content and mtime: hashed again
        std::fs::write(&file, b"abd").unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            cached_sha256(&cache, &file).await.unwrap(),
            sha256_hex(b"abd")
        );
    }

    #[tokio::test]
    async fn missing_file_names_the_path() {
        let cache = Cache::new("/nonexistent-cache");
        let e = cached_sha256(&cache, Path::new("/nonexistent/x.img"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.img"), "{e}");
    }
}
