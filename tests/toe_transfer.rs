//! S3Download, S3Upload and WebDownload against real peers: a moto server
//! (started per test from `.venv`, see scripts/setup-test-peers.sh) and a
//! small HTTP/1.1 server, with the local target and temp folders.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiln::target::local::LocalTarget;
use kiln::toe::actions::transfer::Clients;
use kiln::toe::actions::{self, ActionContext, ActionError, ActionOutcome, Inputs};
use kiln::toe::console::Console;
use serde_json::{json, Value};
use sha2::Digest;
use support::http::{HttpServer, Reply};
use support::moto::{MotoServer, ACCOUNT_ID};

/// A local target with a work folder, and the clients to use.
struct Env {
    dir: tempfile::TempDir,
    scratch: tempfile::TempDir,
    console: Console,
    target: LocalTarget,
    clients: Clients,
}

impl Env {
    fn new(clients: Clients) -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            scratch: tempfile::tempdir().unwrap(),
            console: Console::discard(),
            target: LocalTarget,
            clients,
        }
    }

    fn web() -> Self {
        Env::new(Clients::default())
    }

    fn s3(moto: &MotoServer) -> Self {
        Env::new(Clients::with_s3_endpoint(moto.endpoint()))
    }

    /// A path inside the work folder.
    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dir.path().display())
    }

    fn write(&self, rel: &str, data: &[u8]) -> String {
        let p = self.path(rel);
        std::fs::create_dir_all(Path::new(&p).parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn exists(&self, rel: &str) -> bool {
        Path::new(&self.path(rel)).exists()
    }

    async fn run(&self, action: &str, items: Vec<Value>) -> Result<ActionOutcome, ActionError> {
        let items: Vec<Inputs> = items
            .into_iter()
            .map(|v| Inputs(v.as_object().expect("inputs object").clone()))
            .collect();
        let ctx = ActionContext {
            target: &self.target,
            console: &self.console,
            scratch_dir: self.scratch.path().to_str().unwrap(),
            quiet: false,
            env: &[],
            clients: &self.clients,
        };
        actions::run(action, &items, &ctx).await
    }
}

fn err_text(r: Result<ActionOutcome, ActionError>) -> String {
    match r {
        Ok(o) => panic!("expected an error, got outputs {:?}", o.outputs),
        Err(e) => e.to_string(),
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------
// S3Download

#[tokio::test]
async fn s3_download_single_object() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-single").await;
    put(&s3, "dl-single", "path/to/app.tar.gz", b"archive bytes").await;
    let env = Env::s3(&moto);

    let dest = env.path("app.tgz");
    let out = env
        .run(
            "S3Download",
            vec![json!({
                "source": "s3://dl-single/path/to/app.tar.gz",
                "destination": dest,
                "expectedBucketOwner": ACCOUNT_ID,
            })],
        )
        .await
        .unwrap();
    assert!(out.outputs.is_empty(), "S3Download has no outputs");
    assert_eq!(env.read("app.tgz"), b"archive bytes");

    // A destination that is an existing folder keeps the key's file name.
    std::fs::create_dir(env.path("into")).unwrap();
    env.run(
        "S3Download",
        vec![json!({"source": "s3://dl-single/path/to/app.tar.gz", "destination": env.path("into/")})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("into/app.tar.gz"), b"archive bytes");
}

#[tokio::test]
async fn s3_download_prefix_recursive() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-prefix").await;
    put(&s3, "dl-prefix", "conf/a.txt", b"A").await;
    put(&s3, "dl-prefix", "conf/sub/b.txt", b"B").await;
    put(&s3, "dl-prefix", "conf/sub/deeper/c.txt", b"C").await;
    put(&s3, "dl-prefix", "other/x.txt", b"X").await;
    put(&s3, "dl-prefix", "confidential.txt", b"no").await;
    let env = Env::s3(&moto);
    std::fs::create_dir(env.path("out")).unwrap();

    env.run(
        "S3Download",
        vec![json!({"source": "s3://dl-prefix/conf/*", "destination": env.path("out")})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("out/a.txt"), b"A");
    assert_eq!(env.read("out/sub/b.txt"), b"B");
    assert_eq!(env.read("out/sub/deeper/c.txt"), b"C");
    assert!(!env.exists("out/x.txt"));
    assert!(!env.exists("out/confidential.txt"));
    assert!(!env.exists("out/other"));

    // A prefix with no objects is an error naming it.
    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "s3://dl-prefix/empty/*", "destination": env.path("out")})],
        )
        .await,
    );
    assert!(e.contains("s3://dl-prefix/empty/"), "{e}");
}

