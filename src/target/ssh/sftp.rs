//! The SFTP session, as root: a session channel runs the guest's
//! `sftp-server` through `sudo -n` (the login user has passwordless sudo;
//! root cannot log in), and russh-sftp's client talks to it over that
//! channel. Errors map to [`TargetError`]: SFTP status codes become
//! [`std::io::ErrorKind`]s (so "no such file" is
//! [`TargetError::is_not_found`]), transport failures become
//! [`TargetError::Connection`].

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{Config, SftpSession};
use russh_sftp::protocol::StatusCode;

use super::quote;
use super::session::Connection;
use crate::target::TargetError;

/// Finds the `sftp-server` binary where distributions put it and runs it.
pub const SFTP_SERVER_SCRIPT: &str = r#"for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do
  if [ -x "$p" ]; then exec "$p"; fi
done
echo "kiln: no sftp-server in /usr/lib/openssh, /usr/libexec/openssh, /usr/lib/ssh or /usr/libexec" >&2
exit 127"#;

/// Seconds one SFTP request may take: generous, an emulated guest under
/// load can stall for a while.
pub const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Bytes per write request (OpenSSH accepts up to 255 KiB).
pub const WRITE_LEN: u32 = 64 * 1024;
/// Write requests in flight: with [`WRITE_LEN`], 2 MiB, the size of
/// OpenSSH's channel window.
pub const WRITES_IN_FLIGHT: usize = 32;

/// Starts `sftp-server` as root on a new channel of `conn`.
pub(crate) async fn start(conn: &Connection) -> Result<SftpSession, TargetError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| TargetError::Connection {
        target: conn.describe.clone(),
        message: format!("{what}: {e}"),
    };
    let command = quote::command_line(&[
        "sudo",
        "-n",
        "--",
        "/bin/sh",
        "-c",
        SFTP_SERVER_SCRIPT,
        "kiln-sftp",
    ])
    .map_err(|e| fail("cannot build the sftp-server command", &e))?;
    let ch = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| fail("cannot open a channel for SFTP", &e))?;
    ch.exec(true, command)
        .await
        .map_err(|e| fail("cannot start sftp-server", &e))?;
    let cfg = Config {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        max_write_packet_len: WRITE_LEN,
        max_concurrent_writes: WRITES_IN_FLIGHT,
        ..Config::default()
    };
    SftpSession::new_with_config(ch.into_stream(), cfg)
        .await
        .map_err(|e| {
            fail(
                "cannot start the SFTP server as root (`sudo -n` sftp-server; is sudo passwordless \
                 and openssh's sftp-server installed?)",
                &e,
            )
        })
}

/// The [`std::io::ErrorKind`] for an SFTP status code.
pub fn kind_of(code: &StatusCode) -> std::io::ErrorKind {
    use std::io::ErrorKind;
    match code {
        StatusCode::NoSuchFile => ErrorKind::NotFound,
        StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
        StatusCode::OpUnsupported => ErrorKind::Unsupported,
        StatusCode::Eof => ErrorKind::UnexpectedEof,
        StatusCode::BadMessage => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    }
}

/// True when `e` says the path does not exist.
pub fn is_no_such_file(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

/// Maps an SFTP error of operation `op` on `path` to a [`TargetError`].
pub(crate) fn error(conn: &Connection, op: &'static str, path: &str, e: SftpError) -> TargetError {
    match e {
        SftpError::Status(s) => TargetError::io(
            op,
            path,
            std::io::Error::new(
                kind_of(&s.status_code),
                format!("{} ({})", s.error_message, s.status_code),
            ),
        ),
        other => TargetError::Connection {
            target: conn.describe.clone(),
            message: format!("SFTP {op} {path}: {other}"),
        },
    }
}
