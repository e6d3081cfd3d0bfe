//! One way to run an external program (bootc's `Task` model): every tool
//! kiln runs (qemu-img, qemu-nbd, debugfs, mtools, mmdebstrap, the
//! bootstrap script, a notification command) goes through [`Task`].
//!
//! A task has a description ("reading /boot with debugfs") that every
//! error repeats. Its child is supervised ([`supervise`]: its own process
//! group, a signal when kiln dies, the group signalled when the handle is
//! dropped), its standard input is closed unless bytes are given, its
//! output is captured bounded (standard output up to a limit, past which
//! the task is stopped; the last bytes of standard error for the error
//! message), its exit status is checked (0 plus any accepted codes), and
//! an optional timeout stops its whole group.
//!
//! A program that is not installed gives "`mdir` not found (install the
//! Debian package mtools)": [`PACKAGES`] names the package of every tool
//! kiln runs. A spawn error is never mistaken for a result.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::display::{Escaped, EscapedLines};
use super::process::{signal_group, supervise, GroupGuard};
use super::tail::Tail;

/// The Debian package that provides each external program kiln runs
/// (kiln itself, its bootstrap script, and the tools its tests use to
/// check kiln's outputs).
pub const PACKAGES: &[(&str, &str)] = &[
    ("bash", "bash"),
    ("debugfs", "e2fsprogs"),
    ("mcopy", "mtools"),
    ("mdir", "mtools"),
    ("mke2fs", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mmdebstrap", "mmdebstrap"),
    ("newgidmap", "uidmap"),
    ("newuidmap", "uidmap"),
    ("passt", "passt"),
    ("python3", "python3"),
    ("qemu-img", "qemu-utils"),
    ("qemu-nbd", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("sfdisk", "fdisk"),
    ("ssh-keygen", "openssh-client"),
    ("zstd", "zstd"),
];

/// The Debian package of `program` (by its file name, so
/// `/usr/bin/qemu-system-x86_64` is found too), when kiln knows it.
pub fn package_of(program: &OsStr) -> Option<&'static str> {
    let name = Path::new(program).file_name()?;
    PACKAGES
        .iter()
        .find(|(p, _)| OsStr::new(p) == name)
        .map(|(_, package)| *package)
}

/// How much standard output a task may print unless it says otherwise.
pub const STDOUT_LIMIT: usize = 16 << 20;
/// How much of the end of standard error a task keeps for its error.
pub const STDERR_TAIL: usize = 8 << 10;
/// How long the output of a task that has exited is still read: what it
/// left running may hold its pipes open. Then its group is stopped.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// How long a stopped task may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a task did not do its job. Display names the task's description
/// and, where it ran, its command line; an operating system error is the
/// source.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The program is not installed (not in `PATH`, or no such file).
    #[error(
        "{description}: `{}` not found{}",
        Escaped(&.program.to_string_lossy()),
        install_hint(*.package)
    )]
    NotFound {
        /// What the task was for.
        description: String,
        /// The program as given.
        program: OsString,
        /// Its Debian package, when kiln knows it.
        package: Option<&'static str>,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be started (permissions, resources…).
    #[error("{description}: cannot start `{}`", Escaped(.command))]
    Spawn {
        /// What the task was for.
        description: String,
        /// The command line.
        command: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Its output could not be read or its input written, or it could
    /// not be waited for.
    #[error("{description}: {what} `{}`", Escaped(.command))]
    Io {
        /// What the task was for.
        description: String,
        /// The command line.
        command: String,
        /// What was attempted.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// It ended with a status the task does not accept.
    #[error(
        "{description}: `{}` failed ({status}){}",
        Escaped(.command),
        stderr_suffix(.stderr)
    )]
    Failed {
        /// What the task was for.
        description: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of its standard error, trimmed.
        stderr: String,
    },
    /// It took longer than its timeout; its group was stopped.
    #[error(
        "{description}: `{}` did not finish within {} s; it was stopped",
        Escaped(.command),
        timeout.as_secs_f64()
    )]
    Timeout {
        /// What the task was for.
        description: String,
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// It printed more than its limit; its group was stopped.
    #[error(
        "{description}: `{}` printed more than {limit} bytes; it was stopped",
        Escaped(.command)
    )]
    TooMuchOutput {
        /// What the task was for.
        description: String,
        /// The command line.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
}

