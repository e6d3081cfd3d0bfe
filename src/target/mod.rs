//! Where actions run. The engine never touches files or processes itself:
//! it asks a [`Target`], which is this host ([`local::LocalTarget`]) or a
//! guest over SSH ([`ssh::SshTarget`]).

pub mod local;
pub mod ssh;

use std::path::Path;

use async_trait::async_trait;

/// Errors from a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On which path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The connection to the target failed.
    #[error("connection to {target} failed: {message}")]
    Connection {
        /// The target's description.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The target cannot do this.
    #[error("{0}")]
    Unsupported(String),
}

impl TargetError {
    /// Builds an [`TargetError::Io`].
    pub fn io(op: &'static str, path: impl Into<String>, source: std::io::Error) -> Self {
        TargetError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the error means the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TargetError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Result alias for target operations.
pub type Result<T> = std::result::Result<T, TargetError>;

/// How long the output of a process that has exited is still read, on
/// every target: what it left running in the background may hold its
/// output open, and must not hold the step (`sleep 600 &`). After that the
/// rest of its process group is killed.
pub const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives a process's output as it is produced.
pub type OutputSink<'a> = &'a (dyn Fn(Stream, &[u8]) + Send + Sync);

/// A process to run on the target.
pub struct ExecRequest<'a> {
    /// Program to run (looked up in PATH).
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [String],
    /// Extra environment variables.
    pub env: &'a [(String, String)],
    /// Working directory, if not the target's default.
    pub cwd: Option<&'a str>,
    /// Called with each chunk of output.
    pub on_output: Option<OutputSink<'a>>,
}

/// A finished process. Its output went to [`ExecRequest::on_output`] as it
/// came; only its last bytes are kept here ([`crate::util::tail`]), so a
/// process printing gigabytes costs no memory.
#[derive(Clone, Debug)]
pub struct ExecOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// The last [`STDOUT_TAIL`](crate::util::tail::STDOUT_TAIL) bytes written to standard output.
    pub stdout: Vec<u8>,
    /// How many bytes it wrote to standard output in all.
    pub stdout_total: u64,
    /// The last [`STDERR_TAIL`](crate::util::tail::STDERR_TAIL) bytes written to standard error.
    pub stderr: Vec<u8>,
}

/// The standard output and error of a running process, as kept in memory.
#[derive(Debug)]
pub struct OutputTails {
    /// Standard output.
    pub stdout: crate::util::tail::Tail,
    /// Standard error.
    pub stderr: crate::util::tail::Tail,
}

impl Default for OutputTails {
    fn default() -> Self {
        OutputTails {
            stdout: crate::util::tail::Tail::new(crate::util::tail::STDOUT_TAIL),
            stderr: crate::util::tail::Tail::new(crate::util::tail::STDERR_TAIL),
        }
    }
}

impl OutputTails {
    /// Keeps a chunk of `stream`.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        match stream {
            Stream::Stdout => self.stdout.push(bytes),
            Stream::Stderr => self.stderr.push(bytes),
        }
    }

    /// The output of a process that ended with `code`.
    pub fn finish(self, code: Option<i32>) -> ExecOutput {
        ExecOutput {
            code,
            stdout_total: self.stdout.total(),
            stdout: self.stdout.into_bytes(),
            stderr: self.stderr.into_bytes(),
        }
    }
}

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only when not following links).
    Symlink,
    /// Anything else.
    Other,
}

/// File metadata.
#[derive(Clone, Debug)]
pub struct FileStat {
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Kind (links not followed).
    pub kind: FileKind,
}

/// What happened to a reboot request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootOutcome {
    /// The target rebooted and is reachable again.
    Rebooted,
    /// The target cannot reboot now; the caller must save state and stop.
    Deferred,
}

