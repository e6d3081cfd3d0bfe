//! A small real HTTP/1.1 server on 127.0.0.1 for download tests. It serves
//! configured routes (bodies, redirects, error statuses, flaky routes that
//! fail a few times first) and counts the requests per path. One request per
//! connection (`Connection: close`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a route answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// A redirect (301, 302, 307 …) to this location (absolute or `/path`).
    Redirect(u16, String),
    /// This status with a short text body.
    Status(u16),
    /// 200 with `body`, sent `chunk` bytes at a time with `pause` between
    /// chunks (a slow peer: a download that is still running when a test
    /// looks).
    Slow {
        /// The body.
        body: Vec<u8>,
        /// Bytes per write.
        chunk: usize,
        /// The wait between writes.
        pause: std::time::Duration,
    },
    /// `status` for the first `failures` requests, then 200 with `body`.
    FailThen {
        /// How many requests fail.
        failures: usize,
        /// Their status.
        status: u16,
        /// The body once it succeeds.
        body: Vec<u8>,
    },
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// A running server; dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Starts a server with these routes (paths like `/file.txt`; unknown
    /// paths get 404). Must be called inside a tokio runtime.
    pub async fn start<P: Into<String>>(routes: impl IntoIterator<Item = (P, Reply)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            routes: routes.into_iter().map(|(p, r)| (p.into(), r)).collect(),
            hits: HashMap::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        HttpServer { addr, state, task }
    }

    /// Adds or replaces a route.
    pub fn route(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), reply);
    }

    /// The full URL of a path, e.g. `http://127.0.0.1:PORT/file.txt`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received for a path.
    pub fn hits(&self, path: &str) -> usize {
        *self.state.lock().unwrap().hits.get(path).unwrap_or(&0)
    }

    /// Requests received in total.
    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    // Read the request head (bodies are not expected).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();

    let mut slow = None;
    let (status, headers, body) = {
        let mut st = state.lock().unwrap();
        let count = {
            let c = st.hits.entry(path.clone()).or_insert(0);
            *c += 1;
            *c
        };
        match st.routes.get(&path).cloned() {
            Some(Reply::Body(b)) => (200, vec![], b),
            Some(Reply::Slow { body, chunk, pause }) => {
                slow = Some((chunk.max(1), pause));
                (200, vec![], body)
            }
            Some(Reply::Redirect(code, to)) => (
                code,
                vec![("Location".to_string(), to.clone())],
                format!("redirecting to {to}\n").into_bytes(),
            ),
            Some(Reply::Status(code)) => (code, vec![], format!("{}\n", reason(code)).into_bytes()),
            Some(Reply::FailThen {
                failures,
                status,
                body,
            }) => {
                if count <= failures {
                    (status, vec![], format!("{}\n", reason(status)).into_bytes())
                } else {
                    (200, vec![], body)
                }
            }
            None => (404, vec![], b"Not Found\n".to_vec()),
        }
    };

    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if method != "HEAD" {
        match slow {
            Some((chunk, pause)) => {
                for part in body.chunks(chunk) {
                    stream.write_all(part).await?;
                    stream.flush().await?;
                    tokio::time::sleep(pause).await;
                }
            }
            None => stream.write_all(&body).await?,
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// A real HTTP/1.1 receiver on 127.0.0.1 that records each request's
/// request line and body and answers `status`.
pub async fn receiver(
    status: u16,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (head_end, length) = loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the request head");
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..i]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    break (i + 4, length);
                }
            };
            while data.len() < head_end + length {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the body");
                data.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&data[..head_end])
                .lines()
                .next()
                .unwrap()
                .to_string();
            tx.send((line, data[head_end..head_end + length].to_vec()))
                .unwrap();
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.write_all(reply.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
    });
    (format!("http://{addr}"), rx)
}