#[tokio::test]
async fn s3_download_overwrite() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-over").await;
    put(&s3, "dl-over", "k.txt", b"new").await;
    let env = Env::s3(&moto);
    let dest = env.write("k.txt", b"old");

    let e = err_text(
        env.run(
            "S3Download",
            vec![
                json!({"source": "s3://dl-over/k.txt", "destination": dest, "overwrite": "false"}),
            ],
        )
        .await,
    );
    assert!(e.contains("File already exists"), "{e}");
    assert!(e.contains(&dest), "{e}");
    assert_eq!(env.read("k.txt"), b"old", "the file must be left alone");

    // Default overwrite is true.
    env.run(
        "S3Download",
        vec![json!({"source": "s3://dl-over/k.txt", "destination": dest})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("k.txt"), b"new");
}

#[tokio::test]
async fn s3_download_missing_destination_folder() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-nofolder").await;
    put(&s3, "dl-nofolder", "k.txt", b"x").await;
    put(&s3, "dl-nofolder", "p/k.txt", b"x").await;
    let env = Env::s3(&moto);

    let missing = env.path("no/such/folder");
    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "s3://dl-nofolder/k.txt", "destination": format!("{missing}/k.txt")})],
        )
        .await,
    );
    assert!(e.contains("does not exist") && e.contains(&missing), "{e}");
    assert!(!env.exists("no"), "no folder may be created");

    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "s3://dl-nofolder/p/*", "destination": missing})],
        )
        .await,
    );
    assert!(e.contains("does not exist") && e.contains(&missing), "{e}");
    assert!(!env.exists("no"));
}

#[tokio::test]
async fn s3_download_missing_bucket_or_key() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-present").await;
    put(&s3, "dl-present", "there.txt", b"x").await;
    let env = Env::s3(&moto);

    let e = err_text(
        env.run(
            "S3Download",
            vec![
                json!({"source": "s3://dl-absent-bucket/k.txt", "destination": env.path("k.txt")}),
            ],
        )
        .await,
    );
    assert!(e.contains("dl-absent-bucket"), "{e}");
    assert!(e.contains("does not exist"), "{e}");

    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "s3://dl-present/missing/key.txt", "destination": env.path("k.txt")})],
        )
        .await,
    );
    assert!(
        e.contains("missing/key.txt") && e.contains("dl-present"),
        "{e}"
    );
    assert!(!env.exists("k.txt"));

    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "s3://dl-absent-bucket/p/*", "destination": env.path("")})],
        )
        .await,
    );
    assert!(e.contains("dl-absent-bucket"), "{e}");

    let e = err_text(
        env.run(
            "S3Download",
            vec![json!({"source": "https://example.com/k", "destination": env.path("k")})],
        )
        .await,
    );
    assert!(e.contains("not an S3 URI"), "{e}");
}

/// `Clients::default()` takes the endpoint from the standard AWS environment
/// (`AWS_ENDPOINT_URL_S3`) and uses path-style addressing for it. Only this
/// test sets that variable; the others pass their endpoint explicitly, which
/// takes precedence.
#[tokio::test]
async fn s3_default_clients_honour_aws_endpoint_url_s3() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("dl-env").await;
    put(&s3, "dl-env", "from-env.txt", b"env endpoint").await;
    // `localhost` (not an IP) so that virtual-hosted addressing would fail
    // (`dl-env.localhost` does not resolve): this checks path-style too.
    std::env::set_var(
        "AWS_ENDPOINT_URL_S3",
        format!("http://localhost:{}", moto.port()),
    );
    let env = Env::new(Clients::default());

    env.run(
        "S3Download",
        vec![json!({"source": "s3://dl-env/from-env.txt", "destination": env.path("e.txt")})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("e.txt"), b"env endpoint");
}

// ---------------------------------------------------------------------------
// S3Upload

