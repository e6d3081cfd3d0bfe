//! SSH keys made per build: the client key kiln logs in with, and the host
//! key it hands to cloud-init and then pins. Both are ed25519, generated in
//! Rust; private halves never appear in `Debug` output.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey};

pub use russh::keys::PublicKey;

use super::SshError;
use crate::util::host_key::HostKeyPair;

/// An ed25519 key pair.
#[derive(Clone)]
pub struct KeyPair {
    key: PrivateKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &fingerprint(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// The SHA-256 fingerprint of a public key, as `ssh-keygen -l` shows it
/// (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The OpenSSH public line of `key` (`ssh-ed25519 AAAA… comment`).
pub fn public_line(key: &PublicKey, comment: &str) -> String {
    let mut key = key.clone();
    key.set_comment(comment);
    key.to_openssh()
        .expect("an in-memory public key always encodes")
        .trim_end()
        .to_string()
}

/// A `known_hosts` line pinning `key` for `host:port` (`[host]:port` unless
/// the port is 22), for `ssh -o UserKnownHostsFile=FILE`.
pub fn known_hosts_line(host: &str, port: u16, key: &PublicKey) -> String {
    let pattern = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    format!("{pattern} {}", public_line(key, ""))
}

/// Parses an OpenSSH public key line.
pub fn parse_public(line: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(line.trim()).map_err(|source| SshError::Key {
        what: "parse the public key",
        source,
    })
}

impl KeyPair {
    /// Generates a new ed25519 key pair from the system's secure random source.
    pub fn generate() -> Result<KeyPair, SshError> {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|source| {
            SshError::Key {
                what: "generate an ed25519 key",
                source,
            }
        })?;
        Ok(KeyPair { key })
    }

    /// Reads a key pair from its OpenSSH private key text.
    pub fn from_openssh(pem: &str) -> Result<KeyPair, SshError> {
        let key = PrivateKey::from_openssh(pem).map_err(|source| SshError::Key {
            what: "parse the private key",
            source,
        })?;
        Ok(KeyPair { key })
    }

    /// The private key in OpenSSH PEM form. A secret: never log it.
    pub fn openssh_private(&self) -> Result<String, SshError> {
        self.key
            .to_openssh(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|source| SshError::Key {
                what: "encode the private key",
                source,
            })
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The public key as an OpenSSH line with `comment`.
    pub fn public_line(&self, comment: &str) -> String {
        public_line(self.public_key(), comment)
    }

    /// The public key's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.public_key())
    }

    /// A `known_hosts` line for this key as the host key of
    /// `127.0.0.1:port`.
    pub fn known_hosts_line(&self, port: u16) -> String {
        known_hosts_line("127.0.0.1", port, self.public_key())
    }

    /// This key as the guest's host key in a cloud-init seed.
    pub fn seed_host_key(&self) -> Result<HostKeyPair, SshError> {
        Ok(HostKeyPair {
            private_openssh: self.openssh_private()?,
            public_line: self.public_line("kiln-host"),
        })
    }

    /// The private key for russh.
    pub(crate) fn private(&self) -> &PrivateKey {
        &self.key
    }

    /// Writes the private key to `path` with mode 0600 (for `ssh -i`),
    /// replacing any file there.
    pub fn write_private(&self, path: &Path) -> Result<(), SshError> {
        let io = |what| {
            move |source| SshError::KeyFile {
                what,
                path: path.display().to_string(),
                source,
            }
        };
        let pem = self.openssh_private()?;
        // a file left by an earlier run may have a wider mode: start afresh
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("replace")(e)),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io("create"))?;
        f.write_all(pem.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io("write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_keys_round_trip_and_differ() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        let pem = a.openssh_private().unwrap();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let back = KeyPair::from_openssh(&pem).unwrap();
        assert_eq!(back.public_key().key_data(), a.public_key().key_data());
        let line = a.public_line("kiln@test");
        assert!(
            line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
            "{line}"
        );
        assert!(line.ends_with(" kiln@test"), "{line}");
        assert_eq!(
            parse_public(&line).unwrap().key_data(),
            a.public_key().key_data()
        );
        assert!(a.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let k = KeyPair::generate().unwrap();
        let pem = k.openssh_private().unwrap();
        let secret_line = pem.lines().nth(2).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(secret_line), "{shown}");
        assert!(shown.contains(&k.fingerprint()));
    }

    #[test]
    fn known_hosts_lines() {
        let k = KeyPair::generate().unwrap();
        let line = k.known_hosts_line(2222);
        let (pattern, rest) = line.split_once(' ').unwrap();
        assert_eq!(pattern, "[127.0.0.1]:2222");
        assert_eq!(rest.trim(), k.public_line("").trim());
        assert!(known_hosts_line("h", 22, k.public_key()).starts_with("h ssh-ed25519 "));
    }

    #[test]
    fn private_key_file_is_0600_and_readable_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k = KeyPair::generate().unwrap();
        k.write_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-y", "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            parse_public(&derived).unwrap().key_data(),
            k.public_key().key_data()
        );
        let err = k
            .write_private(&dir.path().join("no/such/dir/id"))
            .unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
