//! Runs the embedded builder script: a clean environment, all its output in a
//! log file, its progress lines passed on, and its whole process group
//! stopped (SIGTERM, so its trap cleans up) when kiln dies or drops the run.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::io::IoError;
use crate::util::io::ProgressFn;
use crate::util::task::{Task, TaskError};

/// Host variables the script keeps (proxies reach the mirror through them).
const PASS_THROUGH: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// How often the log is read for progress lines.
const LOG_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How many log lines a failure shows.
pub const TAIL_LINES: usize = 30;

/// The prefix of the script's progress lines: `[make-base HH:MM:SS] text`.
const PROGRESS_PREFIX: &str = "[make-base ";

/// Errors of running the builder script.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// bash could not be started (or waited for).
    #[error(transparent)]
    Start(#[from] TaskError),
    /// A file could not be handled.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The script failed.
    #[error("the bootstrap script failed ({status}); full log: {log}\n{tail}")]
    Failed {
        /// Its exit status.
        status: String,
        /// The whole log.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
}

/// One run of a builder script.
#[derive(Debug)]
pub struct ScriptRun<'a> {
    /// The script's text; written to `out_dir/<name>` and run from there.
    pub script: &'a str,
    /// The file name the script gets in `out_dir`.
    pub name: &'a str,
    /// The script's only argument, its output folder (must exist).
    pub out_dir: &'a Path,
    /// The knobs (`SUITE`, `MIRROR`, …) and `PATH`.
    pub env: Vec<(String, OsString)>,
    /// Where all output goes.
    pub log: &'a Path,
    /// A descriptor the script inherits (a lock it keeps while it runs,
    /// cleanup included, even if kiln is gone).
    pub inherit_fd: Option<RawFd>,
}

/// The message of a progress line, without prefix and time.
pub fn progress_message(line: &str) -> Option<&str> {
    line.strip_prefix(PROGRESS_PREFIX)?
        .split_once("] ")
        .map(|(_, msg)| msg.trim_end())
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads the lines a running script appends to its log.
struct LogFollower<'a> {
    path: &'a Path,
    file: std::fs::File,
    partial: Vec<u8>,
}

impl<'a> LogFollower<'a> {
    fn open(path: &'a Path) -> Result<Self, IoError> {
        Ok(LogFollower {
            path,
            file: std::fs::File::open(path).map_err(IoError::at("open", path))?,
            partial: Vec::new(),
        })
    }

    /// Passes the progress lines completed since the last call on.
    fn poll(&mut self, progress: ProgressFn<'_>) -> Result<(), IoError> {
        use std::io::Read;
        self.file
            .read_to_end(&mut self.partial)
            .map_err(IoError::at("read", self.path))?;
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            if let Some(msg) = progress_message(line) {
                progress(msg);
            }
        }
        Ok(())
    }
}

