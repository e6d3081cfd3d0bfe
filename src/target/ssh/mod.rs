//! A guest over SSH: the [`Target`] that runs components inside a VM.
//!
//! The client is pure Rust (`russh`). Per build kiln makes a new client key
//! and a host key it gives the guest through cloud-init, and the client
//! accepts that host key only (it is pinned: no trust on first use).
//! Components run as root, as in Image Builder: commands go through
//! `sudo -n` (see [`exec`] for the wrapper that makes dropped commands
//! killable), and files go through an `sftp-server` started with `sudo`.

pub mod exec;
mod files;
pub mod keys;
pub mod quote;
mod session;
mod sftp;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::keys::{KeyPair, PublicKey};
use self::session::Connection;
use super::{
    DirEntry, ExecOutput, ExecRequest, FileStat, RebootOutcome, Result, Target, TargetError,
};

/// Errors of the SSH transport.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Nothing usable answers yet (refused, reset, closed before the
    /// handshake ended): a booting guest. Worth retrying.
    #[error("SSH on {addr} is not up yet: {source}")]
    NotUp {
        /// `host:port`.
        addr: String,
        /// The transport error.
        #[source]
        source: russh::Error,
    },
    /// One attempt took longer than allowed. Worth retrying.
    #[error("SSH on {addr} did not complete a login within {seconds:.1} s")]
    ConnectTimeout {
        /// `host:port`.
        addr: String,
        /// The limit.
        seconds: f64,
    },
    /// The server proved a host key other than the pinned one. Fatal.
    #[error(
        "HOST KEY MISMATCH on {addr}: kiln pinned {expected}, but the server presented \
         {presented}; refusing to connect (another machine answers on this port, or the \
         connection is being intercepted)"
    )]
    HostKeyMismatch {
        /// `host:port`.
        addr: String,
        /// The pinned key's type and fingerprint.
        expected: String,
        /// The presented key's type and fingerprint.
        presented: String,
    },
    /// The server refused our key. Fatal.
    #[error(
        "{addr} refused to log in user {user} with key {fingerprint} (methods it would still \
         accept: {remaining})"
    )]
    AuthRejected {
        /// `host:port`.
        addr: String,
        /// The user.
        user: String,
        /// The client key's fingerprint.
        fingerprint: String,
        /// What the server still offers.
        remaining: String,
    },
    /// The protocol failed in a way a retry cannot fix (no common
    /// algorithm, bad signature).
    #[error("SSH protocol failure with {addr}: {source}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// The protocol error.
        #[source]
        source: russh::Error,
    },
    /// Waiting for the guest took too long.
    #[error("gave up waiting for SSH on {addr} after {waited_secs} s; last error: {last}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// How long it waited.
        waited_secs: u64,
        /// The last attempt's error.
        #[source]
        last: Box<SshError>,
    },
    /// The caller's liveness check failed (e.g. QEMU exited).
    #[error("stopped waiting for SSH on {addr}: {reason}")]
    Aborted {
        /// `host:port`.
        addr: String,
        /// What the check said.
        reason: String,
    },
    /// A key could not be made, parsed or encoded.
    #[error("cannot {what}: {source}")]
    Key {
        /// What was attempted.
        what: &'static str,
        /// The cause.
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// A key file could not be written.
    #[error("cannot {what} the key file {path}: {source}")]
    KeyFile {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// True for errors after which a later connection attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::NotUp { .. } | SshError::ConnectTimeout { .. }
        )
    }
}

/// How to reach a guest.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// Host to connect to (QEMU forwards a loopback port).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user (has passwordless sudo).
    pub user: String,
    /// The client key.
    pub client_key: KeyPair,
    /// The host key the server must prove (pinned).
    pub host_key: PublicKey,
    /// Limit for one connection attempt (TCP, key exchange and login).
    pub connect_timeout: Duration,
    /// How long a reboot may take until SSH answers again.
    pub reboot_timeout: Duration,
}

impl SshConfig {
    /// A guest on `127.0.0.1:port`, with a 30 s connect and a 600 s reboot
    /// timeout.
    pub fn localhost(port: u16, user: &str, client_key: KeyPair, host_key: PublicKey) -> Self {
        SshConfig {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            client_key,
            host_key,
            connect_timeout: Duration::from_secs(30),
            reboot_timeout: Duration::from_secs(600),
        }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `user@host:port`.
    pub fn describe(&self) -> String {
        format!("{}@{}", self.user, self.address())
    }

    /// The `ssh` command a person can run to reach the guest, with the
    /// private key written at `key_file` and [`keys::known_hosts_line`] at
    /// `known_hosts_file`, so the host key stays pinned.
    pub fn ssh_command(
        &self,
        key_file: &Path,
        known_hosts_file: &Path,
    ) -> std::result::Result<String, quote::NulInWord> {
        let words = [
            "ssh".to_string(),
            "-i".into(),
            key_file.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known_hosts_file.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            format!("{}@{}", self.user, self.host),
        ];
        quote::command_line(&words)
    }
}

/// A liveness check: `Err(reason)` when the guest can no longer come up.
pub type Liveness = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// A guest reached over SSH.
pub struct SshTarget {
    cfg: SshConfig,
    conn: Mutex<Arc<Connection>>,
    liveness: Option<Liveness>,
}

impl SshTarget {
    /// Connects once. Fails with [`SshError::NotUp`] or
    /// [`SshError::ConnectTimeout`] while the guest is not up, and with
    /// [`SshError::HostKeyMismatch`] or [`SshError::AuthRejected`] when it
    /// is the wrong guest or refuses the key.
    pub async fn connect(cfg: SshConfig) -> std::result::Result<SshTarget, SshError> {
        let conn = session::connect_within(&cfg, cfg.connect_timeout).await?;
        Ok(SshTarget::new(cfg, conn))
    }

