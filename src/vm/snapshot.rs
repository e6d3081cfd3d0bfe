//! A running VM's whole state (devices and RAM) saved to a file, and a VM
//! started from such a file instead of booting.
//!
//! Both go through QEMU's migration: the paused VM migrates into a `zstd`
//! child that writes the state file (zero pages cost nothing in the stream,
//! zstd squeezes the rest), and a new QEMU started with the same machine
//! and devices migrates in from `zstd -dc`. The disk is not in the state:
//! the caller freezes the VM's disk overlay at the moment of the save (the
//! VM is paused, QEMU has flushed it) and gives the restored VM a new
//! overlay on top of the frozen copy.
//!
//! A restored guest resumes exactly where it was paused: its clock, its
//! random pool and everything it was given (keys) are the snapshot's until
//! the caller changes them. The `vmgenid` device every kiln VM carries gets
//! a new id at each QEMU start, which tells a Linux guest (5.18+) to reseed
//! its random pool when it resumes.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::qemu::Vm;
use super::VmError;
use crate::util::task::Task;

/// The program that compresses and expands state files (Debian package
/// `zstd`).
pub const ZSTD: &str = "zstd";

/// Quotes `s` for `/bin/sh` (QEMU runs `exec:` migration URIs with it).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The migration URI that writes the state compressed to `path`.
pub fn save_uri(path: &Path) -> String {
    format!(
        "exec:{ZSTD} -q -1 -T0 -f -o {}",
        sh_quote(&path.display().to_string())
    )
}

/// The migration URI a restoring QEMU reads the state from (`-incoming`).
pub fn restore_uri(path: &Path) -> String {
    format!(
        "exec:{ZSTD} -q -dc {}",
        sh_quote(&path.display().to_string())
    )
}

/// What a save wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    /// The state file's size.
    pub file_bytes: u64,
    /// Bytes of the migration stream before compression.
    pub stream_bytes: u64,
    /// Guest memory in bytes.
    pub guest_ram_bytes: u64,
    /// How long the save took.
    pub seconds: f64,
}

/// How long `qemu --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);

/// The first line of `qemu --version`: a saved state is valid only for the
/// QEMU version that wrote it.
pub async fn qemu_version(binary: &str) -> Result<String, VmError> {
    let out = Task::new("asking QEMU for its version", binary)
        .arg("--version")
        .stdout_limit(64 << 10)
        .timeout(VERSION_TIMEOUT)
        .output()
        .await?;
    match out.stdout_text().lines().next() {
        Some(line) if !line.trim().is_empty() => Ok(line.trim().to_string()),
        _ => Err(VmError::Unusable(format!(
            "`{binary} --version` printed no version"
        ))),
    }
}

impl Vm {
    /// Pauses the guest's CPUs (QEMU flushes the disks).
    pub async fn pause(&mut self) -> Result<(), VmError> {
        self.qmp().execute("stop", None).await.map(|_| ())
    }

    /// Lets a paused guest run again.
    pub async fn resume(&mut self) -> Result<(), VmError> {
        self.qmp().execute("cont", None).await.map(|_| ())
    }

    /// Saves the paused guest's devices and RAM to `path` (zstd), waiting
    /// up to `timeout`. The VM stays paused; on failure or timeout the
    /// migration is cancelled and `path` removed.
    pub async fn save_state(&mut self, path: &Path, timeout: Duration) -> Result<Saved, VmError> {
        let started = Instant::now();
        if self.status().await? == "running" {
            return Err(VmError::Unusable(
                "a VM's state is saved only while it is paused".into(),
            ));
        }
        // the default bandwidth cap (32 MiB/s) is for live migration over a
        // network; a paused VM into a local file goes as fast as it can
        self.qmp()
            .execute(
                "migrate-set-parameters",
                Some(json!({ "max-bandwidth": 64u64 << 30 })),
            )
            .await?;
        let saved = self.migrate_out(path, timeout).await;
        if saved.is_err() {
            let _ = self.qmp().execute("migrate_cancel", None).await;
            let _ = std::fs::remove_file(path);
        }
        let stats = saved?;
        let file_bytes = std::fs::metadata(path)
            .map_err(|source| VmError::Io {
                what: "stat",
                path: path.display().to_string(),
                source,
            })?
            .len();
        Ok(Saved {
            file_bytes,
            seconds: started.elapsed().as_secs_f64(),
            ..stats
        })
    }

    async fn migrate_out(&mut self, path: &Path, timeout: Duration) -> Result<Saved, VmError> {
        self.qmp()
            .execute("migrate", Some(json!({ "uri": save_uri(path) })))
            .await?;
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.qmp().execute("query-migrate", None).await?;
            match m.get("status").and_then(|s| s.as_str()).unwrap_or("") {
                "completed" => {
                    let ram = &m["ram"];
                    return Ok(Saved {
                        file_bytes: 0,
                        stream_bytes: ram["transferred"].as_u64().unwrap_or(0),
                        guest_ram_bytes: ram["total"].as_u64().unwrap_or(0),
                        seconds: 0.0,
                    });
                }
                "failed" | "cancelled" => {
                    return Err(VmError::Qmp {
                        what: "migrate".into(),
                        message: m
                            .get("error-desc")
                            .and_then(|e| e.as_str())
                            .unwrap_or("the state could not be written")
                            .to_string(),
                    })
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    what: "the VM's state to be saved".into(),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a VM started with an incoming state file has loaded it
    /// (it is then paused, as it was saved). A state QEMU cannot load makes
    /// it exit: that is an error with QEMU's message.
    pub async fn wait_restored(&mut self, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(VmError::Exited {
                    status: format!("{status} while loading the saved state"),
                    console: self.console_tail(5),
                });
            }
            match self.status().await {
                Ok(s) if s == "inmigrate" => {}
                Ok(_) => return Ok(()),
                // the socket closes when QEMU gives up on the state
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(status) = self.exited() {
                        return Err(VmError::Exited {
                            status: format!("{status} while loading the saved state"),
                            console: self.console_tail(5),
                        });
                    }
                    return Err(e);
                }
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    what: "the saved state to load".into(),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_qemu_version_or_the_package_to_install() {
        let v = qemu_version("qemu-system-x86_64").await.unwrap();
        assert!(v.starts_with("QEMU emulator version "), "{v}");
        let e = qemu_version("/nonexistent/qemu-system-x86_64")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "asking QEMU for its version: `/nonexistent/qemu-system-x86_64` not found (install the Debian package qemu-system-x86)"
        );
        // a failing program is an error with its status
        let e = qemu_version("false").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("asking QEMU for its version: `false --version` failed"),
            "{e}"
        );
    }

    #[test]
    fn uris_quote_paths_for_the_shell() {
        let p = Path::new("/c/it's here/state.zst");
        assert_eq!(
            save_uri(p),
            r"exec:zstd -q -1 -T0 -f -o '/c/it'\''s here/state.zst'"
        );
        assert_eq!(
            restore_uri(p),
            r"exec:zstd -q -dc '/c/it'\''s here/state.zst'"
        );
    }
}