#[tokio::test]
async fn s3_upload_single_file() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("up-single").await;
    let env = Env::s3(&moto);
    let src = env.write("report.json", b"{\"ok\":true}");

    env.run(
        "S3Upload",
        vec![
            json!({"source": src, "destination": "s3://up-single/exact/name.json"}),
            json!({
                "source": src,
                "destination": "s3://up-single/folder/",
                "expectedBucketOwner": ACCOUNT_ID,
            }),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        keys(&s3, "up-single").await,
        ["exact/name.json", "folder/report.json"]
    );
    assert_eq!(
        get(&s3, "up-single", "exact/name.json").await,
        b"{\"ok\":true}"
    );
    assert_eq!(
        get(&s3, "up-single", "folder/report.json").await,
        b"{\"ok\":true}"
    );

    let e = err_text(
        env.run(
            "S3Upload",
            vec![json!({"source": env.path("absent.txt"), "destination": "s3://up-single/x"})],
        )
        .await,
    );
    assert!(
        e.contains("absent.txt") && e.contains("does not exist"),
        "{e}"
    );

    let e = err_text(
        env.run(
            "S3Upload",
            vec![json!({"source": src, "destination": "s3://up-no-bucket/x"})],
        )
        .await,
    );
    assert!(e.contains("up-no-bucket"), "{e}");
}

#[tokio::test]
async fn s3_upload_wildcard() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("up-wild").await;
    let env = Env::s3(&moto);
    env.write("logs/a.log", b"a");
    env.write("logs/b.log", b"bb");
    env.write("logs/c.txt", b"c");
    env.write("logs/nested/d.log", b"d");

    env.run(
        "S3Upload",
        vec![json!({"source": env.path("logs/*.log"), "destination": "s3://up-wild/run1"})],
    )
    .await
    .unwrap();
    assert_eq!(keys(&s3, "up-wild").await, ["run1/a.log", "run1/b.log"]);
    assert_eq!(get(&s3, "up-wild", "run1/b.log").await, b"bb");

    // Folders matched by `*` are skipped without recurse.
    env.run(
        "S3Upload",
        vec![json!({"source": env.path("logs/*"), "destination": "s3://up-wild/run2/"})],
    )
    .await
    .unwrap();
    let all = keys(&s3, "up-wild").await;
    let run2: Vec<&String> = all.iter().filter(|k| k.starts_with("run2/")).collect();
    assert_eq!(run2, ["run2/a.log", "run2/b.log", "run2/c.txt"]);

    let e = err_text(
        env.run(
            "S3Upload",
            vec![json!({"source": env.path("logs/*.zip"), "destination": "s3://up-wild/x/"})],
        )
        .await,
    );
    assert!(e.contains("matches no files"), "{e}");
}

