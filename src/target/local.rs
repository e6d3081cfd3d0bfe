//! The local target: this host. Used by `kiln toe run`, and by tests of the
//! engine that need no VM.
//!
//! A process it runs leads its own process group and never outlives kiln:
//! it gets SIGKILL when kiln dies ([`crate::util::process::supervise`]), and a
//! watchdog ([`Reaper`]) kills the rest of its group then. The process ends
//! when it exits, not when everything it started has closed its output:
//! after its exit the output is read for [`OUTPUT_DRAIN`] at most, then
//! whatever is left of its group (`sleep 600 &`) is killed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    DirEntry, ExecOutput, ExecRequest, FileKind, FileStat, OutputSink, OutputTails, RebootOutcome,
    Result, Stream, Target, TargetError, OUTPUT_DRAIN,
};
use crate::util::process::{supervise, GroupGuard};
use crate::util::reaper::Reaper;

/// Runs actions on this host.
#[derive(Clone, Debug, Default)]
pub struct LocalTarget;

/// Streams one of a child's outputs to `sink`, keeping its tail.
async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    stream: Stream,
    sink: Option<OutputSink<'_>>,
    tails: &std::sync::Mutex<OutputTails>,
) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(s) = sink {
            s(stream, &buf[..n]);
        }
        tails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream, &buf[..n]);
    }
}

fn kind_of(ft: std::fs::FileType) -> FileKind {
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn describe(&self) -> String {
        "localhost".into()
    }

    async fn exec(&self, req: ExecRequest<'_>) -> Result<ExecOutput> {
        let mut cmd = tokio::process::Command::new(req.program);
        cmd.args(req.args)
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        supervise(&mut cmd, libc::SIGKILL);
        if let Some(dir) = req.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|source| TargetError::Spawn {
            program: req.program.to_string(),
            source,
        })?;
        // Whatever way this ends (done, error, dropped future, kiln killed),
        // the group goes with it.
        let _killer = GroupGuard::new(child.id(), libc::SIGKILL);
        let _reaper = match child.id().map(Reaper::watch).transpose() {
            Ok(r) => r,
            Err(source) => {
                return Err(TargetError::Spawn {
                    program: "/bin/sh (kiln's process watchdog)".into(),
                    source,
                })
            }
        };
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let tails = std::sync::Mutex::new(OutputTails::default());
        let read_failed = |e| TargetError::io("read output of", req.program, e);
        let wait_failed = |e| TargetError::io("wait for", req.program, e);
        let status = {
            let pumps = async {
                tokio::try_join!(
                    pump(out, Stream::Stdout, req.on_output, &tails),
                    pump(err, Stream::Stderr, req.on_output, &tails)
                )
            };
            tokio::pin!(pumps);
            tokio::select! {
                read = &mut pumps => {
                    read.map_err(read_failed)?;
                    child.wait().await.map_err(wait_failed)?
                }
                status = child.wait() => {
                    // the step's shell ended: what it left behind may hold
                    // the pipes open; read a little more, then let go
                    let status = status.map_err(wait_failed)?;
                    if let Ok(read) = tokio::time::timeout(OUTPUT_DRAIN, &mut pumps).await {
                        read.map_err(read_failed)?;
                    }
                    status
                }
            }
        };
        let tails = tails.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(tails.finish(status.code()))
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>> {
        tokio::fs::read(path)
            .await
            .map_err(|e| TargetError::io("read", path, e))
    }

    async fn write(&self, path: &str, data: &[u8], mode: Option<u32>) -> Result<()> {
        let existed = tokio::fs::symlink_metadata(path).await.is_ok();
        tokio::fs::write(path, data)
            .await
            .map_err(|e| TargetError::io("write", path, e))?;
        if let (Some(mode), false) = (mode, existed) {
            self.chmod(path, mode).await?;
        }
        Ok(())
    }

    async fn append(&self, path: &str, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .await
            .map_err(|e| TargetError::io("open", path, e))?;
        f.write_all(data)
            .await
            .map_err(|e| TargetError::io("append to", path, e))?;
        f.flush()
            .await
            .map_err(|e| TargetError::io("append to", path, e))
    }

    async fn stat(&self, path: &str, follow_links: bool) -> Result<Option<FileStat>> {
        let md = if follow_links {
            tokio::fs::metadata(path).await
        } else {
            tokio::fs::symlink_metadata(path).await
        };
        match md {
            Ok(m) => Ok(Some(FileStat {
                kind: kind_of(m.file_type()),
                size: m.len(),
                mode: m.permissions().mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TargetError::io("stat", path, e)),
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        let mut rd = tokio::fs::read_dir(path)
            .await
            .map_err(|e| TargetError::io("list", path, e))?;
        let mut out = Vec::new();
        while let Some(e) = rd
            .next_entry()
            .await
            .map_err(|e| TargetError::io("list", path, e))?
        {
            let ft = e
                .file_type()
                .await
                .map_err(|err| TargetError::io("stat", e.path().display().to_string(), err))?;
            out.push(DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                kind: kind_of(ft),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create_dir_all(&self, path: &str) -> Result<()> {
        tokio::fs::create_dir_all(path)
            .await
            .map_err(|e| TargetError::io("create folder", path, e))
    }

    async fn remove_file(&self, path: &str) -> Result<()> {
        tokio::fs::remove_file(path)
            .await
            .map_err(|e| TargetError::io("delete", path, e))
    }

    async fn remove_dir(&self, path: &str, recursive: bool) -> Result<()> {
        let r = if recursive {
            tokio::fs::remove_dir_all(path).await
        } else {
            tokio::fs::remove_dir(path).await
        };
        r.map_err(|e| TargetError::io("delete folder", path, e))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        tokio::fs::rename(from, to)
            .await
            .map_err(|e| TargetError::io("move", format!("{from} to {to}"), e))
    }

    async fn copy_file(&self, from: &str, to: &str) -> Result<()> {
        tokio::fs::copy(from, to)
            .await
            .map(|_| ())
            .map_err(|e| TargetError::io("copy", format!("{from} to {to}"), e))
    }

    async fn symlink(&self, target: &str, link: &str) -> Result<()> {
        tokio::fs::symlink(target, link)
            .await
            .map_err(|e| TargetError::io("create symlink", link, e))
    }

    async fn read_link(&self, path: &str) -> Result<String> {
        tokio::fs::read_link(path)
            .await
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| TargetError::io("read link", path, e))
    }

    async fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| TargetError::io("set permissions of", path, e))
    }

    async fn upload(&self, local: &Path, path: &str) -> Result<()> {
        tokio::fs::copy(local, path)
            .await
            .map(|_| ())
            .map_err(|e| TargetError::io("copy", path, e))
    }

    async fn download(&self, path: &str, local: &Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let copy = |e| TargetError::io("copy", path, e);
        let mut src = tokio::fs::File::open(path).await.map_err(copy)?;
        let mut dst = super::open_host_copy(local).await.map_err(copy)?;
        tokio::io::copy(&mut src, &mut dst).await.map_err(copy)?;
        dst.flush().await.map_err(copy)
    }

    async fn reboot(&self, _delay_seconds: u64) -> Result<RebootOutcome> {
        Ok(RebootOutcome::Deferred)
    }
}
