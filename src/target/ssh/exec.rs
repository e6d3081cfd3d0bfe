//! Running a command in the guest, as root, so that dropping the future
//! kills it and everything it started.
//!
//! The SSH `exec` string is parsed by the login user's shell, so every word
//! is quoted ([`super::quote`]). It runs
//!
//! ```text
//! sudo -n -- [/usr/bin/env -- K=V…] /usr/bin/setsid -w /bin/sh -c WRAPPER kiln-exec CWD PROGRAM ARGS…
//! ```
//!
//! `setsid` makes the wrapper shell the leader of a new process group. The
//! wrapper speaks a short protocol on its standard output before the program
//! starts, so kiln never runs a program whose group it could not kill:
//!
//! 1. it prints `kiln-pgid PGID` and waits for `go` on its standard input;
//!    kiln records PGID and answers. If kiln is dropped before that, it
//!    closes the channel instead: the wrapper reads end-of-file and exits
//!    without running anything;
//! 2. it changes to CWD and checks that PROGRAM exists, printing
//!    `kiln-spawn cwd` or `kiln-spawn program` when not (kiln then reports a
//!    spawn error with [`std::io::ErrorKind::NotFound`], as the local target
//!    does), else `kiln-exec`, and `exec`s the program with standard input
//!    from `/dev/null`.
//!
//! Everything after `kiln-exec` is the program's. When the future is
//! dropped after step 1, a background task runs `kill -KILL -- -PGID` as root
//! over a new channel.
//!
//! The server closes the channel only when every process holding the
//! program's output has closed it, so a program that leaves `sleep 600 &`
//! behind would hold the caller. Once the exit status has come, the output
//! is read for [`OUTPUT_DRAIN`] at most; then the group is killed (which
//! closes the channel) and the result returned. Unlike on the local target,
//! background processes that released the output keep running in the guest
//! (killing every group after every command would cost a `sudo` each).

use std::sync::Arc;

use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};

use super::quote::{self, NulInWord};
use super::session::Connection;
use crate::target::{
    ExecOutput, ExecRequest, OutputSink, OutputTails, Result, Stream, TargetError, OUTPUT_DRAIN,
};
use crate::util::tail::{Tail, STDERR_TAIL, STDOUT_TAIL};

/// How long the channel may stay open after the leftovers of a finished
/// program were killed, before kiln stops waiting for it.
const CLOSE_AFTER_KILL: std::time::Duration = std::time::Duration::from_secs(5);