#[tokio::test]
async fn s3_upload_recurse_folder() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("up-rec").await;
    let env = Env::s3(&moto);
    env.write("tree/top.txt", b"top");
    env.write("tree/sub/mid.txt", b"mid");
    env.write("tree/sub/deep/low.txt", b"low");

    // A folder without recurse is an error.
    let e = err_text(
        env.run(
            "S3Upload",
            vec![json!({"source": env.path("tree"), "destination": "s3://up-rec/t/"})],
        )
        .await,
    );
    assert!(e.contains("recurse"), "{e}");
    assert!(keys(&s3, "up-rec").await.is_empty());

    env.run(
        "S3Upload",
        vec![
            json!({"source": env.path("tree"), "destination": "s3://up-rec/t/", "recurse": "true"}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        keys(&s3, "up-rec").await,
        ["t/sub/deep/low.txt", "t/sub/mid.txt", "t/top.txt"]
    );
    assert_eq!(get(&s3, "up-rec", "t/sub/deep/low.txt").await, b"low");

    // Wildcard + recurse (bool) descends into matched folders.
    env.run(
        "S3Upload",
        vec![
            json!({"source": env.path("tree/*"), "destination": "s3://up-rec/w", "recurse": true}),
        ],
    )
    .await
    .unwrap();
    let all = keys(&s3, "up-rec").await;
    let w: Vec<&String> = all.iter().filter(|k| k.starts_with("w/")).collect();
    assert_eq!(w, ["w/sub/deep/low.txt", "w/sub/mid.txt", "w/top.txt"]);
}

#[tokio::test]
async fn s3_upload_multipart_and_round_trip() {
    let moto = MotoServer::start();
    let s3 = moto.bucket("up-big").await;
    let env = Env::new(Clients::with_s3_endpoint(moto.endpoint()).with_part_size(5 * 1024 * 1024));
    let data: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let src = env.write("big.bin", &data);

    env.run(
        "S3Upload",
        vec![json!({"source": src, "destination": "s3://up-big/disk.bin"})],
    )
    .await
    .unwrap();
    let head = s3
        .head_object()
        .bucket("up-big")
        .key("disk.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    let etag = head.e_tag().unwrap_or_default().to_string();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "3 parts expected, ETag {etag}"
    );

    // And back down through S3Download.
    env.run(
        "S3Download",
        vec![json!({"source": "s3://up-big/disk.bin", "destination": env.path("back.bin")})],
    )
    .await
    .unwrap();
    assert!(env.read("back.bin") == data, "round trip changed the bytes");
}

// ---------------------------------------------------------------------------
// WebDownload

#[tokio::test]
async fn web_download_to_file_creates_folders() {
    let http = HttpServer::start([(
        "/files/tool.sh",
        Reply::Body(b"#!/bin/sh\necho hi\n".to_vec()),
    )])
    .await;
    let env = Env::web();
    let dest = env.path("a/b/c/installer.sh");

    let out = env
        .run(
            "WebDownload",
            vec![json!({"source": http.url("/files/tool.sh"), "destination": dest})],
        )
        .await
        .unwrap();
    assert_eq!(out.outputs.get("destination"), Some(&dest));
    assert_eq!(env.read("a/b/c/installer.sh"), b"#!/bin/sh\necho hi\n");
    assert_eq!(http.hits("/files/tool.sh"), 1);
}

#[tokio::test]
async fn web_download_to_folder_keeps_url_name() {
    let http = HttpServer::start([("/dl/pkg-1.2.3.tar.gz", Reply::Body(b"pkg".to_vec()))]).await;
    let env = Env::web();
    let folder = format!("{}/", env.path("downloads/new"));

    let out = env
        .run(
            "WebDownload",
            vec![json!({"source": format!("{}?version=1", http.url("/dl/pkg-1.2.3.tar.gz")), "destination": folder})],
        )
        .await
        .unwrap();
    let expected = env.path("downloads/new/pkg-1.2.3.tar.gz");
    assert_eq!(out.outputs.get("destination"), Some(&expected));
    assert_eq!(env.read("downloads/new/pkg-1.2.3.tar.gz"), b"pkg");
}

#[tokio::test]
async fn web_download_two_inputs_output_joined_by_newline() {
    let http = HttpServer::start([
        ("/one.txt", Reply::Body(b"1".to_vec())),
        ("/two.txt", Reply::Body(b"2".to_vec())),
    ])
    .await;
    let env = Env::web();
    let first = env.path("first.txt");
    let dir = format!("{}/", env.path("d"));

    let out = env
        .run(
            "WebDownload",
            vec![
                json!({"source": http.url("/one.txt"), "destination": first}),
                json!({"source": http.url("/two.txt"), "destination": dir}),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        out.outputs.get("destination").map(String::as_str),
        Some(format!("{first}\n{}", env.path("d/two.txt")).as_str())
    );
    assert_eq!(env.read("first.txt"), b"1");
    assert_eq!(env.read("d/two.txt"), b"2");
}

#[tokio::test]
async fn web_download_follows_redirects() {
    let http = HttpServer::start([
        ("/old", Reply::Redirect(301, "/moved".to_string())),
        ("/moved", Reply::Redirect(302, "/final.bin".to_string())),
        ("/final.bin", Reply::Body(b"final".to_vec())),
    ])
    .await;
    let env = Env::web();

    env.run(
        "WebDownload",
        vec![json!({"source": http.url("/old"), "destination": env.path("f.bin")})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("f.bin"), b"final");
    assert_eq!(
        (
            http.hits("/old"),
            http.hits("/moved"),
            http.hits("/final.bin")
        ),
        (1, 1, 1)
    );

    // A redirect to a 404 fails with the final status.
    http.route("/dangling", Reply::Redirect(302, "/gone".to_string()));
    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": http.url("/dangling"), "destination": env.path("g")})],
        )
        .await,
    );
    assert!(e.contains("404") && e.contains("/dangling"), "{e}");
}

#[tokio::test]
async fn web_download_client_errors_fail_without_retry() {
    let http = HttpServer::start([("/forbidden", Reply::Status(403))]).await;
    let env = Env::web();

    let url = http.url("/nothing-here.txt");
    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": url, "destination": env.path("x.txt")})],
        )
        .await,
    );
    assert!(e.contains("404") && e.contains(&url), "{e}");
    assert_eq!(http.hits("/nothing-here.txt"), 1, "4xx must not be retried");
    assert!(!env.exists("x.txt"));

    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": http.url("/forbidden"), "destination": env.path("y.txt")})],
        )
        .await,
    );
    assert!(e.contains("403"), "{e}");
    assert_eq!(http.hits("/forbidden"), 1);
}

