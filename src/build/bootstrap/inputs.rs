//! Everything that decides what a bootstrapped image contains, checked, and
//! its digest: the cache key. Equal inputs give the same digest; changing
//! any one of them (the script included) gives another.

use sha2::{Digest, Sha256};

use crate::build::parent::BootstrapSpec;

/// Errors in a bootstrap specification.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Only Debian can be bootstrapped.
    #[error("cannot bootstrap distribution `{0}`: kiln bootstraps `debian`")]
    Distro(String),
    /// The suite is not a plain name.
    #[error("suite `{0}` is not a Debian suite name (like `bookworm`)")]
    Suite(String),
    /// A package name is not one.
    #[error("`{0}` is not a Debian package name (optionally `name=version`)")]
    Package(String),
    /// A mirror URL cannot be used.
    #[error("mirror `{url}`: {message}")]
    Mirror {
        /// The URL as given (credentials are refused before they are shown).
        url: String,
        /// Why.
        message: String,
    },
}

/// The inputs of one bootstrap. Serialized into the image's `inputs.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapInputs {
    /// SHA-256 of the builder script's text.
    pub script_sha256: String,
    /// `debian`.
    pub distro: String,
    /// E.g. `bookworm`.
    pub suite: String,
    /// The main archive.
    pub mirror: String,
    /// The security archive.
    pub security_mirror: String,
    /// Extra packages, sorted and without duplicates.
    pub packages: Vec<String>,
    /// The virtual disk size in bytes.
    pub disk_size: u64,
}

impl BootstrapInputs {
    /// Checks the specification and gathers the inputs; the mirrors are
    /// already chosen (see `sources::choose`).
    pub fn new(
        script: &str,
        spec: &BootstrapSpec,
        mirror: &str,
        security_mirror: &str,
        disk_size: u64,
    ) -> Result<Self, InputError> {
        if spec.distro != "debian" {
            return Err(InputError::Distro(spec.distro.clone()));
        }
        if !is_name(&spec.suite, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        }) {
            return Err(InputError::Suite(spec.suite.clone()));
        }
        check_mirror(mirror)?;
        check_mirror(security_mirror)?;
        let mut packages = spec.packages.clone();
        if let Some(bad) = packages.iter().find(|p| !is_package(p)) {
            return Err(InputError::Package(bad.clone()));
        }
        packages.sort();
        packages.dedup();
        Ok(BootstrapInputs {
            script_sha256: hex::encode(Sha256::digest(script.as_bytes())),
            distro: spec.distro.clone(),
            suite: spec.suite.clone(),
            mirror: mirror.to_string(),
            security_mirror: security_mirror.to_string(),
            packages,
            disk_size,
        })
    }

    /// The cache key: hex SHA-256 over a versioned, canonical encoding.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"kiln-bootstrap-inputs-v1\n");
        // field order is the struct's: stable for equal inputs
        h.update(serde_json::to_vec(self).expect("plain data serializes"));
        hex::encode(h.finalize())
    }
}

/// A non-empty name that starts with a letter or digit and has only `ok`
/// characters.
fn is_name(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric()) && s.chars().all(ok)
}

/// `name` or `name=version`, as Debian spells them (no commas or spaces,
/// which would break the package list given to mmdebstrap).
fn is_package(p: &str) -> bool {
    let (name, version) = match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    };
    let name_ok = name.len() >= 2
        && is_name(name, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)
        });
    let version_ok =
        version.is_none_or(|v| is_name(v, |c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)));
    name_ok && version_ok
}

