//! The HTTP API of `kiln serve` on a real loopback socket, answering from a
//! real catalog file, driven with reqwest and with raw bytes over TCP. The
//! pipelines part is a fixed test double ([`Fixed`]): the scheduler that
//! implements it for real is not part of this module.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::catalog::{Catalog, FinishedBuild};
use kiln::serve::http::{self, Api, CatalogApi, Exposure, HttpError, Options, Pipelines};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The scheduler's side: two pipelines, and one that fails to load.
struct Fixed;

impl Pipelines for Fixed {
    fn health(&self) -> Result<Value, HttpError> {
        Ok(json!({"status": "ok", "pipelines": 2}))
    }
    fn pipelines(&self) -> Result<Vec<Value>, HttpError> {
        Ok(vec![
            json!({"name": "web-nightly", "schedule": "0 3 * * *"}),
            json!({"name": "db weekly", "schedule": "0 4 * * 1"}),
        ])
    }
    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError> {
        if name == "broken" {
            return Err(HttpError::Api {
                what: "reading pipeline broken".into(),
                source: "its file vanished".into(),
            });
        }
        Ok(self.pipelines()?.into_iter().find(|p| p["name"] == name))
    }
}

use support::catalog::new_build as new;

fn done(dir: &str) -> FinishedBuild {
    support::catalog::published(dir, 4096)
}

/// The catalog ids of the builds made by [`catalog`].
struct Ids {
    web1: i64,
    web_failed: i64,
    web2: i64,
    db_running: i64,
}

/// A catalog with web/1.0.0/1 (available), web/1.0.0/2 (failed),
/// web/1.0.1/1 (available, pipeline web-nightly) and db/2.0.0/1 (building,
/// pipeline `db weekly`), in that order. The returned handle began the
/// running build: while it is open, the build counts as running.
fn catalog(path: &std::path::Path) -> (Ids, Catalog) {
    let mut c = Catalog::open(path).unwrap();
    let web1 = c.begin_build(&new("web", "1.0.0", None)).unwrap().id;
    c.finish_build(web1, &done("/out/web/1.0.0")).unwrap();
    let web_failed = c.begin_build(&new("web", "1.0.0", None)).unwrap().id;
    c.fail_build(web_failed, "component nginx failed", None)
        .unwrap();
    let web2 = c
        .begin_build(&new("web", "1.0.1", Some("web-nightly")))
        .unwrap()
        .id;
    c.finish_build(web2, &done("/out/web/1.0.1")).unwrap();
    let db_running = c
        .begin_build(&new("db", "2.0.0", Some("db weekly")))
        .unwrap()
        .id;
    let ids = Ids {
        web1,
        web_failed,
        web2,
        db_running,
    };
    (ids, c)
}

/// A running server and what it logged.
struct Server {
    addr: SocketAddr,
    ids: Ids,
    log: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The kiln "running" db/2.0.0/1.
    _builder: Catalog,
    _dir: tempfile::TempDir,
}

async fn start(read_timeout: Duration) -> Server {
    start_with(|o| o.read_timeout = read_timeout).await
}