#[tokio::test]
async fn web_download_retries_server_errors() {
    let http = HttpServer::start([
        (
            "/flaky.bin",
            Reply::FailThen {
                failures: 2,
                status: 500,
                body: b"finally".to_vec(),
            },
        ),
        (
            "/busy.bin",
            Reply::FailThen {
                failures: 1,
                status: 429,
                body: b"ok".to_vec(),
            },
        ),
    ])
    .await;
    let env = Env::web();

    env.run(
        "WebDownload",
        vec![json!({"source": http.url("/flaky.bin"), "destination": env.path("flaky.bin")})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("flaky.bin"), b"finally");
    assert_eq!(http.hits("/flaky.bin"), 3, "two 500s, then the 200");

    env.run(
        "WebDownload",
        vec![json!({"source": http.url("/busy.bin"), "destination": env.path("busy.bin")})],
    )
    .await
    .unwrap();
    assert_eq!(http.hits("/busy.bin"), 2, "429 is retried");
}

#[tokio::test]
async fn web_download_gives_up_after_five_attempts() {
    let http = HttpServer::start([("/down", Reply::Status(503))]).await;
    let env = Env::web();

    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": http.url("/down"), "destination": env.path("d")})],
        )
        .await,
    );
    assert!(e.contains("503") && e.contains("5 attempts"), "{e}");
    assert_eq!(http.hits("/down"), 5);
    assert!(!env.exists("d"));
}

