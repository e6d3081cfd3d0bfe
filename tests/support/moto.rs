//! A real moto server (`.venv/bin/moto_server`) on a free port of 127.0.0.1,
//! started per fixture and killed (with its whole process group) on drop.
//!
//! Tests that need it fail (never skip) when the venv is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Dummy credentials moto accepts.
pub const ACCESS_KEY: &str = "testing";
/// Dummy secret key.
pub const SECRET_KEY: &str = "testing";
/// The region tests use.
pub const REGION: &str = "us-east-1";
/// moto's fixed account id.
pub const ACCOUNT_ID: &str = "123456789012";

/// The sh guard: runs `$0 "$@"` (moto) and kills the process group when
/// moto exits or when its stdin (a pipe from the test process) reaches EOF.
const GUARD: &str = r#"exec 3<&0
"$0" "$@" </dev/null 3<&- &
m=$!
(read -r _ <&3; kill -KILL 0) &
r=$!
exec 3<&-
wait "$m"
s=$?
kill "$r" 2>/dev/null
exit "$s"
"#;

/// How long to wait for moto to answer after starting it.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the moto_server launcher in the repository's venv.
pub fn moto_server_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

/// The venv's Python, which runs the VM Import/Export peer.
pub fn venv_python_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// The VM Import/Export peer: moto plus the seven VMIE actions
/// (tests/peers/vmie/server.py).
pub fn vmie_peer_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/vmie/server.py")
}

/// Sets dummy AWS credentials and region in this process's environment (once),
/// so clients built from the standard AWS config chain talk to moto, and no
/// real credentials or instance metadata are ever used.
pub fn set_dummy_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in dummy_env() {
            std::env::set_var(k, v);
        }
        for k in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ] {
            std::env::remove_var(k);
        }
    });
}

fn dummy_env() -> [(&'static str, &'static str); 7] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ]
}

/// A running moto server. Dropping it kills the server.
pub struct MotoServer {
    child: Child,
    /// The write end of the guard's pipe (closing it kills the server).
    _guard: Option<ChildStdin>,
    port: u16,
    log: tempfile::NamedTempFile,
    /// The VM Import/Export peer's folder for imported disks (removed with
    /// the server: the peer itself is killed and cannot clean up).
    _work: tempfile::TempDir,
}

fn free_port() -> u16 {
    kiln::vm::qemu::free_port().expect("bind 127.0.0.1:0 to find a free port")
}

/// True once something answers HTTP on the port.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers. Panics (with
    /// the fix) when `.venv` has no moto_server, or when it does not start.
    pub fn start() -> Self {
        Self::start_with(moto_server_path(), Vec::new())
    }

    /// Starts the VM Import/Export peer (moto with ImportImage, ImportSnapshot,
    /// ExportImage and their Describe calls) instead of bare moto.
    pub fn start_vmie() -> Self {
        Self::start_with(venv_python_path(), vec![vmie_peer_path()])
    }

    fn start_with(exe: PathBuf, pre_args: Vec<PathBuf>) -> Self {
        if !exe.exists() || !moto_server_path().exists() {
            panic!(
                "moto_server not found at {}.\n\
                 The integration tests need a real moto server; set it up with:\n\
                 \n    bash scripts/setup-test-peers.sh\n",
                exe.display()
            );
        }
        set_dummy_aws_env();
        let mut last_log = String::new();
        // A free port can be taken between finding and binding it; try a few.
        for _ in 0..3 {
            match Self::try_start(&exe, &pre_args) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("moto_server did not start; its output:\n{last_log}");
    }

    fn try_start(exe: &PathBuf, pre_args: &[PathBuf]) -> Result<Self, String> {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("temp file for moto's log");
        let out = log.reopen().expect("reopen moto log");
        let err = log.reopen().expect("reopen moto log");
        let work = tempfile::tempdir().expect("temp folder for the VMIE peer");
        // moto runs under a small sh guard in a process group of its own.
        // The guard holds a pipe from this process on fd 3: when the pipe
        // closes (Drop, or the test process dying in any way, even SIGKILL),
        // it kills the whole group, so no server outlives its tests.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg(exe)
            .args(pre_args)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(dummy_env())
            .env("PYTHONUNBUFFERED", "1")
            .env("KILN_VMIE_WORKDIR", work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let guard = child.stdin.take();
        let mut server = MotoServer {
            child,
            _guard: guard,
            port,
            log,
            _work: work,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let text = server.log_text();
                return Err(format!("(exited with {status})\n{text}"));
            }
            if answers(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let text = server.log_text();
                return Err(format!(
                    "(no answer on port {port} within {START_TIMEOUT:?})\n{text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An S3 client for this server (dummy credentials, path-style).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "moto",
            ))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// An EC2 client for this server in `region` (dummy credentials).
    pub fn ec2_client(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::new()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(region.to_string()))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "moto",
            ))
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    /// Creates a bucket and returns an S3 client for the server.
    pub async fn bucket(&self, name: &str) -> aws_sdk_s3::Client {
        let s3 = self.s3_client();
        s3.create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        s3
    }

    /// Wipes all of moto's state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let req = format!(
            "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).expect("send reset");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "moto reset failed: {resp}"
        );
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