/// The wrapper script (POSIX sh). `$1` is the working folder (empty for
/// the default), the rest is the program and its arguments.
pub const WRAPPER: &str = r#"printf 'kiln-pgid %s\n' "$$"
IFS= read -r go || exit 125
[ "$go" = go ] || exit 125
exec </dev/null
if [ -n "$1" ]; then cd -- "$1" 2>/dev/null || { printf 'kiln-spawn cwd\n'; exit 126; }; fi
shift
case $1 in
  */*) [ -f "$1" ] && [ -x "$1" ] ;;
  *) command -v -- "$1" >/dev/null 2>&1 ;;
esac || { printf 'kiln-spawn program\n'; exit 127; }
printf 'kiln-exec\n'
exec "$@""#;

/// Kills process group `$1` as root; succeeds when the group is gone
/// (already exited counts). Refuses groups 0 and 1: `kill -- -1` means
/// every process.
pub const KILL_SCRIPT: &str = r#"case $1 in ''|*[!0-9]*) exit 2 ;; esac
[ "$1" -gt 1 ] || exit 2
kill -KILL -- "-$1" 2>/dev/null || ! kill -0 -- "-$1" 2>/dev/null"#;

/// Why a request cannot be turned into a command line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A word holds a NUL byte.
    #[error(transparent)]
    Nul(#[from] NulInWord),
    /// An environment variable's name cannot be passed through `env`.
    #[error("environment variable name {0:?} is empty or contains `=`")]
    BadEnvName(String),
}

/// The command line that runs `req` through the wrapper.
pub fn wrapper_command(req: &ExecRequest<'_>) -> std::result::Result<String, CommandError> {
    let mut words: Vec<String> = vec!["sudo".into(), "-n".into(), "--".into()];
    if !req.env.is_empty() {
        words.extend(["/usr/bin/env".into(), "--".into()]);
        for (k, v) in req.env {
            if k.is_empty() || k.contains('=') {
                return Err(CommandError::BadEnvName(k.clone()));
            }
            words.push(format!("{k}={v}"));
        }
    }
    words.extend(
        [
            "/usr/bin/setsid",
            "-w",
            "/bin/sh",
            "-c",
            WRAPPER,
            "kiln-exec",
        ]
        .map(String::from),
    );
    words.push(req.cwd.unwrap_or("").to_string());
    words.push(req.program.to_string());
    words.extend(req.args.iter().cloned());
    Ok(quote::command_line(&words)?)
}

/// What the wrapper's standard output means, chunk by chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// The process group id (the wrapper waits for `go`).
    Pgid(i32),
    /// The program starts; what follows is its output.
    Started,
    /// The wrapper could not start the program (`cwd` or `program`).
    SpawnFailed(String),
    /// Program output.
    Output(Vec<u8>),
    /// A line the protocol does not allow.
    Malformed(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    AwaitPgid,
    AwaitStart,
    Running,
    Failed,
}

/// The longest control line the wrapper writes (a longer one is malformed).
pub const MAX_CONTROL_LINE: usize = 4096;

/// Splits the wrapper's control lines from the program's output.
#[derive(Debug, Default)]
pub struct ControlParser {
    phase: Phase,
    buf: Vec<u8>,
}

impl ControlParser {
    /// True once the program runs.
    pub fn started(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Feeds a chunk of standard output; returns what it means, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Control> {
        match self.phase {
            Phase::Running => return vec![Control::Output(chunk.to_vec())],
            // the command is refused: what follows is not kept
            Phase::Failed => return Vec::new(),
            _ => {}
        }
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while self.phase != Phase::Running && self.phase != Phase::Failed {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..nl]).into_owned();
            let event = self.line(line);
            if matches!(event, Control::Malformed(_) | Control::SpawnFailed(_)) {
                self.phase = Phase::Failed;
            }
            events.push(event);
        }
        if self.phase == Phase::Running && !self.buf.is_empty() {
            events.push(Control::Output(std::mem::take(&mut self.buf)));
        }
        // a line without its end that is already too long is not the wrapper's
        if !matches!(self.phase, Phase::Running | Phase::Failed)
            && self.buf.len() > MAX_CONTROL_LINE
        {
            let head = String::from_utf8_lossy(&self.buf[..64]).into_owned();
            self.buf = Vec::new();
            self.phase = Phase::Failed;
            events.push(Control::Malformed(format!(
                "{head}… (over {MAX_CONTROL_LINE} bytes)"
            )));
        }
        events
    }

    fn line(&mut self, line: String) -> Control {
        match (self.phase, line.split_once(' ')) {
            (Phase::AwaitPgid, Some(("kiln-pgid", n))) => match n.parse::<i32>() {
                // 0 and 1 would make `kill -- -PGID` hit far more than this command
                Ok(pgid) if pgid > 1 => {
                    self.phase = Phase::AwaitStart;
                    Control::Pgid(pgid)
                }
                _ => Control::Malformed(line),
            },
            (Phase::AwaitStart, Some(("kiln-spawn", what))) => Control::SpawnFailed(what.into()),
            (Phase::AwaitStart, None) if line == "kiln-exec" => {
                self.phase = Phase::Running;
                Control::Started
            }
            _ => Control::Malformed(line),
        }
    }
}

/// Where a command is, for the kill-on-drop guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// The wrapper has not been told to go: closing the channel stops it.
    Waiting,
    /// The program may run in this process group.
    Running(i32),
    /// It finished (or the connection is gone): nothing to do.
    Finished,
}

/// Stops the remote command when the exec future is dropped early.
struct KillGuard {
    conn: Arc<Connection>,
    tx: Option<ChannelWriteHalf<Msg>>,
    progress: Progress,
}

impl KillGuard {
    fn tx(&self) -> &ChannelWriteHalf<Msg> {
        self.tx.as_ref().expect("the write half lives until drop")
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let progress = self.progress;
        if progress == Progress::Finished {
            return;
        }
        let conn = Arc::clone(&self.conn);
        let job = async move {
            let result = match progress {
                Progress::Finished => Ok(()),
                Progress::Waiting => match tx.eof().await {
                    Ok(()) => tx.close().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Progress::Running(pgid) => kill_group(&conn, pgid).await,
            };
            if let Err(e) = result {
                // no caller is left to tell: the future that owned this was dropped
                eprintln!(
                    "kiln: warning: could not stop an abandoned command on {}: {e}",
                    conn.describe
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(job);
            }
            Err(_) => eprintln!(
                "kiln: warning: an abandoned command on {} keeps running: no async runtime to stop it",
                self.conn.describe
            ),
        }
    }
}

/// A raw command's result.
#[derive(Debug, Default)]
pub struct RawOutput {
    /// Exit status; `None` when killed by a signal or when the channel closed first.
    pub code: Option<u32>,
    /// The last bytes of standard output.
    pub stdout: Vec<u8>,
    /// The last bytes of standard error.
    pub stderr: Vec<u8>,
}

fn lost(conn: &Connection, what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Connection {
        target: conn.describe.clone(),
        message: format!("{what}: {e}"),
    }
}

/// Opens a session channel and asks the server to run `command` on it.
async fn open_exec(conn: &Connection, command: &str) -> Result<Channel<Msg>> {
    let ch = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| lost(conn, "cannot open a channel", e))?;
    ch.exec(true, command)
        .await
        .map_err(|e| lost(conn, "cannot send a command", e))?;
    Ok(ch)
}

/// Runs `command` (already a shell command line) on a new channel and
/// collects its output; no wrapper, no kill on drop.
pub(crate) async fn run_raw(conn: &Connection, command: &str) -> Result<RawOutput> {
    let mut ch = open_exec(conn, command).await?;
    let mut code = None;
    let (mut stdout, mut stderr) = (Tail::new(STDOUT_TAIL), Tail::new(STDERR_TAIL));
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => stdout.push(&data),
            ChannelMsg::ExtendedData { data, .. } => stderr.push(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(RawOutput {
        code,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    })
}

/// Starts `command` and returns once the server accepted it, without
/// waiting for it to finish (for `systemctl reboot`, which ends the
/// connection).
pub(crate) async fn start_detached(conn: &Connection, command: &str) -> Result<()> {
    let mut ch = open_exec(conn, command).await?;
    loop {
        match ch.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(lost(conn, "the server refused to run", command))
            }
            // the command finished (or the connection dropped) before the reply came
            Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Close) | None => return Ok(()),
            Some(_) => {}
        }
    }
}

/// Kills process group `pgid` in the guest as root.
async fn kill_group(conn: &Connection, pgid: i32) -> std::result::Result<(), String> {
    let command = quote::command_line(&[
        "sudo",
        "-n",
        "--",
        "/bin/bash",
        "-c",
        KILL_SCRIPT,
        "kiln-kill",
        &pgid.to_string(),
    ])
    .map_err(|e| e.to_string())?;
    let out = run_raw(conn, &command).await.map_err(|e| e.to_string())?;
    match out.code {
        Some(0) => Ok(()),
        code => Err(format!(
            "kill -KILL -- -{pgid} ended with {code:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Output streamed to the sink as it arrives; its tails are kept.
struct Collector<'a> {
    sink: Option<OutputSink<'a>>,
    tails: OutputTails,
    /// Standard error before the program started (sudo's, the wrapper's).
    preamble: Tail,
}

impl Collector<'_> {
    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        if let Some(sink) = self.sink {
            sink(stream, bytes);
        }
        self.tails.push(stream, bytes);
    }
}

/// How the channel ended.
enum Ending {
    Code(u32),
    Signal(String),
}

/// Runs `req` as root in the guest (see the module documentation).
pub(crate) async fn run(conn: Arc<Connection>, req: ExecRequest<'_>) -> Result<ExecOutput> {
    let program = req.program;
    let spawn_err = |source: std::io::Error| TargetError::Spawn {
        program: program.to_string(),
        source,
    };
    let command = wrapper_command(&req)
        .map_err(|e| spawn_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let ch = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| lost(&conn, "cannot open a channel", e))?;
    let (mut rx, tx) = ch.split();
    let mut guard = KillGuard {
        conn: Arc::clone(&conn),
        tx: Some(tx),
        progress: Progress::Waiting,
    };
    guard
        .tx()
        .exec(true, command)
        .await
        .map_err(|e| lost(&conn, "cannot send a command", e))?;

    let mut parser = ControlParser::default();
    let mut out = Collector {
        sink: req.on_output,
        tails: OutputTails::default(),
        preamble: Tail::new(STDERR_TAIL),
    };
    let mut failure: Option<Control> = None;
    let mut ending = None;
    // set once the exit status came: how long the output may still flow
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut killed_leftovers = false;
    loop {
        let next = match drain_until {
            None => rx.wait().await,
            Some(at) => match tokio::time::timeout_at(at, rx.wait()).await {
                Ok(next) => next,
                Err(_) if killed_leftovers => break,
                Err(_) => {
                    // the program is done; what it left running holds its output
                    killed_leftovers = true;
                    drain_until = Some(tokio::time::Instant::now() + CLOSE_AFTER_KILL);
                    if let Progress::Running(pgid) = guard.progress {
                        if let Err(e) = kill_group(&conn, pgid).await {
                            eprintln!(
                                "kiln: warning: could not stop what `{program}` left running on {}: {e}",
                                conn.describe
                            );
                            break;
                        }
                    }
                    continue;
                }
            },
        };
        let Some(msg) = next else { break };
        match msg {
            ChannelMsg::Data { data } => {
                for event in parser.feed(&data) {
                    match event {
                        Control::Pgid(pgid) => {
                            guard.progress = Progress::Running(pgid);
                            let tx = guard.tx();
                            tx.data_bytes(&b"go\n"[..])
                                .await
                                .map_err(|e| lost(&conn, "cannot start the command", e))?;
                            tx.eof()
                                .await
                                .map_err(|e| lost(&conn, "cannot start the command", e))?;
                        }
                        Control::Started => {
                            let early = std::mem::replace(&mut out.preamble, Tail::new(0));
                            let early = early.into_bytes();
                            if !early.is_empty() {
                                out.push(Stream::Stderr, &early);
                            }
                        }
                        Control::Output(bytes) => out.push(Stream::Stdout, &bytes),
                        e @ (Control::SpawnFailed(_) | Control::Malformed(_)) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
            ChannelMsg::ExtendedData { data, .. } if parser.started() => {
                out.push(Stream::Stderr, &data)
            }
            ChannelMsg::ExtendedData { data, .. } => out.preamble.push(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                ending = Some(Ending::Code(exit_status));
                drain_until.get_or_insert(tokio::time::Instant::now() + OUTPUT_DRAIN);
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                ending = Some(Ending::Signal(format!("{signal_name:?}")));
                drain_until.get_or_insert(tokio::time::Instant::now() + OUTPUT_DRAIN);
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    guard.progress = Progress::Finished;

    let preamble = out.preamble.into_bytes();
    let preamble = String::from_utf8_lossy(&preamble).trim().to_string();
    match (failure, parser.started(), ending) {
        (Some(Control::SpawnFailed(what)), _, _) => {
            let message = match what.as_str() {
                "cwd" => format!(
                    "working folder {} not found on {}",
                    req.cwd.unwrap_or(""),
                    conn.describe
                ),
                _ => format!("program not found on {}", conn.describe),
            };
            Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                message,
            )))
        }
        (Some(other), _, _) => Err(spawn_err(std::io::Error::other(format!(
            "unexpected output from kiln's command wrapper: {other:?}; {preamble}"
        )))),
        (None, true, Some(end)) => Ok(out.tails.finish(match end {
            Ending::Code(c) => Some(c as i32),
            Ending::Signal(_) => None,
        })),
        (None, _, None) => Err(lost(
            &conn,
            &format!("{program} did not report an exit status"),
            "the connection closed first",
        )),
        (None, false, Some(end)) => {
            let how = match end {
                Ending::Code(c) => format!("exit status {c}"),
                Ending::Signal(s) => format!("signal {s}"),
            };
            Err(spawn_err(std::io::Error::other(format!(
                "`sudo -n` with kiln's wrapper ended ({how}) before the program started: {preamble}"
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        program: &'a str,
        args: &'a [String],
        env: &'a [(String, String)],
        cwd: Option<&'a str>,
    ) -> ExecRequest<'a> {
        ExecRequest {
            program,
            args,
            env,
            cwd,
            on_output: None,
        }
    }

    #[test]
    fn parser_splits_control_lines_from_output() {
        let mut p = ControlParser::default();
        assert_eq!(p.feed(b"kiln-pg"), vec![]);
        assert_eq!(p.feed(b"id 4242\nkiln-"), vec![Control::Pgid(4242)]);
        assert!(!p.started());
        assert_eq!(
            p.feed(b"exec\nhello"),
            vec![Control::Started, Control::Output(b"hello".to_vec())]
        );
        assert!(p.started());
        // once running, control-looking text is plain output
        assert_eq!(
            p.feed(b"kiln-pgid 1\n"),
            vec![Control::Output(b"kiln-pgid 1\n".to_vec())]
        );
    }

    #[test]
    fn parser_reports_spawn_failures_and_garbage() {
        let mut p = ControlParser::default();
        assert_eq!(
            p.feed(b"kiln-pgid 77\nkiln-spawn program\n"),
            vec![Control::Pgid(77), Control::SpawnFailed("program".into())]
        );
        assert!(!p.started());
        let mut p = ControlParser::default();
        assert_eq!(
            p.feed(b"surprise\n"),
            vec![Control::Malformed("surprise".into())]
        );
        for bad in [
            "kiln-pgid 1\n",
            "kiln-pgid 0\n",
            "kiln-pgid -5\n",
            "kiln-pgid x\n",
        ] {
            let mut p = ControlParser::default();
            assert!(
                matches!(p.feed(bad.as_bytes()).as_slice(), [Control::Malformed(_)]),
                "{bad}"
            );
        }
    }

    #[test]
    fn parser_refuses_an_endless_control_line() {
        let mut p = ControlParser::default();
        let mut events = Vec::new();
        for _ in 0..100 {
            events.extend(p.feed(&[b'x'; 1000]));
        }
        assert!(
            matches!(events.as_slice(), [Control::Malformed(m)] if m.contains("over 4096 bytes")),
            "{events:?}"
        );
        assert!(p.buf.capacity() < 2 * MAX_CONTROL_LINE);
    }

    /// The wrapper, run by this host's /bin/sh without sudo/setsid: the
    /// protocol, cwd and program checks, and that nothing runs without `go`.
    fn wrapper_on_host(stdin: &[u8], cwd: &str, argv: &[&str]) -> (String, Option<i32>) {
        use std::io::Write;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", WRAPPER, "kiln-exec", cwd])
            .args(argv)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (String::from_utf8(out.stdout).unwrap(), out.status.code())
    }

    #[test]
    fn wrapper_protocol_on_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let touch = format!("echo ran > {}; pwd", marker.display());
        let (out, code) = wrapper_on_host(b"", "", &["sh", "-c", &touch]);
        assert!(
            out.starts_with("kiln-pgid ") && !out.contains("kiln-exec"),
            "{out}"
        );
        assert_eq!(code, Some(125));
        assert!(!marker.exists(), "nothing runs without `go`");

        let (out, code) =
            wrapper_on_host(b"go\n", dir.path().to_str().unwrap(), &["sh", "-c", &touch]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "kiln-exec", "{out}");
        assert_eq!(lines[2], dir.path().to_str().unwrap());
        assert_eq!(code, Some(0));
        assert!(marker.exists());

        let (out, code) = wrapper_on_host(b"go\n", "/no/such/dir", &["true"]);
        assert!(out.ends_with("kiln-spawn cwd\n"), "{out}");
        assert_eq!(code, Some(126));
        let (out, _) = wrapper_on_host(b"go\n", "", &["no-such-program-kiln"]);
        assert!(out.ends_with("kiln-spawn program\n"), "{out}");
        let (out, _) = wrapper_on_host(b"go\n", "", &["/no/such/program"]);
        assert!(out.ends_with("kiln-spawn program\n"), "{out}");
        let (out, code) =
            wrapper_on_host(b"go\n", "", &["sh", "-c", "read x; echo \"[$x]\"; exit 3"]);
        assert!(
            out.ends_with("kiln-exec\n[]\n"),
            "stdin is /dev/null: {out}"
        );
        assert_eq!(code, Some(3));
    }

    #[test]
    fn kill_script_refuses_groups_zero_and_one() {
        // never a real kill on this host: `kill` is shadowed by a function
        // that reports the call, and only refusals are expected
        let script = format!("kill() {{ echo \"kill $*\"; exit 99; }}\n{KILL_SCRIPT}");
        for (arg, code) in [
            ("", 2),
            ("0", 2),
            ("1", 2),
            ("-1", 2),
            ("1x", 2),
            ("+5", 2),
            ("4242", 99),
        ] {
            let out = std::process::Command::new("/bin/bash")
                .args(["-c", &script, "kiln-kill", arg])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(code), "{arg:?}");
        }
    }

    #[test]
    fn command_lines() {
        let args = vec!["a b".to_string(), "it's".to_string()];
        let env = vec![("K".to_string(), "v w".to_string())];
        let line = wrapper_command(&req("printf", &args, &env, Some("/tmp"))).unwrap();
        assert!(
            line.starts_with("sudo -n -- /usr/bin/env -- 'K=v w' /usr/bin/setsid -w /bin/sh -c '"),
            "{line}"
        );
        assert!(
            line.ends_with(r"kiln-exec /tmp printf 'a b' 'it'\''s'"),
            "{line}"
        );
        let line = wrapper_command(&req("true", &[], &[], None)).unwrap();
        assert!(line.starts_with("sudo -n -- /usr/bin/setsid"), "{line}");
        assert!(line.ends_with("kiln-exec '' true"), "{line}");
        let bad_env = vec![("A=B".to_string(), "x".to_string())];
        assert!(matches!(
            wrapper_command(&req("true", &[], &bad_env, None)),
            Err(CommandError::BadEnvName(_))
        ));
        let nul = vec!["a\0".to_string()];
        assert!(matches!(
            wrapper_command(&req("true", &nul, &[], None)),
            Err(CommandError::Nul(_))
        ));
    }
}