fn hex_digest(algorithm: &str, data: &[u8]) -> String {
    match algorithm {
        "MD5" => hex::encode(md5::Md5::digest(data)),
        "SHA1" => hex::encode(sha1::Sha1::digest(data)),
        "SHA256" => hex::encode(sha2::Sha256::digest(data)),
        "SHA512" => hex::encode(sha2::Sha512::digest(data)),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn web_download_checksums() {
    let body = b"checksummed content\n".to_vec();
    let http = HttpServer::start([("/c.bin", Reply::Body(body.clone()))]).await;
    let env = Env::web();

    for algo in ["MD5", "SHA1", "SHA256", "SHA512"] {
        let good = hex_digest(algo, &body);
        // Case-insensitive algorithm names and hex digits.
        let name = format!("ok-{algo}");
        env.run(
            "WebDownload",
            vec![json!({
                "source": http.url("/c.bin"),
                "destination": env.path(&name),
                "checksum": good.to_uppercase(),
                "algorithm": algo.to_lowercase(),
            })],
        )
        .await
        .unwrap_or_else(|e| panic!("{algo} should verify: {e}"));
        assert_eq!(env.read(&name), body);

        let bad = hex_digest(algo, b"other content");
        let name = format!("bad-{algo}");
        let e = err_text(
            env.run(
                "WebDownload",
                vec![json!({
                    "source": http.url("/c.bin"),
                    "destination": env.path(&name),
                    "checksum": bad,
                    "algorithm": algo,
                })],
            )
            .await,
        );
        assert!(
            e.contains("checksum mismatch") && e.contains(&good),
            "{algo}: {e}"
        );
        assert!(
            !env.exists(&name),
            "{algo}: a mismatching download must not land"
        );
    }

    // Only both inputs together turn verification on.
    env.run(
        "WebDownload",
        vec![json!({"source": http.url("/c.bin"), "destination": env.path("nocheck"), "checksum": "deadbeef"})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("nocheck"), body);

    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": http.url("/c.bin"), "destination": env.path("z"), "checksum": "00", "algorithm": "CRC32"})],
        )
        .await,
    );
    assert!(e.contains("CRC32"), "{e}");
}

#[tokio::test]
async fn web_download_skips_when_existing_file_matches_checksum() {
    let http = HttpServer::start([("/same.bin", Reply::Body(b"server copy".to_vec()))]).await;
    let env = Env::web();
    let local = b"already here".to_vec();
    let dest = env.write("same.bin", &local);

    let out = env
        .run(
            "WebDownload",
            vec![json!({
                "source": http.url("/same.bin"),
                "destination": dest,
                "checksum": hex_digest("SHA256", &local),
                "algorithm": "SHA256",
            })],
        )
        .await
        .unwrap();
    assert_eq!(http.total_hits(), 0, "no request may be made");
    assert_eq!(out.outputs.get("destination"), Some(&dest));
    assert_eq!(env.read("same.bin"), local);

    // An existing file with another hash is replaced (overwrite defaults to true).
    let server = b"server copy".to_vec();
    env.run(
        "WebDownload",
        vec![json!({
            "source": http.url("/same.bin"),
            "destination": dest,
            "checksum": hex_digest("MD5", &server),
            "algorithm": "MD5",
        })],
    )
    .await
    .unwrap();
    assert_eq!(http.hits("/same.bin"), 1);
    assert_eq!(env.read("same.bin"), server);
}

#[tokio::test]
async fn web_download_overwrite_false_fails_on_existing_file() {
    let http = HttpServer::start([("/f.txt", Reply::Body(b"new".to_vec()))]).await;
    let env = Env::web();
    let dest = env.write("f.txt", b"old");

    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": http.url("/f.txt"), "destination": dest, "overwrite": "false"})],
        )
        .await,
    );
    assert!(
        e.contains("File already exists") && e.contains(&dest),
        "{e}"
    );
    assert_eq!(http.total_hits(), 0);
    assert_eq!(env.read("f.txt"), b"old");

    // overwrite true (as a string, the way documents give it) replaces it.
    env.run(
        "WebDownload",
        vec![json!({"source": http.url("/f.txt"), "destination": dest, "overwrite": "true"})],
    )
    .await
    .unwrap();
    assert_eq!(env.read("f.txt"), b"new");
}

#[tokio::test]
async fn web_download_rejects_bad_sources() {
    let env = Env::web();
    for source in ["ftp://example.com/f", "not a url", "s3://bucket/key"] {
        let e = err_text(
            env.run(
                "WebDownload",
                vec![json!({"source": source, "destination": env.path("f")})],
            )
            .await,
        );
        assert!(e.contains("URL"), "{source}: {e}");
    }
    // A closed port is a connection error naming the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x");
    let e = err_text(
        env.run(
            "WebDownload",
            vec![json!({"source": url, "destination": env.path("f")})],
        )
        .await,
    );
    assert!(e.contains(&url) && e.contains("5 attempts"), "{e}");
}

// ---------------------------------------------------------------------------
// Host-side temporary copies (run as root here: a setuid copy would be a
// root-owned setuid file on the host)

/// What is wrong with kiln's transfer temps in the system's temp dir: each
/// `kiln-transfer-*` entry must be a folder of mode 0700 holding files of
/// mode 0600 (so never a setuid, setgid or sticky file). Entries that
/// vanish while looked at (another test finishing) are skipped.
fn bad_transfer_temps() -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut bad = Vec::new();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return bad;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with("kiln-transfer-")
        {
            continue;
        }
        let path = e.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = md.permissions().mode() & 0o7777;
        if !md.is_dir() || mode != 0o700 {
            bad.push(format!("{} mode {mode:o}", path.display()));
            continue;
        }
        for f in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if let Ok(md) = std::fs::symlink_metadata(f.path()) {
                let mode = md.permissions().mode() & 0o7777;
                if mode != 0o600 {
                    bad.push(format!("{} mode {mode:o}", f.path().display()));
                }
            }
        }
    }
    bad
}

/// `kiln-transfer-*` files of the temp dir, or files in such folders,
/// whose content is `data`.
fn transfer_temps_holding(data: &[u8]) -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kiln-transfer-")
        })
        .flat_map(|e| match std::fs::read_dir(e.path()) {
            Ok(inside) => inside.flatten().map(|f| f.path()).collect(),
            Err(_) => vec![e.path()],
        })
        .filter(|f| std::fs::read(f).is_ok_and(|d| d == data))
        .count()
}