fn install_hint(package: Option<&str>) -> String {
    package
        .map(|p| format!(" (install the Debian package {p})"))
        .unwrap_or_default()
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {}", EscapedLines(stderr))
    }
}

impl TaskError {
    /// True when the program is not installed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TaskError::NotFound { .. })
    }

    /// True when the program did not start at all (not installed, or not
    /// startable).
    pub fn is_spawn(&self) -> bool {
        matches!(self, TaskError::NotFound { .. } | TaskError::Spawn { .. })
    }

    /// True when the task hit one of its bounds (time, output size): the
    /// input it was reading is at fault when that input is untrusted.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            TaskError::Timeout { .. } | TaskError::TooMuchOutput { .. }
        )
    }
}

/// What a finished task printed.
#[derive(Debug)]
pub struct TaskOutput {
    /// How it ended (0 or an accepted code).
    pub status: ExitStatus,
    /// Its standard output (at most its limit).
    pub stdout: Vec<u8>,
    /// The end of its standard error ([`STDERR_TAIL`] bytes), lossily
    /// decoded.
    pub stderr: String,
}

impl TaskOutput {
    /// Standard output as text (lossily decoded).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// What a task needs to describe itself once it runs.
#[derive(Debug)]
struct Context {
    description: String,
    command: String,
    ok_codes: Vec<i32>,
    stdout_limit: usize,
    timeout: Option<Duration>,
    signal: libc::c_int,
}

impl Context {
    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
        move |source| TaskError::Io {
            description: self.description.clone(),
            command: self.command.clone(),
            what,
            source,
        }
    }
}

/// An external program to run, described (see the module documentation).
#[derive(Debug)]
pub struct Task {
    description: String,
    program: OsString,
    args: Vec<OsString>,
    show_args: bool,
    cmd: tokio::process::Command,
    cwd: Option<PathBuf>,
    input: Option<Vec<u8>>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    keep_fds: Vec<RawFd>,
    ctx_ok_codes: Vec<i32>,
    stdout_limit: usize,
    timeout: Option<Duration>,
    signal: libc::c_int,
}

