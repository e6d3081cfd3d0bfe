//! Running the kiln binary in tests: a child in its own process group
//! (killed with its group when the test ends), its output lines read with
//! deadlines, QEMU processes looked for, and the catalog listed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `kiln build` child in its own process group, killed with its group if
/// the test ends early.
pub struct KilnRun {
    /// The process.
    pub child: Child,
}

impl KilnRun {
    /// Starts kiln with the shared parent-image cache and an image catalog
    /// in `data` (so tests never touch the user's catalog).
    pub fn start(args: &[&str], cache: &Path, data: &Path) -> KilnRun {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env("KILN_CACHE_DIR", cache)
            .env("KILN_DATA_DIR", data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start kiln");
        KilnRun { child }
    }

    /// The child's pid (also its process group).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for KilnRun {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child's process group.
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Lines of a child's stream, read on a thread, with a deadline.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Reads `r` line by line on a thread (echoed to stderr).
    pub fn new(r: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics at the deadline or EOF.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} ({e:?}); lines so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything until the stream ends.
    pub fn rest(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

/// Waits for the child to exit; its exit code (-1 for a signal).
pub fn wait_exit(run: &mut KilnRun, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "kiln did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// QEMU processes whose command line mentions `needle`.
pub fn qemu_processes(needle: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", "qemu-system"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Fails unless no QEMU mentioning `needle` runs (within 10 s).
pub fn assert_no_qemu(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = qemu_processes(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "QEMU left running: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kiln images list --json` of the catalog in `data`: (NAME/x.y.z/n, status).
pub fn catalog_images(data: &Path) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["images", "list", "--json"])
        .env("KILN_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                format!(
                    "{}/{}/{}",
                    i["name"].as_str().unwrap(),
                    i["version"].as_str().unwrap(),
                    i["build"]
                ),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The JSON lines among `lines`.
pub fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}
