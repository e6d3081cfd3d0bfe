//! The digest of the package indexes a bootstrap installs from: the main
//! and the security mirror's `dists/SUITE/InRelease` (else `Release`). It
//! changes when the mirrors publish new packages, so `startCondition:
//! ifChanged` rebuilds a bootstrapped image's pipeline when updates are out.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::inputs::BootstrapInputs;

/// How long one index request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why an index could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the package index of {mirror} {suite}: {reason}")]
pub struct IndexError {
    /// The mirror.
    pub mirror: String,
    /// The suite.
    pub suite: String,
    /// Why (the last attempt's).
    pub reason: String,
}

/// The URLs tried for `suite`'s index on `mirror`, in order.
pub fn index_urls(mirror: &str, suite: &str) -> [String; 2] {
    let base = mirror.trim_end_matches('/');
    [
        format!("{base}/dists/{suite}/InRelease"),
        format!("{base}/dists/{suite}/Release"),
    ]
}

async fn fetch(client: &reqwest::Client, mirror: &str, suite: &str) -> Result<Vec<u8>, IndexError> {
    let mut reason = String::new();
    for url in index_urls(mirror, suite) {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(b) => return Ok(b.to_vec()),
                Err(e) => reason = e.without_url().to_string(),
            },
            Ok(r) => reason = format!("{url} answered HTTP {}", r.status().as_u16()),
            Err(e) => reason = e.without_url().to_string(),
        }
    }
    Err(IndexError {
        mirror: mirror.into(),
        suite: suite.into(),
        reason,
    })
}

/// sha256 over the digests of the main suite's and the security suite's
/// index files, hex.
pub async fn digest(inputs: &BootstrapInputs) -> Result<String, IndexError> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| IndexError {
            mirror: inputs.mirror.clone(),
            suite: inputs.suite.clone(),
            reason: e.to_string(),
        })?;
    let main = fetch(&client, &inputs.mirror, &inputs.suite).await?;
    let security = fetch(
        &client,
        &inputs.security_mirror,
        &format!("{}-security", inputs.suite),
    )
    .await?;
    let mut h = Sha256::new();
    h.update(hex::encode(Sha256::digest(&main)));
    h.update(b"\n");
    h.update(hex::encode(Sha256::digest(&security)));
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            index_urls("http://deb.debian.org/debian/", "bookworm"),
            [
                "http://deb.debian.org/debian/dists/bookworm/InRelease",
                "http://deb.debian.org/debian/dists/bookworm/Release"
            ]
        );
    }
}