impl Task {
    /// A task running `program` (looked up in `PATH` unless it holds a
    /// `/`) for `description`, a phrase naming what it is for ("reading
    /// /boot with debugfs").
    pub fn new(description: impl Into<String>, program: impl AsRef<OsStr>) -> Task {
        let program = program.as_ref().to_os_string();
        Task {
            description: description.into(),
            cmd: tokio::process::Command::new(&program),
            program,
            args: Vec::new(),
            show_args: true,
            cwd: None,
            input: None,
            stdout: None,
            stderr: None,
            keep_fds: Vec::new(),
            ctx_ok_codes: Vec::new(),
            stdout_limit: STDOUT_LIMIT,
            timeout: None,
            signal: libc::SIGKILL,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Task {
        self.cmd.arg(arg.as_ref());
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Task
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Leaves the arguments out of every message (`program …`): they may
    /// hold secrets.
    pub fn hide_args(mut self) -> Task {
        self.show_args = false;
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Task {
        self.cmd.env(key, value);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Task
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Starts from an empty environment (before [`Task::env`]).
    pub fn env_clear(mut self) -> Task {
        self.cmd.env_clear();
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Task {
        self.cmd.current_dir(dir.as_ref());
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Gives `bytes` on standard input (closed after them; a program that
    /// closes it early is not an error). Without it, standard input is
    /// `/dev/null`.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Task {
        self.input = Some(bytes.into());
        self
    }

    /// Sends standard output elsewhere (a log file, `/dev/null`, kiln's
    /// own); by default it is captured.
    pub fn stdout(mut self, to: Stdio) -> Task {
        self.stdout = Some(to);
        self
    }

    /// Sends standard error elsewhere; by default its end is captured.
    pub fn stderr(mut self, to: Stdio) -> Task {
        self.stderr = Some(to);
        self
    }

    /// Lets the child inherit the descriptor `fd` (e.g. a lock it keeps
    /// while it runs, even after kiln is gone). `fd` must stay open until
    /// the task is spawned.
    pub fn keep_fd(mut self, fd: RawFd) -> Task {
        self.keep_fds.push(fd);
        self
    }

    /// Exit codes that count as success besides 0.
    pub fn ok_codes(mut self, codes: &[i32]) -> Task {
        self.ctx_ok_codes = codes.to_vec();
        self
    }

    /// The most bytes of standard output [`Task::output`] accepts (default
    /// [`STDOUT_LIMIT`]); past it, the task is stopped and fails.
    pub fn stdout_limit(mut self, bytes: usize) -> Task {
        self.stdout_limit = bytes;
        self
    }

    /// Stops the task's group (and fails it) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Task {
        self.timeout = Some(timeout);
        self
    }

    /// The signal the child's group gets when kiln dies or drops the task
    /// (default SIGKILL; SIGTERM for a script whose trap cleans up).
    pub fn stop_signal(mut self, signal: libc::c_int) -> Task {
        self.signal = signal;
        self
    }

    /// The command line as messages show it: the program and its
    /// arguments, quoted for a shell where needed (or `…` for hidden
    /// arguments).
    pub fn command_line(&self) -> String {
        let mut words = vec![shell_word(&self.program)];
        if self.show_args {
            words.extend(self.args.iter().map(|a| shell_word(a)));
        } else if !self.args.is_empty() {
            words.push("…".into());
        }
        words.join(" ")
    }

    fn spawn_error(&self, source: std::io::Error) -> TaskError {
        let cwd_missing = self.cwd.as_ref().is_some_and(|d| !d.is_dir());
        if source.kind() == std::io::ErrorKind::NotFound && !cwd_missing {
            return TaskError::NotFound {
                description: self.description.clone(),
                package: package_of(&self.program),
                program: self.program.clone(),
                source,
            };
        }
        TaskError::Spawn {
            description: self.description.clone(),
            command: self.command_line(),
            source,
        }
    }

    /// Starts the task and returns its handle: for long-lived children
    /// (qemu-nbd, the bootstrap script) and for callers that stream its
    /// output. The child's group is signalled when the handle is dropped.
    pub fn spawn(mut self) -> Result<Running, TaskError> {
        let stdin = if self.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        self.cmd
            .stdin(stdin)
            .stdout(self.stdout.take().unwrap_or_else(Stdio::piped))
            .stderr(self.stderr.take().unwrap_or_else(Stdio::piped))
            // a gentler stop signal must reach the child first (its trap
            // cleans up): the group guard sends it; no SIGKILL on drop then
            .kill_on_drop(self.signal == libc::SIGKILL);
        supervise(&mut self.cmd, self.signal);
        for fd in self.keep_fds.clone() {
            // SAFETY: only fcntl (async-signal-safe) between fork and exec,
            // on a descriptor the caller keeps open until the spawn.
            unsafe {
                self.cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = self.cmd.spawn().map_err(|e| self.spawn_error(e))?;
        Ok(Running {
            group: GroupGuard::new(child.id(), self.signal),
            pgid: child.id(),
            child,
            input: self.input.take(),
            ctx: Context {
                command: self.command_line(),
                description: std::mem::take(&mut self.description),
                ok_codes: std::mem::take(&mut self.ctx_ok_codes),
                stdout_limit: self.stdout_limit,
                timeout: self.timeout,
                signal: self.signal,
            },
        })
    }

    /// Runs the task to its end and checks its status: its captured
    /// output, or why it failed.
    pub async fn output(self) -> Result<TaskOutput, TaskError> {
        self.spawn()?.output().await
    }
}

/// A word of a command line as a shell would take it: plain when it is
/// made of safe characters, single-quoted otherwise.
fn shell_word(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Reads `r` to its end, keeping its last `cap` bytes.
pub async fn read_tail<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> std::io::Result<Vec<u8>> {
    let tail = Mutex::new(Tail::new(cap));
    pump_tail(&mut r, &tail).await?;
    Ok(into_inner(tail).into_bytes())
}

/// The kept end of standard error as text: trimmed, without the line cut
/// at its start when the beginning was dropped.
fn tail_text(tail: Tail) -> String {
    let cut = tail.truncated();
    let bytes = tail.into_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let text = match text.split_once('\n') {
        Some((_, rest)) if cut => rest,
        _ => &text,
    };
    text.trim().to_string()
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn pump_tail<R: AsyncRead + Unpin>(r: &mut R, tail: &Mutex<Tail>) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        lock(tail).push(&buf[..n]);
    }
}

/// Why reading a task's pipes stopped early.
enum PumpError {
    Io(&'static str, std::io::Error),
    TooMuch,
}

async fn pump_limited<R: AsyncRead + Unpin>(
    r: &mut R,
    out: &Mutex<Vec<u8>>,
    limit: usize,
) -> Result<(), PumpError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| PumpError::Io("reading the output of", e))?;
        if n == 0 {
            return Ok(());
        }
        let mut out = lock(out);
        if out.len() + n > limit {
            return Err(PumpError::TooMuch);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A started task. Dropping it signals the child's whole group (unless
/// [`Running::disarm`] was called).
#[derive(Debug)]
pub struct Running {
    child: tokio::process::Child,
    group: GroupGuard,
    pgid: Option<u32>,
    input: Option<Vec<u8>>,
    ctx: Context,
}

impl Running {
    /// The child's process id (also its process group id), until reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The child's standard output, when captured and not taken yet.
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The child's standard error, when captured and not taken yet.
    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// The child's status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, TaskError> {
        self.child.try_wait().map_err(self.ctx.io("waiting for"))
    }

    /// Waits for the child to exit (not checked: see [`Running::check`]).
    pub async fn wait(&mut self) -> Result<ExitStatus, TaskError> {
        self.child.wait().await.map_err(self.ctx.io("waiting for"))
    }

    /// Whether `status` is accepted (0 or one of the task's codes).
    pub fn accepts(&self, status: ExitStatus) -> bool {
        status
            .code()
            .is_some_and(|c| c == 0 || self.ctx.ok_codes.contains(&c))
    }

    /// `Ok` when `status` is accepted, else [`TaskError::Failed`] with
    /// `stderr` (what the child printed there, its end is kept).
    pub fn check(&self, status: ExitStatus, stderr: &[u8]) -> Result<(), TaskError> {
        if self.accepts(status) {
            Ok(())
        } else {
            Err(self.failed(status, stderr))
        }
    }

    /// [`TaskError::Failed`] for `status`, with the end of `stderr`.
    pub fn failed(&self, status: ExitStatus, stderr: &[u8]) -> TaskError {
        let mut tail = Tail::new(STDERR_TAIL);
        tail.push(stderr);
        self.failed_with(status, tail_text(tail))
    }

    fn failed_with(&self, status: ExitStatus, stderr: String) -> TaskError {
        TaskError::Failed {
            description: self.ctx.description.clone(),
            command: self.ctx.command.clone(),
            status,
            stderr,
        }
    }

    /// [`TaskError::Timeout`] for this task after `timeout`.
    pub fn timed_out(&self, timeout: Duration) -> TaskError {
        TaskError::Timeout {
            description: self.ctx.description.clone(),
            command: self.ctx.command.clone(),
            timeout,
        }
    }

    /// The child has been reaped and what is left of its group may go on
    /// (a script's trap cleaning up): dropping the handle signals nothing.
    pub fn disarm(&mut self) {
        self.group.disarm();
    }

    /// Signals the child's whole group with the task's stop signal and
    /// reaps the child (bounded). A child stopped with a gentler signal
    /// gets [`REAP_TIMEOUT`] to clean up before it is killed.
    pub async fn stop(&mut self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid as i32, self.ctx.signal);
        }
        if self.ctx.signal != libc::SIGKILL
            && tokio::time::timeout(REAP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.start_kill();
        // the child is killed: the wait ends unless the kernel holds it (D state)
        let _ = tokio::time::timeout(REAP_TIMEOUT, self.child.wait()).await;
    }

    /// Feeds the input, reads the captured output and waits for the exit
    /// (see [`OUTPUT_DRAIN`]); the status is not checked.
    async fn collect(&mut self) -> Result<(ExitStatus, Vec<u8>, Tail), TaskError> {
        let stdin = self.child.stdin.take();
        let input = self.input.take();
        let mut out = self.child.stdout.take();
        let mut err = self.child.stderr.take();
        let stdout = Mutex::new(Vec::new());
        let stderr = Mutex::new(Tail::new(STDERR_TAIL));
        let limit = self.ctx.stdout_limit;
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                match pipe.write_all(&bytes).await {
                    // a program that does not read its input may close it
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(PumpError::Io("writing the input of", e));
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        let read_out = async {
            match out.as_mut() {
                Some(o) => pump_limited(o, &stdout, limit).await,
                None => Ok(()),
            }
        };
        let read_err = async {
            match err.as_mut() {
                Some(e) => pump_tail(e, &stderr)
                    .await
                    .map_err(|e| PumpError::Io("reading the messages of", e)),
                None => Ok(()),
            }
        };
        let pumps = async { tokio::try_join!(feed, read_out, read_err).map(|_| ()) };
        tokio::pin!(pumps);
        enum First {
            Pumps(Result<(), PumpError>),
            Exited(std::io::Result<ExitStatus>),
        }
        let first = tokio::select! {
            r = &mut pumps => First::Pumps(r),
            s = self.child.wait() => First::Exited(s),
        };
        let (pumped, status) = match first {
            First::Pumps(r) => (r, None),
            // what it left running may hold the pipes: read a little more
            First::Exited(s) => (
                tokio::time::timeout(OUTPUT_DRAIN, &mut pumps)
                    .await
                    .unwrap_or(Ok(())),
                Some(s),
            ),
        };
        match pumped {
            Ok(()) => {}
            Err(PumpError::Io(what, e)) => return Err(self.ctx.io(what)(e)),
            Err(PumpError::TooMuch) => {
                return Err(TaskError::TooMuchOutput {
                    description: self.ctx.description.clone(),
                    command: self.ctx.command.clone(),
                    limit,
                })
            }
        }
        let status = match status {
            Some(s) => s,
            None => self.child.wait().await,
        }
        .map_err(self.ctx.io("waiting for"))?;
        // the pumps still borrow the buffers: take their contents
        let stdout = std::mem::take(&mut *lock(&stdout));
        let stderr = std::mem::replace(&mut *lock(&stderr), Tail::new(0));
        Ok((status, stdout, stderr))
    }

    /// Runs the task to its end (within its timeout), its input fed and
    /// its output captured, and checks its status. What it left running
    /// in its group is stopped.
    pub async fn output(mut self) -> Result<TaskOutput, TaskError> {
        let collected = match self.ctx.timeout {
            None => self.collect().await,
            Some(t) => match tokio::time::timeout(t, self.collect()).await {
                Ok(r) => r,
                Err(_) => Err(self.timed_out(t)),
            },
        };
        let (status, stdout, stderr) = match collected {
            Ok(c) => c,
            Err(e) => {
                self.stop().await;
                return Err(e);
            }
        };
        let stderr = tail_text(stderr);
        if !self.accepts(status) {
            return Err(self.failed_with(status, stderr));
        }
        Ok(TaskOutput {
            status,
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn alive(pid: i32) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// Waits (bounded) until no process of group `pgid` is left.
    async fn group_gone(pgid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: kill(2) with signal 0 on a group only checks it exists.
        while unsafe { libc::kill(-pgid, 0) } == 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    #[tokio::test]
    async fn true_succeeds_and_false_fails_with_its_status() {
        let out = Task::new("running true", "true").output().await.unwrap();
        assert!(out.status.success());
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
        let e = Task::new("checking something", "false")
            .output()
            .await
            .unwrap_err();
        let TaskError::Failed { status, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(status.code(), Some(1));
        assert_eq!(
            e.to_string(),
            "checking something: `false` failed (exit status: 1)"
        );
        // an accepted code is success
        let out = Task::new("comparing", "false")
            .ok_codes(&[1])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
    }

    #[tokio::test]
    async fn output_input_and_the_stderr_tail() {
        let out = Task::new("echoing", "sh")
            .args(["-c", "cat; printf 'note\\n' >&2"])
            .stdin(b"hello".to_vec())
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, "note");
        // without input, standard input is empty (not the terminal)
        let out = Task::new("reading nothing", "sh")
            .args(["-c", "wc -c"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout_text().trim(), "0");

        // 100 KiB of messages: the error keeps their end, bounded
        let e = Task::new("failing loudly", "sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise to fill the tail\" >&2; i=$((i+1)); done; \
                 printf 'the \\033[31mreal\\033[0m reason\\n' >&2; exit 3",
            ])
            .output()
            .await
            .unwrap_err();
        let TaskError::Failed { stderr, status, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(status.code(), Some(3));
        assert!(stderr.len() <= STDERR_TAIL, "{}", stderr.len());
        assert!(stderr.ends_with("reason"), "{stderr}");
        assert!(!stderr.contains("line 0 "), "the start is dropped");
        let text = e.to_string();
        assert!(
            text.starts_with("failing loudly: `sh -c 'i=0; while"),
            "{text}"
        );
        // the line cut by the tail is left out
        assert!(text.contains("failed (exit status: 3): line "), "{text}");
        // control characters from the child are shown, not sent
        assert!(text.ends_with("the \\e[31mreal\\e[0m reason"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package() {
        for (program, want) in [
            (
                "mdir",
                "reading the ESP: `mdir` not found (install the Debian package mtools)",
            ),
            (
                "/nonexistent/qemu-system-x86_64",
                "reading the ESP: `/nonexistent/qemu-system-x86_64` not found (install the Debian package qemu-system-x86)",
            ),
            (
                "kiln-no-such-tool",
                "reading the ESP: `kiln-no-such-tool` not found",
            ),
        ] {
            let e = Task::new("reading the ESP", program)
                .env("PATH", "/nonexistent")
                .output()
                .await
                .unwrap_err();
            assert!(e.is_not_found() && e.is_spawn(), "{e:?}");
            assert_eq!(e.to_string(), want);
            // the cause is the source, not repeated in the message
            let source = std::error::Error::source(&e).unwrap().to_string();
            assert!(!e.to_string().contains(&source), "{e}");
        }
        // a missing working folder is not a missing program
        let e = Task::new("running in a folder", "true")
            .current_dir("/nonexistent/dir")
            .output()
            .await
            .unwrap_err();
        assert!(matches!(e, TaskError::Spawn { .. }), "{e:?}");
        // a program that is not executable cannot start
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        let e = Task::new("running a file", &file)
            .output()
            .await
            .unwrap_err();
        assert!(matches!(e, TaskError::Spawn { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let started = Instant::now();
        let e = Task::new("waiting", "sh")
            .args([
                "-c",
                &format!("sleep 300 & echo $$ $! > {}; sleep 300", pids.display()),
            ])
            .timeout(Duration::from_millis(500))
            .output()
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(e, TaskError::Timeout { .. }) && e.is_limit(),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .ends_with("did not finish within 0.5 s; it was stopped"),
            "{e}"
        );
        let text = std::fs::read_to_string(&pids).unwrap();
        let ids: Vec<i32> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (shell, background) = (ids[0], ids[1]);
        assert!(group_gone(shell).await, "the group of {shell} survived");
        assert!(!alive(shell) && !alive(background));
    }

    #[tokio::test]
    async fn too_much_output_stops_the_task() {
        let e = Task::new("listing", "sh")
            .args(["-c", "while :; do echo yyyyyyyyyyyyyyyyyyyyyyy; done"])
            .stdout_limit(64 << 10)
            .output()
            .await
            .unwrap_err();
        assert!(
            matches!(e, TaskError::TooMuchOutput { limit, .. } if limit == 64 << 10),
            "{e:?}"
        );
        assert!(e.is_limit());
    }

    #[tokio::test]
    async fn what_it_leaves_running_does_not_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        let out = Task::new("starting a daemon", "sh")
            .args([
                "-c",
                &format!("sleep 300 & echo $! > {}; echo done", pid_file.display()),
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "done\n");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // stopped with the group, and reaped by init: gone within a moment
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "the background sleep survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn hidden_arguments_stay_out_of_messages() {
        let e = Task::new("notifying", "sh")
            .args(["-c", "exit 4", "token=s3cr3t"])
            .hide_args()
            .output()
            .await
            .unwrap_err();
        let text = e.to_string();
        assert_eq!(text, "notifying: `sh …` failed (exit status: 4)");
    }

    #[tokio::test]
    async fn a_spawned_task_is_stopped_when_dropped() {
        let mut running = Task::new("serving", "sh")
            .args(["-c", "sleep 300 & sleep 300"])
            .spawn()
            .unwrap();
        let pgid = running.id().unwrap() as i32;
        assert!(running.try_wait().unwrap().is_none());
        drop(running);
        assert!(group_gone(pgid).await, "the group of {pgid} survived");
    }

    #[tokio::test]
    async fn a_gentle_stop_signal_lets_the_trap_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let (ready, cleaned) = (dir.path().join("ready"), dir.path().join("cleaned"));
        let script = format!(
            "trap 'echo done > {}; exit 0' TERM; sleep 300 & touch {}; wait",
            cleaned.display(),
            ready.display()
        );
        let running = Task::new("cleaning up", "sh")
            .args(["-c", &script])
            .stop_signal(libc::SIGTERM)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the script did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pgid = running.id().unwrap() as i32;
        drop(running);
        assert!(group_gone(pgid).await, "the group of {pgid} survived");
        assert_eq!(std::fs::read_to_string(&cleaned).unwrap(), "done\n");
    }

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let t = Task::new("x", "debugfs").args(["-R", "cat /etc/it's", "/d/disk.raw?offset=512"]);
        assert_eq!(
            t.command_line(),
            r"debugfs -R 'cat /etc/it'\''s' '/d/disk.raw?offset=512'"
        );
        assert_eq!(
            Task::new("x", "qemu-img").arg("").command_line(),
            "qemu-img ''"
        );
    }

    /// Every program of the table is installed on this host (run
    /// scripts/setup-host.sh), and dpkg says it comes from the package the
    /// table names (or from one that package depends on, as python3's
    /// interpreter comes with python3-minimal).
    #[test]
    fn the_package_table_matches_dpkg() {
        let dpkg = |args: &[&str]| {
            let out = std::process::Command::new("dpkg-query")
                .args(args)
                .output()
                .expect("dpkg-query runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // `dpkg-query -S` lists the owners of the paths matching each pattern
        let patterns: Vec<String> = PACKAGES.iter().map(|(p, _)| format!("bin/{p}")).collect();
        let mut args = vec!["-S"];
        args.extend(patterns.iter().map(String::as_str));
        let listing = dpkg(&args);
        for (program, package) in PACKAGES {
            let owners: Vec<&str> = listing
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(_, path)| {
                    path.ends_with(&format!("/bin/{program}"))
                        || path.ends_with(&format!("/sbin/{program}"))
                })
                .flat_map(|(owners, _)| owners.split(", "))
                .collect();
            assert!(
                !owners.is_empty(),
                "no package owns {program}: install {package} (scripts/setup-host.sh)"
            );
            let depends = dpkg(&["-W", "-f", "${Pre-Depends}, ${Depends}", package]);
            let ok = owners.iter().any(|o| {
                o == package
                    || depends
                        .split([',', '|'])
                        .any(|d| d.split_whitespace().next() == Some(*o))
            });
            assert!(ok, "{program} comes from {owners:?}, not {package}");
            assert_eq!(package_of(OsStr::new(program)), Some(*package));
        }
    }
}