/// A place where actions run.
#[async_trait]
pub trait Target: Send + Sync {
    /// A short description for logs, e.g. `localhost`.
    fn describe(&self) -> String;
    /// Runs a process to completion: until it exits, and its output is read
    /// to the end or for [`OUTPUT_DRAIN`] after it exited. Dropping the
    /// future kills the process and everything it started.
    async fn exec(&self, req: ExecRequest<'_>) -> Result<ExecOutput>;
    /// Runs a program with arguments and captures its output (no extra
    /// environment, the target's default folder, nothing streamed).
    async fn capture(&self, program: &str, args: &[String]) -> Result<ExecOutput> {
        self.exec(ExecRequest {
            program,
            args,
            env: &[],
            cwd: None,
            on_output: None,
        })
        .await
    }
    /// Reads a whole file.
    async fn read(&self, path: &str) -> Result<Vec<u8>>;
    /// Writes a whole file, creating or truncating it; `mode` applies when it is created.
    async fn write(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<()>;
    /// Appends to an existing file.
    async fn append(&self, path: &str, data: &[u8]) -> Result<()>;
    /// Metadata; `None` when the path does not exist.
    async fn stat(&self, path: &str, follow_links: bool) -> Result<Option<FileStat>>;
    /// Lists a directory.
    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>>;
    /// Creates a directory and its parents.
    async fn create_dir_all(&self, path: &str) -> Result<()>;
    /// Removes a file or symlink.
    async fn remove_file(&self, path: &str) -> Result<()>;
    /// Removes a directory; `recursive` removes its contents too.
    async fn remove_dir(&self, path: &str, recursive: bool) -> Result<()>;
    /// Renames (moves) a path on the same file system.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Copies a regular file, keeping its permissions.
    async fn copy_file(&self, from: &str, to: &str) -> Result<()>;
    /// Creates a symbolic link at `link` pointing to `target`.
    async fn symlink(&self, target: &str, link: &str) -> Result<()>;
    /// Reads a symbolic link.
    async fn read_link(&self, path: &str) -> Result<String>;
    /// Sets permission bits.
    async fn chmod(&self, path: &str, mode: u32) -> Result<()>;
    /// Sets owner and group, by name or number; `recursive` for folders.
    /// By default with the target's own `chown` command (see
    /// [`chown_with_command`]), so names resolve in the target's user database.
    async fn chown(
        &self,
        path: &str,
        owner: &str,
        group: Option<&str>,
        recursive: bool,
    ) -> Result<()> {
        chown_with_command(self, path, owner, group, recursive).await
    }
    /// Copies a file from this host into the target.
    async fn upload(&self, local: &Path, path: &str) -> Result<()>;
    /// Copies a file from the target to this host. The host copy is
    /// private (mode 0600): the target's permission bits, setuid and setgid
    /// included, are never carried over, since a target's files are not
    /// trusted.
    async fn download(&self, path: &str, local: &Path) -> Result<()>;
    /// Reboots the target after `delay_seconds`.
    async fn reboot(&self, delay_seconds: u64) -> Result<RebootOutcome>;
}

/// Mode of the host copy [`Target::download`] makes.
pub const HOST_COPY_MODE: u32 = 0o600;

/// Opens (creating or truncating) `local` for a [`Target::download`]: mode
/// [`HOST_COPY_MODE`] whether or not it existed, so the copy is never more
/// open than its owner, and never setuid.
pub(crate) async fn open_host_copy(local: &Path) -> std::io::Result<tokio::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(HOST_COPY_MODE)
        .open(local)
        .await?;
    f.set_permissions(std::fs::Permissions::from_mode(HOST_COPY_MODE))
        .await?;
    Ok(f)
}

/// Runs `program` with `args` on `target`; a non-zero exit becomes a
/// [`TargetError::Io`] for `op` on `path` carrying the command's standard
/// error.
pub async fn run_checked<T: Target + ?Sized>(
    target: &T,
    op: &'static str,
    path: &str,
    program: &str,
    args: &[String],
) -> Result<()> {
    let out = target.capture(program, args).await?;
    if out.code == Some(0) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let message = if stderr.is_empty() {
        match out.code {
            Some(code) => format!("{program} exited with status {code}"),
            None => format!("{program} was killed by a signal"),
        }
    } else {
        stderr
    };
    Err(TargetError::io(op, path, std::io::Error::other(message)))
}

/// Sets owner and group (names or numbers) with the target's own `chown`,
/// so names resolve against the target's user database.
pub async fn chown_with_command<T: Target + ?Sized>(
    target: &T,
    path: &str,
    owner: &str,
    group: Option<&str>,
    recursive: bool,
) -> Result<()> {
    let spec = match group {
        Some(g) => format!("{owner}:{g}"),
        None => owner.to_string(),
    };
    let mut args = Vec::new();
    if recursive {
        args.push("-R".to_string());
    }
    args.extend(["--".to_string(), spec, path.to_string()]);
    run_checked(target, "change owner of", path, "chown", &args).await
}
