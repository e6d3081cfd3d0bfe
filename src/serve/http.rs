//! The read-only HTTP API of `kiln serve`: a small HTTP/1.1 server on
//! tokio, unauthenticated, so it listens on loopback addresses only unless
//! told otherwise ([`bind`], [`Exposure`]).
//!
//! # Routes
//!
//! Every answer is JSON (`Content-Type: application/json`); errors are
//! `{"error": "message"}`.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /health` | the scheduler's health object, e.g. `{"status": "ok"}` |
//! | `GET /v1/pipelines` | `{"pipelines": [...]}` |
//! | `GET /v1/pipelines/{name}` | one pipeline, 404 if unknown |
//! | `GET /v1/builds[?pipeline=NAME][&limit=N]` | `{"builds": [...]}`: running and finished builds, newest first; `limit` 1 to 1000, default 50 |
//! | `GET /v1/builds/{id}` | one build (its id is the catalog image id), 404 if unknown |
//! | `GET /v1/images[?name=NAME]` | `{"images": [...]}`: catalog records, by name, version and build |
//! | `GET /v1/images/{id}` or `/v1/images/NAME/x.y.z/n` | one image; the reference may be percent-encoded (`web%2F1.2.3%2F4`) and may be a wildcard (`web/1.x.x`: the newest available match) |
//!
//! A build is `{id, image, name, version, build, pipeline, status,
//! createdAt, finishedAt, failure, logLocation, events, location}`, `status` one of
//! `building`, `available`, `failed`, `deprecated`. An image is the
//! catalog record (`kiln images show --json`) plus `ref`, `NAME/x.y.z/n`.
//!
//! `HEAD` is answered like `GET` without the body. Other methods get 405
//! with `Allow: GET, HEAD`. Path segments and query values are
//! percent-decoded (`+` is a space in queries). Unknown paths, pipelines,
//! builds and images are 404. A malformed request, an unknown or repeated
//! query parameter, a bad image reference or a request body
//! (`Content-Length` > 0, `Transfer-Encoding`) are 400; a request head over
//! 16 KiB is 431 (414 when the request line alone is too long); a head not
//! received within 10 s is 408. One request per connection
//! (`Connection: close`).
//!
//! A request must name this server: its `Host` (and the authority of an
//! absolute-form target) is `localhost:PORT` or a loopback address with
//! the listening port, e.g. `127.0.0.1:PORT` or `[::1]:PORT`; any other
//! name is 421 (a web page that DNS-rebinds its own name to 127.0.0.1
//! cannot read the API), and an HTTP/1.1 request without `Host` is 400.
//!
//! Slow clients cannot keep others out: a connection that sends nothing
//! within 2 s is closed, and when all 512 connection slots are taken a new
//! connection closes the one that has waited longest for its request head
//! (a prompt client's head arrives at once, so it is answered).

mod catalog_api;
pub mod request;
mod route;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use catalog_api::{build_json, image_json, CatalogApi, Pipelines};
pub use request::HostPolicy;
use request::{check_host, head_end, parse_head, RequestHead};
pub use route::{route, Api, BuildQuery, Response, ALLOWED_METHODS, DEFAULT_LIMIT, MAX_LIMIT};

use crate::catalog::CatalogError;

/// Why the HTTP API failed, or why an [`Api`] call did.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// [`bind`] was given a non-loopback address without
    /// [`Exposure::AnyAddress`].
    #[error("refusing to serve the unauthenticated API on {addr}: it is not a loopback address (listen on 127.0.0.1 or ::1; put an authenticating proxy in front for remote access)")]
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Accepting a connection failed (the server goes on).
    #[error("accepting a connection")]
    Accept {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Answering a request panicked.
    #[error("answering {method} {target} panicked")]
    Handler {
        /// The method.
        method: String,
        /// The request target.
        target: String,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The client's input is wrong (answered with 400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong, with a hint.
        message: String,
    },
    /// The catalog failed or refused (404 for `NotFound`, 400 for its
    /// other user errors, else 500).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A value could not be turned into JSON.
    #[error("cannot serialise {what} as JSON")]
    Json {
        /// What was serialised.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The scheduler's part of the API failed (500).
    #[error("{what}")]
    Api {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HttpError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest { .. } => 400,
            HttpError::Catalog(CatalogError::NotFound { .. }) => 404,
            HttpError::Catalog(e) if e.is_user_error() => 400,
            _ => 500,
        }
    }
}

