//! One authenticated SSH connection: the TCP connect, the key exchange with
//! the pinned host key, public-key login, keepalives; and the retry loop
//! that waits for a booting guest.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{Algorithm, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;

use super::keys::{fingerprint, PublicKey};
use super::{SshConfig, SshError};

/// How often a keepalive is sent when the server is silent, and how many
/// may go unanswered before the connection counts as dead (~1 min).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_MAX: usize = 4;
/// How long the server may take to send its SSH banner after the TCP
/// connection is open.
pub const BANNER_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest time one attempt gets in [`wait_for`].
const MIN_ATTEMPT: Duration = Duration::from_secs(1);
/// The pause between two connection attempts while waiting for a guest.
pub const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How long [`wait_for`] keeps retrying when logins are refused: an sshd
/// that is shutting down for a reboot refuses them (measured), and on some
/// images sshd answers before cloud-init has installed the key. A key that
/// is still refused after this long is wrong.
pub const AUTH_GRACE: Duration = Duration::from_secs(60);
/// Our receive window per channel: large, so downloads are not throttled by
/// round trips to a slow (emulated) guest.
pub const WINDOW_SIZE: u32 = 16 << 20;

/// Ciphers, fastest first for a guest: AES-GCM uses the CPU's AES
/// instructions, which TCG's `-cpu max` also emulates cheaply (a 100 MiB
/// SFTP upload measured 8.7 MiB/s with aes256-gcm, 6.2 with aes128-ctr and
/// 2.7 with chacha20-poly1305, the guest's CPU being the bottleneck).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// What can go wrong before a session is usable, as the handler reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The transport or protocol failed.
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    /// The server proved a key other than the pinned one.
    #[error("the server presented {presented}")]
    HostKeyMismatch {
        /// What it presented.
        presented: String,
    },
}

/// The russh client handler: accepts exactly the pinned host key.
pub(crate) struct PinnedHostKey {
    expected: PublicKey,
}

impl client::Handler for PinnedHostKey {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server: &PublicKeyOrCertificate,
    ) -> Result<bool, HandshakeError> {
        match server {
            PublicKeyOrCertificate::PublicKey { key, .. }
                if key.key_data() == self.expected.key_data() =>
            {
                Ok(true)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => Err(HandshakeError::HostKeyMismatch {
                presented: format!("{} key {}", key.algorithm(), fingerprint(key)),
            }),
            PublicKeyOrCertificate::Certificate(cert) => Err(HandshakeError::HostKeyMismatch {
                presented: format!(
                    "a certificate for key {}",
                    fingerprint(&PublicKey::from(cert.public_key().clone()))
                ),
            }),
        }
    }
}

/// An authenticated connection and, once asked for, its SFTP session.
pub(crate) struct Connection {
    /// The russh session handle.
    pub handle: Handle<PinnedHostKey>,
    /// `user@host:port`, for messages.
    pub describe: String,
    sftp: tokio::sync::OnceCell<SftpSession>,
}

impl Connection {
    /// The SFTP session, started on first use.
    pub async fn sftp(&self) -> Result<&SftpSession, crate::target::TargetError> {
        self.sftp.get_or_try_init(|| super::sftp::start(self)).await
    }
}

fn client_config() -> client::Config {
    client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        window_size: WINDOW_SIZE,
        preferred: russh::Preferred {
            // the pinned key is ed25519: ask for nothing else
            key: Cow::Borrowed(&[Algorithm::Ed25519]),
            cipher: Cow::Borrowed(CIPHERS),
            ..russh::Preferred::default()
        },
        ..client::Config::default()
    }
}

/// Errors after which a later attempt may succeed: the guest is not (or no
/// longer) listening, or went away mid-handshake. Algorithm mismatches and
/// bad signatures are not among them.
fn is_transient(e: &russh::Error) -> bool {
    !matches!(
        e,
        russh::Error::NoCommonAlgo { .. }
            | russh::Error::UnknownAlgo
            | russh::Error::WrongServerSig
            | russh::Error::Keys(_)
            | russh::Error::SshKey(_)
            | russh::Error::InvalidConfig(_)
    )
}