fn mode_of(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn host_copies_of_target_files_are_private() {
    use kiln::target::Target;
    let env = Env::web();
    let src = env.write("suid", b"#!/bin/sh\nid\n");
    set_mode(&src, 0o4755);
    let host = env.scratch.path().join("copy");
    env.target.download(&src, &host).await.unwrap();
    assert_eq!(std::fs::read(&host).unwrap(), b"#!/bin/sh\nid\n");
    assert_eq!(mode_of(host.to_str().unwrap()), 0o600);
    // an existing, more open host file becomes private too
    set_mode(host.to_str().unwrap(), 0o2777);
    env.target.download(&src, &host).await.unwrap();
    assert_eq!(mode_of(host.to_str().unwrap()), 0o600);
    assert_eq!(mode_of(&src), 0o4755, "the source is left as it was");
}

/// A loopback S3 endpoint that takes each request (head and body), reports
/// its body, and holds the answer until `release` is set: the upload is
/// caught in the middle. Then it answers 200 with an ETag.
async fn holding_s3() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    tokio::sync::watch::Sender<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            let mut released = released.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
                if head.contains("expect: 100-continue") {
                    s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
                }
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while data.len() < head_end + length {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let _ = seen_tx.send(data[head_end..].to_vec());
                let _ = released.wait_for(|r| *r).await;
                let reply = "HTTP/1.1 200 OK\r\nETag: \"0123456789abcdef\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen, release)
}

#[tokio::test]
async fn s3_upload_of_a_setuid_file_makes_no_setuid_temp() {
    support::moto::set_dummy_aws_env();
    let (endpoint, mut seen, release) = holding_s3().await;
    let env = Env::new(Clients::with_s3_endpoint(endpoint));
    let content = b"setuid payload chosen by the guest 7f3a9c\n";
    let src = env.write("suid-tool", content);
    set_mode(&src, 0o4755);

    let upload = env.run(
        "S3Upload",
        vec![json!({"source": src, "destination": "s3://held/suid-tool"})],
    );
    let inspect = async {
        let body = tokio::time::timeout(Duration::from_secs(60), seen.recv())
            .await
            .expect("the upload reached the S3 endpoint")
            .unwrap();
        assert!(
            body.windows(content.len()).any(|w| w == content),
            "the request carries the file"
        );
        // the upload is in flight: its host copy exists now
        assert!(
            transfer_temps_holding(content) >= 1,
            "the host copy of the upload was not found in {}",
            std::env::temp_dir().display()
        );
        let bad = bad_transfer_temps();
        release.send_replace(true);
        bad
    };
    let (result, bad) = tokio::join!(upload, inspect);
    assert!(bad.is_empty(), "transfer temps not private: {bad:?}");
    result.unwrap();
    assert_eq!(
        transfer_temps_holding(content),
        0,
        "the host copy is removed"
    );
    assert_eq!(mode_of(&src), 0o4755, "the source is left as it was");
}

#[tokio::test]
async fn web_download_checksum_of_a_setuid_file_makes_no_setuid_temp() {
    let fresh = b"the server's copy\n".to_vec();
    let http = HttpServer::start([("/tool", Reply::Body(fresh.clone()))]).await;
    let env = Env::web();
    // a big setuid file, so its host copy lives long enough to be seen
    let old: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    let dest = env.write("tool", &old);
    set_mode(&dest, 0o4755);

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            let mut looks = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for b in bad_transfer_temps() {
                    if !bad.contains(&b) {
                        bad.push(b);
                    }
                }
                looks += 1;
            }
            (bad, looks)
        })
    };
    env.run(
        "WebDownload",
        vec![json!({
            "source": http.url("/tool"),
            "destination": dest,
            "checksum": hex_digest("SHA256", &fresh),
            "algorithm": "SHA256",
        })],
    )
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (bad, looks) = watcher.join().unwrap();
    assert!(
        looks > 1,
        "the temp dir was looked at while the file was hashed"
    );
    assert!(bad.is_empty(), "transfer temps not private: {bad:?}");
    assert_eq!(env.read("tool"), fresh);
    assert_eq!(mode_of(&dest) & 0o7000, 0, "no setuid bit on the result");
}