/// A mirror must be an http, https or file URL without credentials: the
/// URL is written into the image's `/etc/apt/sources.list` and the logs.
fn check_mirror(url: &str) -> Result<(), InputError> {
    let fail = |message: &str| InputError::Mirror {
        url: url.to_string(),
        message: message.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| InputError::Mirror {
        url: "<unparsable URL>".to_string(),
        message: e.to_string(),
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(InputError::Mirror {
            url: format!(
                "{}://…@{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or("")
            ),
            message: "credentials in a mirror URL would be written into the image and logs; \
                      use apt's auth.conf on a mirror that needs them"
                .to_string(),
        });
    }
    if !matches!(parsed.scheme(), "http" | "https" | "file") {
        return Err(fail("only http, https and file mirrors can be used"));
    }
    if url.contains(char::is_whitespace) {
        return Err(fail("a mirror URL cannot contain spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BootstrapSpec {
        BootstrapSpec {
            distro: "debian".into(),
            suite: "bookworm".into(),
            mirror: None,
            packages: vec!["vim".into(), "htop".into()],
        }
    }

    fn inputs(script: &str, spec: &BootstrapSpec) -> BootstrapInputs {
        BootstrapInputs::new(
            script,
            spec,
            "http://m/debian",
            "http://m/debian-security",
            3 << 30,
        )
        .unwrap()
    }

    #[test]
    fn digest_is_stable() {
        let a = inputs("script", &spec());
        let mut reordered = spec();
        reordered.packages = vec!["htop".into(), "vim".into(), "htop".into()];
        let b = inputs("script", &reordered);
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.packages, ["htop", "vim"]);
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn every_input_changes_the_digest() {
        let base = inputs("script", &spec());
        let mut variants = vec![inputs("script v2", &spec())];
        let mut s = spec();
        s.suite = "trixie".into();
        variants.push(inputs("script", &s));
        let mut s = spec();
        s.packages.push("curl".into());
        variants.push(inputs("script", &s));
        let changed = |f: fn(&mut BootstrapInputs)| {
            let mut i = base.clone();
            f(&mut i);
            i
        };
        variants.push(changed(|i| i.mirror = "http://other/debian".into()));
        variants.push(changed(|i| {
            i.security_mirror = "http://other/debian-security".into()
        }));
        variants.push(changed(|i| i.disk_size += 1 << 30));
        variants.push(changed(|i| i.distro = "debian2".into()));
        let mut digests: Vec<String> = variants.iter().map(BootstrapInputs::digest).collect();
        digests.push(base.digest());
        let n = digests.len();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), n, "two different inputs share a digest");
    }

    #[test]
    fn bad_specifications() {
        let try_spec = |f: fn(&mut BootstrapSpec)| {
            let mut s = spec();
            f(&mut s);
            BootstrapInputs::new("x", &s, "http://m/debian", "http://m/debian-security", 1)
        };
        assert!(matches!(
            try_spec(|s| s.distro = "ubuntu".into()),
            Err(InputError::Distro(_))
        ));
        assert!(matches!(
            try_spec(|s| s.suite = "Bookworm; rm".into()),
            Err(InputError::Suite(_))
        ));
        assert!(matches!(
            try_spec(|s| s.suite = String::new()),
            Err(InputError::Suite(_))
        ));
        for bad in ["a,b", "with space", "-x", "x", "Upper", "vim=", "vim=1 2"] {
            let mut s = spec();
            s.packages = vec![bad.into()];
            assert!(
                matches!(
                    BootstrapInputs::new("x", &s, "http://m/debian", "http://m/d-s", 1),
                    Err(InputError::Package(p)) if p == bad
                ),
                "{bad}"
            );
        }
        let mut s = spec();
        s.packages = vec![
            "libstdc++6".into(),
            "linux-image-6.1.0-9-amd64".into(),
            "vim=2:9.0.1378-2".into(),
        ];
        assert!(BootstrapInputs::new("x", &s, "http://m/debian", "http://m/d-s", 1).is_ok());
    }

    #[test]
    fn mirrors_are_checked() {
        let with = |m: &str| BootstrapInputs::new("x", &spec(), m, "http://m/debian-security", 1);
        let e = with("http://user:secret@m/debian").unwrap_err().to_string();
        assert!(e.contains("credentials") && !e.contains("secret"), "{e}");
        assert!(with("ftp://m/debian").is_err());
        assert!(with("not a url").is_err());
        assert!(with("file:///srv/mirror/debian").is_ok());
        assert!(with("https://m.example/debian").is_ok());
    }
}