fn classify(cfg: &SshConfig, e: HandshakeError) -> SshError {
    let addr = cfg.address();
    match e {
        HandshakeError::HostKeyMismatch { presented } => SshError::HostKeyMismatch {
            addr,
            expected: format!(
                "{} key {}",
                cfg.host_key.algorithm(),
                fingerprint(&cfg.host_key)
            ),
            presented,
        },
        HandshakeError::Ssh(source) if is_transient(&source) => SshError::NotUp { addr, source },
        HandshakeError::Ssh(source) => SshError::Protocol { addr, source },
    }
}

/// The identification line a client with `config` sends first (RFC 4253
/// 4.2), byte for byte as russh writes it.
fn identification(config: &client::Config) -> Vec<u8> {
    match &config.client_id {
        russh::SshId::Standard(id) => format!("{id}\r\n").into_bytes(),
        russh::SshId::Raw(id) => id.as_bytes().to_vec(),
    }
}

/// Opens the TCP connection, sends our identification line `ident`, and
/// waits until the server's first byte (its SSH banner) arrives. QEMU's
/// user network and passt accept connections at once, also while the
/// guest's network is not up, and such a connection then hangs: waiting
/// for the banner with a short limit lets the next attempt come soon instead
/// of after the whole connect timeout. The client speaks first, as OpenSSH
/// does: passt (Debian 12's) finishes a forwarded connection's handshake
/// with the guest only once the client has sent data, so a client waiting
/// in silence for the banner would wait forever.
async fn open_stream(cfg: &SshConfig, ident: &[u8]) -> Result<tokio::net::TcpStream, SshError> {
    use tokio::io::AsyncWriteExt;
    let not_up = |e: std::io::Error| SshError::NotUp {
        addr: cfg.address(),
        source: russh::Error::IO(e),
    };
    let mut stream = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(not_up)?;
    stream.set_nodelay(true).map_err(not_up)?;
    stream.write_all(ident).await.map_err(not_up)?;
    let mut first = [0u8; 1];
    match tokio::time::timeout(BANNER_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(0)) => Err(not_up(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before the SSH banner",
        ))),
        Ok(Ok(_)) => Ok(stream),
        Ok(Err(e)) => Err(not_up(e)),
        Err(_) => Err(SshError::ConnectTimeout {
            addr: cfg.address(),
            seconds: BANNER_TIMEOUT.as_secs_f64(),
        }),
    }
}

/// A stream on which our identification line `ident` was sent already
/// ([`open_stream`]): russh's own first write, the same line, is checked
/// and not sent again.
struct IdentSent {
    stream: tokio::net::TcpStream,
    ident: Vec<u8>,
    skipped: usize,
}

impl tokio::io::AsyncRead for IdentSent {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for IdentSent {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let left = &this.ident[this.skipped..];
        if left.is_empty() {
            return std::pin::Pin::new(&mut this.stream).poll_write(cx, buf);
        }
        let n = left.len().min(buf.len());
        if buf[..n] != left[..n] {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "russh's identification line differs from the one kiln sent",
            )));
        }
        this.skipped += n;
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn handshake(cfg: &SshConfig) -> Result<Connection, SshError> {
    let handler = PinnedHostKey {
        expected: cfg.host_key.clone(),
    };
    let config = client_config();
    let ident = identification(&config);
    let stream = IdentSent {
        stream: open_stream(cfg, &ident).await?,
        ident,
        skipped: 0,
    };
    let mut handle = client::connect_stream(Arc::new(config), stream, handler)
        .await
        .map_err(|e| classify(cfg, e))?;
    let key = PrivateKeyWithHashAlg::new(Arc::new(cfg.client_key.private().clone()), None);
    let auth = handle
        .authenticate_publickey(cfg.user.clone(), key)
        .await
        .map_err(|e| classify(cfg, HandshakeError::Ssh(e)))?;
    match auth {
        client::AuthResult::Success => Ok(Connection {
            handle,
            describe: cfg.describe(),
            sftp: tokio::sync::OnceCell::new(),
        }),
        client::AuthResult::Failure {
            remaining_methods, ..
        } => Err(SshError::AuthRejected {
            addr: cfg.address(),
            user: cfg.user.clone(),
            fingerprint: cfg.client_key.fingerprint(),
            remaining: format!("{remaining_methods:?}"),
        }),
    }
}