    /// Connects, retrying transient failures every ~2 s until `deadline`
    /// (refused logins for up to a minute; a host key mismatch never);
    /// `alive` is asked before every attempt and stops the wait with its
    /// message (use it to notice that QEMU exited).
    pub async fn wait_for(
        cfg: SshConfig,
        deadline: Instant,
        mut alive: impl FnMut() -> std::result::Result<(), String>,
    ) -> std::result::Result<SshTarget, SshError> {
        let conn = session::wait_for(&cfg, deadline, &mut alive).await?;
        Ok(SshTarget::new(cfg, conn))
    }

    fn new(cfg: SshConfig, conn: Connection) -> SshTarget {
        SshTarget {
            cfg,
            conn: Mutex::new(Arc::new(conn)),
            liveness: None,
        }
    }

    /// Sets the check used while waiting for the guest after a reboot.
    pub fn with_liveness(mut self, alive: Liveness) -> SshTarget {
        self.liveness = Some(alive);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// The current connection (a reboot replaces it).
    fn conn(&self) -> Arc<Connection> {
        Arc::clone(&self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Closes the connection politely; one that is already gone is closed.
    pub async fn close(&self) -> Result<()> {
        let conn = self.conn();
        match conn
            .handle
            .disconnect(russh::Disconnect::ByApplication, "kiln is done", "en")
            .await
        {
            Err(e) if !conn.handle.is_closed() => Err(TargetError::Connection {
                target: self.describe(),
                message: format!("cannot close the connection: {e}"),
            }),
            _ => Ok(()),
        }
    }

    async fn boot_id(&self) -> Result<String> {
        let out = self
            .capture("cat", &["/proc/sys/kernel/random/boot_id".to_string()])
            .await?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.code != Some(0) || id.is_empty() {
            return Err(TargetError::Connection {
                target: self.describe(),
                message: format!(
                    "cannot read the boot id: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(id)
    }

    /// Reconnects after a reboot until the boot id differs from `before`.
    async fn reconnect_after_reboot(&self, before: &str, deadline: Instant) -> Result<()> {
        let started = Instant::now();
        let liveness = self.liveness.clone();
        let alive = move || liveness.as_ref().map_or(Ok(()), |f| f());
        loop {
            let conn = session::wait_for(&self.cfg, deadline, &alive)
                .await
                .map_err(|e| TargetError::Connection {
                    target: self.describe(),
                    message: format!("after the reboot: {e}"),
                })?;
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(conn);
            // the old system may still answer while it shuts down, and may
            // drop the connection in the middle of this command
            let seen = match self.boot_id().await {
                Ok(now) if now != before => return Ok(()),
                Ok(_) => format!("the boot id is still {before}"),
                Err(e) => format!("reading the boot id failed: {e}"),
            };
            self.close().await?;
            if Instant::now() >= deadline {
                return Err(TargetError::Connection {
                    target: self.describe(),
                    message: format!(
                        "the guest did not come back from the reboot within {} s: {seen}",
                        started.elapsed().as_secs()
                    ),
                });
            }
            tokio::time::sleep(session::RETRY_PAUSE).await;
        }
    }
}

#[async_trait]
impl Target for SshTarget {
    fn describe(&self) -> String {
        self.cfg.describe()
    }

    async fn exec(&self, req: ExecRequest<'_>) -> Result<ExecOutput> {
        exec::run(self.conn(), req).await
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>> {
        files::read(&self.conn(), path).await
    }

    async fn write(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<()> {
        files::write(&self.conn(), path, data, mode).await
    }

    async fn append(&self, path: &str, data: &[u8]) -> Result<()> {
        files::append(&self.conn(), path, data).await
    }

    async fn stat(&self, path: &str, follow_links: bool) -> Result<Option<FileStat>> {
        files::stat(&self.conn(), path, follow_links).await
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        files::list_dir(&self.conn(), path).await
    }

    async fn create_dir_all(&self, path: &str) -> Result<()> {
        files::create_dir_all(&self.conn(), path).await
    }

    async fn remove_file(&self, path: &str) -> Result<()> {
        files::remove_file(&self.conn(), path).await
    }

    async fn remove_dir(&self, path: &str, recursive: bool) -> Result<()> {
        files::remove_dir(self, &self.conn(), path, recursive).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        files::rename(self, &self.conn(), from, to).await
    }

    async fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        files::copy_file(self, &self.conn(), from, to).await
    }

    async fn symlink(&self, target: &str, link: &str) -> Result<()> {
        files::symlink(&self.conn(), target, link).await
    }

    async fn read_link(&self, path: &str) -> Result<String> {
        files::read_link(&self.conn(), path).await
    }

    async fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        files::chmod(&self.conn(), path, mode).await
    }

    async fn upload(&self, local: &Path, path: &str) -> Result<()> {
        files::upload(&self.conn(), local, path).await
    }

    async fn download(&self, path: &str, local: &Path) -> Result<()> {
        files::download(&self.conn(), path, local).await
    }

    /// Reboots and reconnects: reads the boot id, waits `delay_seconds`,
    /// asks systemd to reboot (without waiting for an answer: the connection
    /// drops), then reconnects until the boot id has changed, within the
    /// configured reboot timeout.
    async fn reboot(&self, delay_seconds: u64) -> Result<RebootOutcome> {
        let before = self.boot_id().await?;
        tokio::time::sleep(Duration::from_secs(delay_seconds)).await;
        let deadline = Instant::now() + self.cfg.reboot_timeout;
        exec::start_detached(&self.conn(), "sudo -n systemctl reboot").await?;
        self.close().await?;
        self.reconnect_after_reboot(&before, deadline).await?;
        Ok(RebootOutcome::Rebooted)
    }
}