/// An error and its causes, `: `-separated, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Who may reach the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Loopback addresses only (127.0.0.0/8, ::1): the default.
    LoopbackOnly,
    /// Any address: anyone who can reach it can read the catalog.
    AnyAddress,
}

/// Checks `addr` against `exposure` (IPv4-mapped IPv6 addresses count as
/// their IPv4 address).
pub fn check_address(addr: SocketAddr, exposure: Exposure) -> Result<(), HttpError> {
    if exposure == Exposure::LoopbackOnly && !addr.ip().to_canonical().is_loopback() {
        return Err(HttpError::NotLoopback { addr });
    }
    Ok(())
}

/// A listening socket on `addr`, refused unless `addr` is a loopback
/// address or `exposure` is [`Exposure::AnyAddress`].
pub async fn bind(addr: SocketAddr, exposure: Exposure) -> Result<TcpListener, HttpError> {
    check_address(addr, exposure)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Where the server reports what goes wrong on its side: failed accepts,
/// 500 answers, panics. Never given request bodies (they are not read) or
/// headers.
pub type ErrorLog = Arc<dyn Fn(&str) + Send + Sync>;

/// How the server behaves; [`Options::default`] is what [`serve`] uses.
#[derive(Clone)]
pub struct Options {
    /// How long a new connection has to send its first byte; after that it
    /// is closed without an answer (idle and pre-opened connections do not
    /// keep a slot).
    pub first_byte_timeout: Duration,
    /// How long a client has to send its whole request head, counted from
    /// the connection (408 after).
    pub read_timeout: Duration,
    /// How long a client has to take the response.
    pub write_timeout: Duration,
    /// The longest request head, request line and headers (431 above).
    pub max_head: usize,
    /// The most connections open at once. When all are taken, a new
    /// connection closes the one that has waited longest for its request
    /// head; when none is waiting (all are being answered), it waits.
    pub max_connections: usize,
    /// Which `Host` names requests may carry.
    pub hosts: HostPolicy,
    /// Where errors go (default: standard error, `kiln serve: …`).
    pub log: ErrorLog,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            first_byte_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_head: 16 * 1024,
            max_connections: 512,
            hosts: HostPolicy::Loopback,
            log: Arc::new(|line| eprintln!("kiln serve: {}", crate::util::redact::text(line))),
        }
    }
}

/// Serves `api` on `listener` with [`Options::default`] until `shutdown`
/// completes; see [`serve_with`].
pub async fn serve(listener: TcpListener, api: Arc<dyn Api>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, api, Options::default(), shutdown).await
}

/// The connections still waiting for their request head, oldest first:
/// those a new connection may close when every slot is taken.
#[derive(Default)]
struct Waiting {
    next: u64,
    closers: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Waiting {
    /// Registers a new connection; the receiver fires if it is evicted.
    fn add(this: &Arc<Mutex<Waiting>>) -> (WaitingEntry, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut w = this.lock().unwrap_or_else(|e| e.into_inner());
        let id = w.next;
        w.next += 1;
        w.closers.insert(id, tx);
        let entry = WaitingEntry {
            id,
            waiting: this.clone(),
        };
        (entry, rx)
    }

    /// Tells the connection that has waited longest to close; false when
    /// no connection is waiting for its head.
    fn evict_oldest(this: &Mutex<Waiting>) -> bool {
        let mut w = this.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((_, closer)) = w.closers.pop_first() {
            if closer.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

/// A connection's place in [`Waiting`]; dropped once its head is read.
struct WaitingEntry {
    id: u64,
    waiting: Arc<Mutex<Waiting>>,
}

impl Drop for WaitingEntry {
    fn drop(&mut self) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.closers.remove(&self.id);
    }
}

/// Serves `api` on `listener`, one task per connection, until `shutdown`
/// completes. Then it stops accepting (the listener is closed), drops the
/// connections still waiting for a request head, lets those being answered
/// finish, and returns.
pub async fn serve_with(
    listener: TcpListener,
    api: Arc<dyn Api>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    // 0 if the address cannot be read: then no Host matches (fails closed)
    let port = listener.local_addr().map_or(0, |a| a.port());
    let options = Arc::new(options);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(source) => {
                // Out of file descriptors and the like: report, pause, go on.
                (options.log)(&chain(&HttpError::Accept { source }));
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                Waiting::evict_oldest(&waiting);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break, // never closed
                    },
                }
            }
        };
        let (entry, evicted) = Waiting::add(&waiting);
        let conn = Connection {
            api: api.clone(),
            options: options.clone(),
            port,
            stop: stop_rx.clone(),
            _permit: permit,
        };
        tasks.spawn(conn.run(stream, entry, evicted));
        while let Some(done) = tasks.try_join_next() {
            report_panic(&options, done);
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while let Some(done) = tasks.join_next().await {
        report_panic(&options, done);
    }
}

fn report_panic(options: &Options, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        (options.log)(&format!("a connection task failed: {e}"));
    }
}