/// One connection attempt bounded by `limit`.
pub(crate) async fn connect_within(
    cfg: &SshConfig,
    limit: Duration,
) -> Result<Connection, SshError> {
    match tokio::time::timeout(limit, handshake(cfg)).await {
        Ok(r) => r,
        Err(_) => Err(SshError::ConnectTimeout {
            addr: cfg.address(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

/// Retries [`connect_within`] every [`RETRY_PAUSE`] until `deadline`, while
/// `alive` says the guest can still come up. Transient errors are retried,
/// refused logins for [`AUTH_GRACE`]; a host key mismatch ends the wait.
pub(crate) async fn wait_for(
    cfg: &SshConfig,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<Connection, SshError> {
    let started = Instant::now();
    let mut first_refusal: Option<Instant> = None;
    loop {
        alive().map_err(|reason| SshError::Aborted {
            addr: cfg.address(),
            reason,
        })?;
        // every attempt gets at least a second, even at the deadline
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = cfg.connect_timeout.min(left).max(MIN_ATTEMPT);
        let last = match connect_within(cfg, limit).await {
            Ok(conn) => return Ok(conn),
            Err(e) if e.is_transient() => e,
            Err(e @ SshError::AuthRejected { .. }) => {
                let since = *first_refusal.get_or_insert_with(Instant::now);
                if since.elapsed() >= AUTH_GRACE {
                    return Err(e);
                }
                e
            }
            Err(e) => return Err(e),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(RETRY_PAUSE.min(left)).await;
        if Instant::now() >= deadline {
            return Err(SshError::Timeout {
                addr: cfg.address(),
                waited_secs: started.elapsed().as_secs(),
                last: Box::new(last),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::ssh::keys::KeyPair;

    fn cfg(port: u16) -> SshConfig {
        let mut c = SshConfig::localhost(
            port,
            "kiln",
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap().public_key().clone(),
        );
        c.connect_timeout = Duration::from_secs(2);
        c
    }

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// An SSH server in this process (russh's own) with host key `host`
    /// that accepts only `allowed`; sessions live until the client leaves.
    struct TestServer {
        allowed: PublicKey,
    }

    impl russh::server::Handler for TestServer {
        type Error = russh::Error;

        async fn auth_publickey(
            &mut self,
            _user: &str,
            key: russh::server::VerifiedPublicKey<'_>,
        ) -> Result<russh::server::Auth, russh::Error> {
            Ok(if key.public_key.key_data() == self.allowed.key_data() {
                russh::server::Auth::Accept
            } else {
                russh::server::Auth::Reject {
                    proceed_with_methods: None,
                    partial_success: false,
                }
            })
        }
    }

    async fn serve(host: &KeyPair, allowed: &KeyPair) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Arc::new(russh::server::Config {
            keys: vec![host.private().clone()],
            auth_rejection_time: Duration::ZERO,
            auth_rejection_time_initial: Some(Duration::ZERO),
            ..Default::default()
        });
        let allowed = allowed.public_key().clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = TestServer {
                    allowed: allowed.clone(),
                };
                let config = Arc::clone(&config);
                tokio::spawn(async move {
                    // a client that gives up mid-handshake ends its session with an error
                    if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
                        session.await.ok();
                    }
                });
            }
        });
        port
    }

    fn cfg_for(port: u16, client: &KeyPair, host: &KeyPair) -> SshConfig {
        let mut c = SshConfig::localhost(port, "kiln", client.clone(), host.public_key().clone());
        c.connect_timeout = Duration::from_secs(10);
        c
    }

    #[tokio::test]
    async fn the_pinned_host_key_and_the_client_key_decide() {
        let (host, client) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let port = serve(&host, &client).await;
        let ok = connect_within(&cfg_for(port, &client, &host), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!ok.handle.is_closed());

        let impostor = KeyPair::generate().unwrap();
        let err = connect_within(&cfg_for(port, &client, &impostor), Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{text}");
        assert!(
            text.contains(&host.fingerprint()),
            "presented key named: {text}"
        );
        assert!(
            text.contains(&impostor.fingerprint()),
            "pinned key named: {text}"
        );
        assert!(!err.is_transient());
        // wait_for does not retry a mismatch
        let t0 = Instant::now();
        let err = wait_for(
            &cfg_for(port, &client, &impostor),
            Instant::now() + Duration::from_secs(30),
            || Ok(()),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5));

        let stranger = KeyPair::generate().unwrap();
        let err = connect_within(&cfg_for(port, &stranger, &host), Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SshError::AuthRejected { .. }), "{err}");
        assert!(err.to_string().contains(&stranger.fingerprint()), "{err}");
        // refused logins are retried within the grace period
        let err = wait_for(
            &cfg_for(port, &stranger, &host),
            Instant::now() + Duration::from_secs(5),
            || Ok(()),
        )
        .await
        .err()
        .unwrap();
        match err {
            SshError::Timeout { last, .. } => {
                assert!(matches!(*last, SshError::AuthRejected { .. }), "{last}")
            }
            other => panic!("expected a timeout after retries, got {other}"),
        }
    }

    /// A forward in front of `server` that, like passt in front of a guest,
    /// passes nothing from the server until the client has sent something.
    async fn client_first_forward(server: u16) -> u16 {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    if client.read_exact(&mut first).await.is_err() {
                        return;
                    }
                    let mut server = tokio::net::TcpStream::connect(("127.0.0.1", server))
                        .await
                        .unwrap();
                    tokio::io::AsyncWriteExt::write_all(&mut server, &first)
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn the_client_speaks_first() {
        let (host, client) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let port = client_first_forward(serve(&host, &client).await).await;
        let ok = connect_within(&cfg_for(port, &client, &host), Duration::from_secs(20))
            .await
            .unwrap();
        assert!(!ok.handle.is_closed());
    }

    #[tokio::test]
    async fn a_closed_port_is_not_up_yet() {
        let err = connect_within(&cfg(free_port()), Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SshError::NotUp { .. }), "{err}");
        assert!(err.is_transient());
    }

    /// What QEMU's user network does while the guest's sshd is not up: it
    /// accepts the TCP connection and closes it at once.
    #[tokio::test]
    async fn accept_then_close_is_not_up_yet_and_a_silent_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
            listener
        });
        let err = connect_within(&cfg(port), Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SshError::NotUp { .. }), "{err}");
        // now a peer that accepts and never speaks (a guest whose network is
        // not up yet, behind QEMU's user network): the banner wait ends the
        // attempt long before a generous connect limit
        let listener = closer.await.unwrap();
        let _holder = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(s);
        });
        let t0 = Instant::now();
        let err = connect_within(&cfg(port), Duration::from_secs(50))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SshError::ConnectTimeout { .. }), "{err}");
        assert!(err.to_string().contains("10.0 s"), "{err}");
        assert!(err.is_transient());
        let waited = t0.elapsed();
        assert!(waited >= BANNER_TIMEOUT && waited < BANNER_TIMEOUT + Duration::from_secs(3));
    }

    #[tokio::test]
    async fn wait_for_retries_until_the_deadline_and_names_the_last_error() {
        let c = cfg(free_port());
        let mut calls = 0;
        let t0 = Instant::now();
        let err = wait_for(&c, Instant::now() + Duration::from_secs(5), || {
            calls += 1;
            Ok(())
        })
        .await
        .err()
        .unwrap();
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(9),
            "{waited:?}"
        );
        assert!(
            calls >= 3,
            "retried every ~2 s, alive() checked each time: {calls}"
        );
        let text = err.to_string();
        assert!(matches!(err, SshError::Timeout { .. }), "{text}");
        assert!(
            text.contains("after 5 s") && text.contains("not up yet"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn wait_for_stops_when_the_guest_is_gone() {
        let c = cfg(free_port());
        let mut calls = 0;
        let t0 = Instant::now();
        let err = wait_for(&c, Instant::now() + Duration::from_secs(60), || {
            calls += 1;
            if calls > 1 {
                Err("QEMU exited with status 1".into())
            } else {
                Ok(())
            }
        })
        .await
        .err()
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, SshError::Aborted { .. }), "{err}");
        assert!(err.to_string().contains("QEMU exited with status 1"));
    }
}