/// Starts a server with [`Options::default`] changed by `adjust`.
async fn start_with(adjust: impl FnOnce(&mut Options)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let (ids, builder) = catalog(&path);
    let api: Arc<dyn Api> = Arc::new(CatalogApi::open(&path, Fixed).unwrap());
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let mut options = Options {
        log: Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_string())),
        ..Options::default()
    };
    adjust(&mut options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(http::serve_with(listener, api, options, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        ids,
        log,
        stop: Some(stop),
        task,
        _builder: builder,
        _dir: dir,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status, Content-Type and the parsed body.
    async fn get(&self, path: &str) -> (u16, String, Value) {
        let r = client().get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (status, ctype, value)
    }

    async fn status(&self, path: &str) -> u16 {
        self.get(path).await.0
    }

    /// Sends `bytes` over a new connection and reads the answer until the
    /// server closes. `Host: x` in `bytes` is sent as this server's
    /// address (`Host: 127.0.0.1:PORT`).
    async fn raw(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let text = text.replace("Host: x", &format!("Host: {}", self.addr));
        self.raw_as_is(text.as_bytes()).await
    }

    /// Sends `bytes` unchanged over a new connection and reads the answer
    /// until the server closes.
    async fn raw_as_is(&self, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    async fn stop(mut self) -> Vec<String> {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("serve returns promptly after shutdown")
            .unwrap();
        let log = self.log.lock().unwrap().clone();
        log
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ').nth(1).unwrap().parse().unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn health_and_pipelines() {
    let s = start(10 * SECOND).await;
    let (status, ctype, body) = s.get("/health").await;
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    assert_eq!(body, json!({"status": "ok", "pipelines": 2}));

    let (_, _, body) = s.get("/v1/pipelines").await;
    assert_eq!(body["pipelines"].as_array().unwrap().len(), 2);
    let (status, _, body) = s.get("/v1/pipelines/web-nightly").await;
    assert_eq!(
        (status, body["schedule"].as_str()),
        (200, Some("0 3 * * *"))
    );
    assert_eq!(s.status("/v1/pipelines/db%20weekly").await, 200);
    let (status, _, body) = s.get("/v1/pipelines/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no pipeline `nope`");
    assert!(s.log.lock().unwrap().is_empty());

    // the scheduler failing is a 500, with its cause, and is logged
    let (status, _, body) = s.get("/v1/pipelines/broken").await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "reading pipeline broken: its file vanished");
    let log = s.stop().await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("GET /v1/pipelines/broken: 500 reading pipeline broken"),
        "{log:?}"
    );
}

#[tokio::test]
async fn builds_newest_first_filtered_and_limited() {
    let s = start(10 * SECOND).await;
    let ids = &s.ids;
    let (status, _, body) = s.get("/v1/builds").await;
    assert_eq!(status, 200);
    let listed: Vec<i64> = body["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        listed,
        [ids.db_running, ids.web2, ids.web_failed, ids.web1],
        "newest first, running and failed included"
    );
    let running = &body["builds"][0];
    assert_eq!(running["image"], "db/2.0.0/1");
    assert_eq!(running["status"], "building");
    assert_eq!(running["pipeline"], "db weekly");
    assert_eq!(running["finishedAt"], Value::Null);
    assert_eq!(body["builds"][2]["failure"], "component nginx failed");

    let (_, _, body) = s.get("/v1/builds?pipeline=db+weekly").await;
    assert_eq!(body["builds"].as_array().unwrap().len(), 1);
    assert_eq!(body["builds"][0]["id"], ids.db_running);
    let (_, _, body) = s.get("/v1/builds?limit=2").await;
    assert_eq!(body["builds"].as_array().unwrap().len(), 2);
    assert_eq!(body["builds"][1]["id"], ids.web2);
    let (_, _, body) = s.get("/v1/builds?pipeline=unknown").await;
    assert_eq!(body, json!({"builds": []}));
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "pipline=web",
        "pipeline=",
    ] {
        let (status, _, body) = s.get(&format!("/v1/builds?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (status, _, body) = s.get(&format!("/v1/builds/{}", ids.web_failed)).await;
    assert_eq!(status, 200);
    assert_eq!(body["image"], "web/1.0.0/2");
    assert_eq!(body["status"], "failed");
    for missing in ["/v1/builds/9999", "/v1/builds/abc", "/v1/builds/-1"] {
        assert_eq!(s.status(missing).await, 404, "{missing}");
    }
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn images_by_id_reference_and_wildcard() {
    let s = start(10 * SECOND).await;
    let ids = &s.ids;
    let (_, _, body) = s.get("/v1/images").await;
    assert_eq!(body["images"].as_array().unwrap().len(), 4);
    let (_, _, body) = s.get("/v1/images?name=web").await;
    let refs: Vec<&str> = body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["web/1.0.0/1", "web/1.0.0/2", "web/1.0.1/1"]);

    let (status, _, by_id) = s.get(&format!("/v1/images/{}", ids.web1)).await;
    assert_eq!(status, 200);
    assert_eq!(by_id["ref"], "web/1.0.0/1");
    assert_eq!(by_id["artifacts"][0]["path"], "/out/web/1.0.0/image.qcow2");
    assert_eq!(by_id["status"], "available");
    let (_, _, plain) = s.get("/v1/images/web/1.0.0/1").await;
    let (_, _, encoded) = s.get("/v1/images/web%2F1.0.0%2F1").await;
    assert_eq!(plain, by_id);
    assert_eq!(encoded, by_id);
    // a wildcard resolves to the newest available build
    let (_, _, newest) = s.get("/v1/images/web/1.x.x").await;
    assert_eq!(newest["id"], ids.web2);
    // an exact reference finds a failed build too
    let (_, _, failed) = s.get("/v1/images/web/1.0.0/2").await;
    assert_eq!(failed["status"], "failed");

    for missing in [
        "/v1/images/web/9.9.9/1",
        "/v1/images/9999",
        "/v1/images/nope/1.x.x",
    ] {
        let (status, _, body) = s.get(missing).await;
        assert_eq!(status, 404, "{missing}: {body}");
    }
    let (status, _, body) = s.get("/v1/images/web/1.2").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`web/1.2` is not an image reference"),
        "{body}"
    );
    assert_eq!(s.status("/v1/images/%zz").await, 400);
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn methods_head_and_unknown_paths() {
    let s = start(10 * SECOND).await;
    for path in ["/", "/v1", "/v1/nothing", "/health/extra"] {
        let (status, ctype, body) = s.get(path).await;
        assert_eq!(
            (status, ctype.as_str()),
            (404, "application/json"),
            "{path}"
        );
        assert!(
            body["error"].as_str().unwrap().contains("no resource"),
            "{path}"
        );
    }
    let r = client().post(s.url("/v1/images")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("read-only"));
    let r = client().delete(s.url("/v1/images/1")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);

    let get = client().get(s.url("/v1/images")).send().await.unwrap();
    let length = get.headers()["content-length"].clone();
    let full = get.bytes().await.unwrap();
    let head = client().head(s.url("/v1/images")).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(head.headers()["content-length"], length);
    assert_eq!(length.to_str().unwrap(), full.len().to_string());
    assert!(head.bytes().await.unwrap().is_empty());
    // HEAD sends no body even on the wire
    let raw = s.raw(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "{raw}");
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn malformed_oversized_and_slow_requests() {
    let s = start(SECOND / 2).await;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /health\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let answer = s.raw(bad).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
        assert!(answer.contains("Content-Type: application/json"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        assert!(serde_json::from_str::<Value>(body).unwrap()["error"].is_string());
    }
    assert_eq!(
        status_of(&s.raw(b"GET /health HTTP/3.0\r\n\r\n").await),
        505
    );
    // a bare-LF request is accepted
    assert_eq!(
        status_of(&s.raw(b"GET /health HTTP/1.1\nHost: x\n\n").await),
        200
    );

    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status_of(&s.raw(big.as_bytes()).await), 431);
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    assert_eq!(status_of(&s.raw(long.as_bytes()).await), 414);
    // just under the limit is fine
    let fits = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16_000)
    );
    assert_eq!(status_of(&s.raw(fits.as_bytes()).await), 200);

    // a client that stops half-way gets 408 after the read timeout
    let started = std::time::Instant::now();
    let answer = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() >= SECOND / 2);
    assert!(started.elapsed() < 3 * SECOND);
    // one that closes half-way gets 400
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert_eq!(status_of(&out), 400, "{out}");
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drops_idle_connections() {
    let s = start(10 * SECOND).await;
    let addr = s.addr;
    assert_eq!(s.status("/health").await, 200);
    // an idle connection does not hold the server for its read timeout
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    assert!(s.stop().await.is_empty());
    assert!(started.elapsed() < 2 * SECOND);
    let mut out = Vec::new();
    let n = idle.read_to_end(&mut out).await.unwrap_or(0);
    assert_eq!(n, 0, "the idle connection is closed without an answer");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
    assert!(client()
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn bind_refuses_non_loopback_addresses() {
    let e = http::bind("0.0.0.0:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::NotLoopback { .. }), "{e}");
    assert!(e.to_string().contains("not a loopback address"));
    let l = http::bind("[::1]:0".parse().unwrap(), Exposure::LoopbackOnly).await;
    // ::1 may be unavailable in a container without IPv6; only the refusal
    // of the check matters there
    if let Err(e) = &l {
        assert!(matches!(e, HttpError::Bind { .. }), "{e}");
    }
    let taken = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let e = http::bind(taken.local_addr().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Bind { .. }), "{e}");
}

/// A scheduler side whose texts hold credentials (as an older kiln's or a
/// buggy caller's would).
struct Leaky;

const LEAKY_URL: &str = "https://kiln:apipw-Tr84c@hooks.example/x?token=apitok-Gw27e";

impl Pipelines for Leaky {
    fn health(&self) -> Result<Value, HttpError> {
        Ok(
            json!({"status": "ok", "invalid": [{"file": "b.yml", "error": format!("`{LEAKY_URL}` is wrong")}]}),
        )
    }
    fn pipelines(&self) -> Result<Vec<Value>, HttpError> {
        Ok(vec![
            json!({"name": "p", "lastRun": {"detail": format!("GET {LEAKY_URL} failed")}}),
        ])
    }
    fn pipeline(&self, name: &str) -> Result<Option<Value>, HttpError> {
        Err(HttpError::Api {
            what: format!("reading pipeline {name} from {LEAKY_URL}"),
            source: "gone".into(),
        })
    }
}

/// Every answer is masked when it is sent, whatever its source holds: a
/// catalog row written unmasked (by an older kiln), the scheduler's texts,
/// an error message.
#[tokio::test]
async fn answers_are_masked_whatever_their_source_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    let id = {
        let mut c = Catalog::open(&path).unwrap();
        let id = c.begin_build(&new("web", "1.0.0", None)).unwrap().id;
        c.fail_build(id, "placeholder", None).unwrap();
        id
    };
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE images SET failure = ?1 WHERE id = ?2",
        rusqlite::params![format!("step failed: curl {LEAKY_URL}"), id],
    )
    .unwrap();
    drop(raw);
    let api: Arc<dyn Api> = Arc::new(CatalogApi::open(&path, Leaky).unwrap());
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(http::serve(listener, api, std::future::pending()));
    let mut answers = Vec::new();
    for path in [
        "/health".to_string(),
        "/v1/pipelines".into(),
        "/v1/pipelines/p".into(),
        "/v1/builds".into(),
        format!("/v1/builds/{id}"),
        "/v1/images".into(),
    ] {
        let r = client()
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        answers.push((path, r.text().await.unwrap()));
    }
    task.abort();
    for (path, body) in &answers {
        support::leak::assert_clean(path, body.as_bytes(), &["apipw-Tr84c", "apitok-Gw27e"]);
        let _: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    assert!(
        answers[4]
            .1
            .contains("curl https://kiln:***@hooks.example/x?token=***"),
        "{}",
        answers[4].1
    );
}

#[tokio::test]
async fn only_loopback_host_names_with_the_port_are_answered() {
    let s = start(10 * SECOND).await;
    let port = s.addr.port();
    let get = |host: String| format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    // a DNS-rebound page: its own name, with the right port
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1".to_string(),
        format!("localhost.attacker.example:{port}"),
    ] {
        let answer = s.raw_as_is(get(host.clone()).as_bytes()).await;
        assert_eq!(status_of(&answer), 421, "{host}: {answer}");
        assert!(answer.contains("Misdirected Request"), "{answer}");
        assert!(!answer.contains("\"pipelines\""), "{host}: {answer}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
    ] {
        let answer = s.raw_as_is(get(host.clone()).as_bytes()).await;
        assert_eq!(status_of(&answer), 200, "{host}: {answer}");
    }
    // the authority of an absolute-form target counts too
    let absolute = format!(
        "GET http://attacker.example:{port}/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    );
    assert_eq!(status_of(&s.raw_as_is(absolute.as_bytes()).await), 421);
    // HTTP/1.1 without Host is 400; HTTP/1.0 without Host is answered
    assert_eq!(
        status_of(&s.raw_as_is(b"GET /health HTTP/1.1\r\n\r\n").await),
        400
    );
    assert_eq!(
        status_of(&s.raw_as_is(b"GET /health HTTP/1.0\r\n\r\n").await),
        200
    );
    // a real client on the loopback address passes
    assert_eq!(s.status("/health").await, 200);
    assert!(s.stop().await.is_empty());
}

/// Opens `n` connections that send the start of a request head and then
/// one byte every 200 ms, never finishing it. Returns their tasks (abort
/// to stop them) once every one has sent its first bytes; each task ends
/// with whether the server closed its connection.
async fn drippers(addr: SocketAddr, n: usize) -> Vec<tokio::task::JoinHandle<bool>> {
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(n);
    let tasks = (0..n)
        .map(|_| {
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
                    .await
                    .unwrap();
                ready_tx.send(()).await.unwrap();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if c.write_all(b"a").await.is_err() {
                        return true;
                    }
                    let mut buf = [0u8; 1];
                    // a closed connection reads as end of file
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await
                    {
                        return true;
                    }
                }
            })
        })
        .collect();
    for _ in 0..n {
        ready.recv().await.unwrap();
    }
    tasks
}

#[tokio::test]
async fn seventy_dripping_clients_do_not_delay_a_prompt_one() {
    let s = start(10 * SECOND).await;
    let slow = drippers(s.addr, 70).await;
    tokio::time::sleep(SECOND / 2).await;
    let started = std::time::Instant::now();
    assert_eq!(s.status("/health").await, 200);
    let took = started.elapsed();
    assert!(
        took < SECOND,
        "/health took {took:?} behind 70 slow clients"
    );
    for t in &slow {
        assert!(!t.is_finished(), "no slow client was closed: there is room");
        t.abort();
    }
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn when_every_slot_is_taken_the_oldest_waiting_client_makes_room() {
    let s = start_with(|o| o.max_connections = 8).await;
    let oldest = drippers(s.addr, 1).await;
    tokio::time::sleep(SECOND / 5).await;
    let slow = drippers(s.addr, 20).await;
    tokio::time::sleep(SECOND / 2).await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(s.status("/health").await, 200);
    }
    let took = started.elapsed();
    assert!(
        took < SECOND,
        "3 × /health took {took:?} with every slot taken"
    );
    let closed = tokio::time::timeout(SECOND, oldest.into_iter().next().unwrap())
        .await
        .expect("the oldest slow client was closed")
        .unwrap();
    assert!(closed);
    for t in &slow {
        t.abort();
    }
    assert!(s.stop().await.is_empty());
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_first_byte_timeout() {
    let s = start_with(|o| o.first_byte_timeout = SECOND / 4).await;
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(3 * SECOND, silent.read_to_end(&mut out))
        .await
        .expect("the silent connection is closed well before the 10 s head timeout")
        .unwrap();
    assert!(out.is_empty(), "closed without an answer: {out:?}");
    assert!(started.elapsed() >= SECOND / 4);
    // one that starts in time still has the whole head timeout
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(SECOND / 2).await;
    c.write_all(format!("Host: {}\r\n\r\n", s.addr).as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(s.stop().await.is_empty());
}