/// Why no complete request head was read.
enum HeadError {
    /// The client closed the connection, `partial` if after sending bytes.
    Closed { partial: bool },
    /// Reading failed (reset and the like).
    Io,
    /// Over the limit; `line_done` when the request line was complete.
    TooLarge { line_done: bool },
}

/// Reads up to the end of the request head (bytes after it, a body or a
/// pipelined request, are left unread or dropped).
async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed {
                partial: !buf.is_empty(),
            });
        }
        let from = buf.len().saturating_sub(2);
        buf.extend_from_slice(&chunk[..n]);
        match head_end(&buf[from..]) {
            Some(end) if from + end <= max => {
                buf.truncate(from + end);
                return Ok(buf);
            }
            _ if buf.len() > max => {
                return Err(HeadError::TooLarge {
                    line_done: buf[..max].contains(&b'\n'),
                })
            }
            _ => {}
        }
    }
}

/// One accepted connection.
struct Connection {
    api: Arc<dyn Api>,
    options: Arc<Options>,
    /// The listening port, for the `Host` check.
    port: u16,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// How waiting for a request head ended.
enum HeadWait {
    /// Read, or failed as [`read_head`] says.
    Done(Result<Vec<u8>, HeadError>),
    /// Bytes came, but not the whole head in time.
    TimedOut,
    /// Nothing came in time, the server stops, or a newer connection
    /// needed the slot: closed without an answer.
    Dropped,
}

/// How long, and how much, the server reads after answering before it
/// closes, so that unread request bytes do not make the kernel reset the
/// connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

impl Connection {
    /// Waits for the request head: its first byte within
    /// [`Options::first_byte_timeout`], all of it within
    /// [`Options::read_timeout`] of the connection, unless the server
    /// stops or `evicted` fires first.
    async fn wait_head(
        &mut self,
        stream: &mut TcpStream,
        evicted: oneshot::Receiver<()>,
    ) -> HeadWait {
        let o = self.options.clone();
        let deadline = tokio::time::Instant::now() + o.read_timeout;
        let read = async {
            let mut first = [0u8; 1];
            match tokio::time::timeout(o.first_byte_timeout, stream.peek(&mut first)).await {
                Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return HeadWait::Dropped,
                Ok(Ok(_)) => {}
            }
            match tokio::time::timeout_at(deadline, read_head(stream, o.max_head)).await {
                Ok(r) => HeadWait::Done(r),
                Err(_) => HeadWait::TimedOut,
            }
        };
        tokio::select! {
            r = read => r,
            _ = self.stop.wait_for(|stop| *stop) => HeadWait::Dropped,
            _ = evicted => HeadWait::Dropped,
        }
    }

