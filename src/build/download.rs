//! Parent images from URLs: downloaded once into the cache, named by their
//! SHA-256, verified while streaming, published by an atomic rename.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::cache::Cache;
use super::digest;
use crate::util::io::IoError;
use crate::util::io::ProgressFn;

/// How often download progress is reported at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Errors of downloading a parent image.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The expected digest is not a SHA-256.
    #[error("sha256 `{0}` is not 64 hexadecimal digits")]
    BadDigest(String),
    /// The URL cannot be downloaded.
    #[error("cannot download {url}: {message}")]
    Url {
        /// The URL (without credentials or query).
        url: String,
        /// Why.
        message: String,
    },
    /// The transfer failed.
    #[error("downloading {url} failed: {source}")]
    Http {
        /// The URL (without credentials or query).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("downloading {url}: the server answered {status}")]
    Status {
        /// The URL (without credentials or query).
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
    /// The bytes are not the expected ones (nothing was kept).
    #[error("{url}: sha256 is {actual}, expected {expected}; the download was deleted")]
    Mismatch {
        /// The URL (without credentials or query).
        url: String,
        /// The digest the recipe gives.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },
    /// A file could not be handled.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A URL fit for messages and logs: no user info, no query (pre-signed URLs
/// carry their credentials there), no fragment.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            // both fail only for URLs that cannot have them (e.g. `data:`)
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => "<invalid URL>".to_string(),
    }
}

/// The lower-case digest, if `sha256` is one.
fn normalize_digest(sha256: &str) -> Result<String, DownloadError> {
    let d = sha256.trim().to_ascii_lowercase();
    if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(d)
    } else {
        Err(DownloadError::BadDigest(sha256.to_string()))
    }
}

/// A file in the download cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// `<cache>/downloads/<sha256>.img`.
    pub path: PathBuf,
    /// The lower-case SHA-256 of its bytes.
    pub sha256: String,
    /// True when it was already in the cache (no network used).
    pub cached: bool,
}

/// The file behind `url` with this SHA-256, from the cache or downloaded
/// (http or https). A download whose digest differs is deleted.
pub async fn fetch(
    url: &str,
    sha256: &str,
    cache: &Cache,
    progress: ProgressFn<'_>,
) -> Result<Downloaded, DownloadError> {
    let sha256 = normalize_digest(sha256)?;
    let dir = cache.downloads();
    let path = dir.join(format!("{sha256}.img"));
    if path.is_file() {
        // the name is no proof: the bytes are hashed again whenever the
        // file's identity or change stamps differ from the last hash
        let actual = digest::cached_sha256(cache, &path)
            .await
            .map_err(|digest::DigestError::Io(e)| DownloadError::Io(e))?;
        if actual == sha256 {
            return Ok(Downloaded {
                path,
                sha256,
                cached: true,
            });
        }
        progress(&format!(
            "the cached {} is damaged (its sha256 is {actual}); downloading it again",
            path.display()
        ));
        std::fs::remove_file(&path).map_err(IoError::at("remove the damaged", &path))?;
    }
    let shown = display_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| DownloadError::Url {
        url: shown.clone(),
        message: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(DownloadError::Url {
            url: shown,
            message: format!("unsupported scheme `{}` (http or https)", parsed.scheme()),
        });
    }
    std::fs::create_dir_all(&dir).map_err(IoError::at("create", &dir))?;
    let (file, tmp) = tempfile::Builder::new()
        .prefix(&format!(".{sha256}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(IoError::at("create a file in", &dir))?
        .into_parts();
    let http = |source: reqwest::Error| DownloadError::Http {
        url: shown.clone(),
        source: source.without_url(),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(http)?;
    progress(&format!("downloading {shown}"));
    let mut response = client.get(parsed).send().await.map_err(http)?;
    if !response.status().is_success() {
        return Err(DownloadError::Status {
            url: shown,
            status: response.status(),
        });
    }
    let total = response.content_length();
    let mut out = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let (mut received, mut last) = (0u64, Instant::now());
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(IoError::at("write", &tmp))?;
        received += chunk.len() as u64;
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            progress(&progress_line(&shown, received, total));
        }
    }
    out.sync_all().await.map_err(IoError::at("write", &tmp))?;
    drop(out);
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        // `tmp` is deleted when dropped here
        return Err(DownloadError::Mismatch {
            url: shown,
            expected: sha256,
            actual,
        });
    }
    tmp.persist(&path)
        .map_err(|e| IoError::at("rename the download to", &path)(e.error))?;
    // hashed while it was written: the next use need not read it again
    digest::remember(cache, &path, &sha256).map_err(|digest::DigestError::Io(e)| e)?;
    progress(&progress_line(&shown, received, total));
    Ok(Downloaded {
        path,
        sha256,
        cached: false,
    })
}

fn progress_line(url: &str, received: u64, total: Option<u64>) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match total {
        Some(t) => format!(
            "downloading {url}: {:.1} of {:.1} MiB",
            mib(received),
            mib(t)
        ),
        None => format!("downloading {url}: {:.1} MiB", mib(received)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_carry_no_secrets() {
        assert_eq!(
            display_url("https://user:pw@example.com/a/b.qcow2?X-Amz-Signature=s#f"),
            "https://example.com/a/b.qcow2?…"
        );
        assert_eq!(
            display_url("http://example.com:8080/b.img"),
            "http://example.com:8080/b.img"
        );
        assert_eq!(display_url("not a url"), "<invalid URL>");
    }

    #[test]
    fn digests() {
        let d = "AB".repeat(32);
        assert_eq!(normalize_digest(&d).unwrap(), "ab".repeat(32));
        assert!(normalize_digest("abc").is_err());
        assert!(normalize_digest(&"g".repeat(64)).is_err());
    }

    #[tokio::test]
    async fn other_schemes_are_refused_before_any_io() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let e = fetch("file:///etc/hostname", &"0".repeat(64), &cache, &|_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unsupported scheme `file`"), "{e}");
        assert!(!cache.downloads().exists());
    }
}
