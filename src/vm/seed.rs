//! The cloud-init NoCloud seed: `user-data` and `meta-data` on an ISO 9660
//! volume labelled `cidata`, attached to the VM as a CD-ROM. It carries the
//! login user (passwordless sudo, one authorized key), the SSH host key
//! kiln generated (so the client can pin it), the instance-id and the
//! hostname.
//!
//! Both documents are emitted as JSON, which is valid YAML: keys and PEM
//! blocks are multi-line and user-chosen strings could hold YAML syntax, and
//! JSON string escaping makes that injection-proof without a YAML writer.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::iso9660::{self, IsoError};
use super::qemu::{Drive, Media};

/// The volume label cloud-init's NoCloud datasource looks for.
pub const SEED_LABEL: &str = "cidata";

/// Errors writing a seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The ISO image could not be laid out.
    #[error("cannot build the seed image {path}: {source}")]
    Layout {
        /// The seed's path.
        path: String,
        /// The cause.
        #[source]
        source: IsoError,
    },
    /// The file could not be written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

use crate::util::host_key::HostKeyPair;

/// What the seed tells cloud-init.
#[derive(Clone, Debug)]
pub struct SeedConfig {
    /// The instance id; a new one makes cloud-init run its first-boot work.
    pub instance_id: String,
    /// The guest's hostname.
    pub hostname: String,
    /// The login user, created with passwordless sudo.
    pub user: String,
    /// The user's authorized key, an OpenSSH public key line.
    pub authorized_key: String,
    /// The guest's SSH host key.
    pub host_key: HostKeyPair,
}

/// The `user-data` document (`#cloud-config`). Contains the host's private
/// key: never log it.
pub fn user_data(cfg: &SeedConfig) -> String {
    let doc = json!({
        "users": [{
            "name": cfg.user,
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "shell": "/bin/bash",
            "lock_passwd": true,
            "ssh_authorized_keys": [cfg.authorized_key],
        }],
        "ssh_keys": {
            "ed25519_private": cfg.host_key.private_openssh,
            "ed25519_public": cfg.host_key.public_line,
        },
        // no other host keys: making them costs seconds under TCG, and the
        // client only accepts the pinned ed25519 key anyway
        "ssh_genkeytypes": [],
        "ssh_deletekeys": true,
        "disable_root": true,
    });
    format!("#cloud-config\n{doc:#}\n")
}

/// The `meta-data` document.
pub fn meta_data(cfg: &SeedConfig) -> String {
    let doc = json!({
        "instance-id": cfg.instance_id,
        "local-hostname": cfg.hostname,
    });
    format!("{doc:#}\n")
}

/// Writes an ISO 9660 image labelled `cidata` holding `files` (name,
/// content) to `path`: through a temporary file in the same folder, synced,
/// then renamed, with mode 0600 because a seed holds a private key.
pub fn write_seed_iso(path: &Path, files: &[(&str, &[u8])]) -> Result<(), SeedError> {
    let image = iso9660::build(SEED_LABEL, files, chrono::Utc::now()).map_err(|source| {
        SeedError::Layout {
            path: path.display().to_string(),
            source,
        }
    })?;
    let io = |what, p: &Path| {
        let p = p.display().to_string();
        move |source| SeedError::Io {
            what,
            path: p,
            source,
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    let written = f
        .write_all(&image)
        .and_then(|_| f.sync_all())
        .map_err(io("write", &tmp));
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path).map_err(io("rename", &tmp))) {
        // the partial temporary file is useless; the write error is what counts
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Writes the seed for `cfg` to `path` and returns the drive that attaches
/// it to a VM (a raw CD-ROM).
pub fn write_seed(path: &Path, cfg: &SeedConfig) -> Result<Drive, SeedError> {
    let user = user_data(cfg);
    let meta = meta_data(cfg);
    write_seed_iso(
        path,
        &[
            ("user-data", user.as_bytes()),
            ("meta-data", meta.as_bytes()),
        ],
    )?;
    Ok(seed_drive(path.to_path_buf()))
}

/// The drive for a seed image at `path`.
pub fn seed_drive(path: PathBuf) -> Drive {
    Drive {
        path,
        format: "raw".into(),
        media: Media::Cdrom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SeedConfig {
        SeedConfig {
            instance_id: "i-0123".into(),
            hostname: "kiln-build".into(),
            user: "kiln".into(),
            authorized_key: "ssh-ed25519 AAAAC3Nza client".into(),
            host_key: HostKeyPair {
                private_openssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\": x\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                public_line: "ssh-ed25519 AAAAhost host".into(),
            },
        }
    }

    #[test]
    fn user_data_is_cloud_config_json() {
        let text = user_data(&cfg());
        let body = text.strip_prefix("#cloud-config\n").expect("header line");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let user = &v["users"][0];
        assert_eq!(user["name"], "kiln");
        assert_eq!(user["sudo"], "ALL=(ALL) NOPASSWD:ALL");
        assert_eq!(user["shell"], "/bin/bash");
        assert_eq!(user["lock_passwd"], true);
        assert_eq!(
            user["ssh_authorized_keys"][0],
            "ssh-ed25519 AAAAC3Nza client"
        );
        // the multi-line key with a quote and a colon survives intact
        assert_eq!(
            v["ssh_keys"]["ed25519_private"],
            cfg().host_key.private_openssh.as_str()
        );
        assert_eq!(v["ssh_keys"]["ed25519_public"], "ssh-ed25519 AAAAhost host");
        assert_eq!(v["ssh_genkeytypes"], json!([]));
        assert_eq!(v["ssh_deletekeys"], true);
        assert_eq!(v["disable_root"], true);
        assert!(v.get("growpart").is_none() && v.get("resize_rootfs").is_none());
    }

    #[test]
    fn meta_data_has_instance_id_and_hostname() {
        let v: serde_json::Value = serde_json::from_str(&meta_data(&cfg())).unwrap();
        assert_eq!(
            v,
            json!({"instance-id": "i-0123", "local-hostname": "kiln-build"})
        );
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let shown = format!("{:?}", cfg());
        assert!(!shown.contains("b3Bl"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn seed_is_written_atomically_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.iso");
        let drive = write_seed(&path, &cfg()).unwrap();
        assert_eq!(drive.media, Media::Cdrom);
        assert_eq!(drive.format, "raw");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len() % iso9660::SECTOR as u64, 0);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["seed.iso"], "no temporary file is left");
        let err = write_seed_iso(&dir.path().join("missing/seed.iso"), &[]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