/// Runs the script to its end. Its output goes straight into the log file
/// (so a script that outlives kiln still logs its cleanup); its progress
/// lines are read back from there and passed to `progress`. Dropping the
/// future sends SIGTERM to the script's process group; kiln dying sends
/// SIGTERM to the script, whose trap stops the rest.
pub async fn run(r: &ScriptRun<'_>, progress: ProgressFn<'_>) -> Result<(), ScriptError> {
    let script_path = r.out_dir.join(r.name);
    std::fs::write(&script_path, r.script).map_err(IoError::at("write", &script_path))?;
    let log = std::fs::File::create(r.log).map_err(IoError::at("create", r.log))?;
    let log_too = log.try_clone().map_err(IoError::at("open", r.log))?;
    let mut follower = LogFollower::open(r.log)?;

    let mut task = Task::new(format!("running the builder script {}", r.name), "bash")
        .arg(&script_path)
        .arg(r.out_dir)
        .env_clear()
        .envs(
            PASS_THROUGH
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
        )
        .env("LC_ALL", "C.UTF-8")
        .envs(r.env.iter().map(|(k, v)| (k, v)))
        .current_dir(r.out_dir)
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_too))
        .stop_signal(libc::SIGTERM);
    if let Some(fd) = r.inherit_fd {
        task = task.keep_fd(fd);
    }
    let mut running = task.spawn()?;
    let status = loop {
        tokio::select! {
            status = running.wait() => break status?,
            () = tokio::time::sleep(LOG_POLL) => follower.poll(progress)?,
        }
    };
    // reaped: what its trap left running may finish its cleanup
    running.disarm();
    follower.poll(progress)?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read(r.log).map_err(IoError::at("read", r.log))?;
    Err(ScriptError::Failed {
        status: status.to_string(),
        log: r.log.to_path_buf(),
        tail: last_lines(&String::from_utf8_lossy(&text), TAIL_LINES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_message("[make-base 12:34:56] mmdebstrap=104.8s\n"),
            Some("mmdebstrap=104.8s")
        );
        assert_eq!(progress_message("I: running apt-get update..."), None);
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }

    fn run_of<'a>(script: &'a str, dir: &'a Path, log: &'a Path) -> ScriptRun<'a> {
        ScriptRun {
            script,
            name: "s.sh",
            out_dir: dir,
            env: vec![("KNOB".into(), "value".into())],
            log,
            inherit_fd: None,
        }
    }

    #[tokio::test]
    async fn output_log_progress_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::env::set_var("KILN_TEST_NOT_PASSED", "1");
        let script = r#"
log() { printf '[make-base %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
echo "to stdout"
log "knob=$KNOB out=$1 leak=${KILN_TEST_NOT_PASSED:-none}"
printf 'no newline at the end' >&2
"#;
        let seen = Mutex::new(Vec::new());
        run(&run_of(script, dir.path(), &log), &|m| {
            seen.lock().unwrap().push(m.to_string())
        })
        .await
        .unwrap();
        let want = format!("knob=value out={} leak=none", dir.path().display());
        assert_eq!(seen.lock().unwrap().as_slice(), std::slice::from_ref(&want));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("to stdout\n"), "{text}");
        assert!(text.contains(&want), "{text}");
        assert!(text.ends_with("no newline at the end"), "{text}");
    }

    #[tokio::test]
    async fn failure_shows_the_tail_and_keeps_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = "for i in $(seq 1 100); do echo line$i >&2; done; exit 3\n";
        let e = run(&run_of(script, dir.path(), &log), &|_| {})
            .await
            .unwrap_err();
        let ScriptError::Failed {
            status,
            log: kept,
            tail,
        } = &e
        else {
            panic!("{e}");
        };
        assert!(status.contains('3'), "{status}");
        assert_eq!(kept, &log);
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(
            tail.starts_with("line71\n") && tail.ends_with("line100"),
            "{tail}"
        );
        assert!(std::fs::read_to_string(&log).unwrap().contains("line1\n"));
    }

    #[tokio::test]
    async fn dropping_the_run_terminates_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let pidfile = dir.path().join("pid");
        // a grandchild in the same group, and a trap that logs and records
        // the signal
        let script = format!(
            "trap 'echo cleaning up; echo trapped > {d}/trapped; exit 143' TERM\n\
             sleep 300 & echo $! > {p}\nwait\n",
            d = dir.path().display(),
            p = pidfile.display()
        );
        let r = run_of(&script, dir.path(), &log);
        let fut = run(&r, &|_| {});
        let waited = tokio::time::timeout(std::time::Duration::from_secs(2), fut).await;
        assert!(waited.is_err(), "the script cannot end by itself");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // a killed child stays a zombie until reaped: that is not alive
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                !st.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(std::time::Instant::now() < deadline, "sleep {pid} survived");
        while !dir.path().join("trapped").exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            dir.path().join("trapped").exists(),
            "the script's trap did not run"
        );
        // its output still reaches the log after kiln stopped reading
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("cleaning up"), "{text}");
    }
}