    async fn run(
        mut self,
        mut stream: TcpStream,
        entry: WaitingEntry,
        evicted: oneshot::Receiver<()>,
    ) {
        let o = self.options.clone();
        let outcome = self.wait_head(&mut stream, evicted).await;
        drop(entry);
        let (response, head_only) = match outcome {
            HeadWait::Dropped => return,
            HeadWait::TimedOut => (
                Response::error(
                    408,
                    format!(
                        "the request head did not arrive within {} s",
                        o.read_timeout.as_secs_f64()
                    ),
                ),
                false,
            ),
            HeadWait::Done(Err(HeadError::Io | HeadError::Closed { partial: false })) => return,
            HeadWait::Done(Err(HeadError::Closed { partial: true })) => (
                Response::error(
                    400,
                    "the connection closed before the end of the request head",
                ),
                false,
            ),
            HeadWait::Done(Err(HeadError::TooLarge { line_done })) => (
                if line_done {
                    Response::error(
                        431,
                        format!("the request head is over {} bytes", o.max_head),
                    )
                } else {
                    Response::error(
                        414,
                        format!("the request line is over {} bytes", o.max_head),
                    )
                },
                false,
            ),
            HeadWait::Done(Ok(head)) => {
                match parse_head(&head)
                    .and_then(|req| check_host(&req, o.hosts, self.port).map(|()| req))
                {
                    Err(r) => (r.into(), false),
                    Ok(req) => {
                        let head_only = req.method == "HEAD";
                        (self.answer(req).await, head_only)
                    }
                }
            }
        };
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let bytes = response.encode(head_only, &date);
        let sent = tokio::time::timeout(o.write_timeout, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        })
        .await;
        // A client that hung up or stopped reading is not the server's
        // failure; there is no one left to tell. Only a sent answer lingers.
        if let Ok(Ok(())) = sent {
            self.linger(&mut stream).await;
        }
    }

    /// Routes on the blocking pool (an [`Api`] may do blocking I/O).
    async fn answer(&self, req: RequestHead) -> Response {
        let api = self.api.clone();
        let (method, target) = (req.method.clone(), req.target.clone());
        let response =
            match tokio::task::spawn_blocking(move || route(&req.method, &req.target, &*api)).await
            {
                Ok(r) => r,
                Err(source) => {
                    let e = HttpError::Handler {
                        method: method.clone(),
                        target: target.clone(),
                        source,
                    };
                    (self.options.log)(&chain(&e));
                    return Response::error(500, e.to_string());
                }
            };
        if response.status >= 500 {
            let message = response.body["error"].as_str().unwrap_or_default();
            (self.options.log)(&format!("{method} {target}: {} {message}", response.status));
        }
        response
    }

    /// Reads and drops what the client still sends, until it closes, for at
    /// most [`LINGER`] and [`LINGER_BYTES`], or until the server stops.
    async fn linger(&mut self, stream: &mut TcpStream) {
        let drain = async {
            let mut chunk = [0u8; 4096];
            let mut total = 0;
            while total < LINGER_BYTES {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(LINGER, drain) => {}
            _ = self.stop.wait_for(|stop| *stop) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_by_default() {
        let ok = |a: &str, e| check_address(a.parse().unwrap(), e).is_ok();
        assert!(ok("127.0.0.1:8080", Exposure::LoopbackOnly));
        assert!(ok("127.1.2.3:0", Exposure::LoopbackOnly));
        assert!(ok("[::1]:8080", Exposure::LoopbackOnly));
        assert!(ok("[::ffff:127.0.0.1]:8080", Exposure::LoopbackOnly));
        assert!(!ok("0.0.0.0:8080", Exposure::LoopbackOnly));
        assert!(!ok("[::]:8080", Exposure::LoopbackOnly));
        assert!(!ok("192.168.1.2:8080", Exposure::LoopbackOnly));
        assert!(ok("0.0.0.0:8080", Exposure::AnyAddress));
    }

    #[test]
    fn error_statuses() {
        let bad = HttpError::BadRequest {
            message: "x".into(),
        };
        assert_eq!(bad.status(), 400);
        let missing = HttpError::Catalog(CatalogError::NotFound { what: "x".into() });
        assert_eq!(missing.status(), 404);
        let bad_ref = HttpError::Catalog(CatalogError::BadReference {
            text: "x".into(),
            reason: "y".into(),
        });
        assert_eq!(bad_ref.status(), 400);
        let failed = HttpError::Api {
            what: "reading".into(),
            source: "boom".into(),
        };
        assert_eq!(failed.status(), 500);
        assert_eq!(chain(&failed), "reading: boom");
    }
}
