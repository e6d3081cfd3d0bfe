//! File operations of [`SshTarget`], with the local target's semantics:
//! SFTP for everything SFTP can do exactly, and the guest's own tools (run as
//! root through [`SshTarget`]'s exec) where it cannot: a recursive delete
//! (`rm -rf`), an overwriting move (`mv -T`: SFTP v3's rename refuses to
//! replace), and a copy inside the guest (`cp`). Missing paths are checked
//! first, so "not found" is [`TargetError::is_not_found`] there too.
//!
//! One difference is inherent to SFTP v3: OpenSSH's server reports
//! "not a directory" as "no such file", so `stat` of `file/child` is `None`
//! here where the local target fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use russh_sftp::client::fs::File;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::session::Connection;
use super::sftp::{self, is_no_such_file};
use super::SshTarget;
use crate::target::{run_checked, DirEntry, FileKind, FileStat, Result, TargetError};

/// Buffer for streaming uploads and downloads.
const COPY_BUFFER: usize = 1 << 20;

const S_IFMT: u32 = 0o170000;

/// The kind encoded in a mode's type bits.
pub fn kind_of_mode(mode: u32) -> FileKind {
    match mode & S_IFMT {
        0o040000 => FileKind::Dir,
        0o100000 => FileKind::File,
        0o120000 => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn file_stat(a: &FileAttributes) -> FileStat {
    let mode = a.permissions.unwrap_or(0);
    FileStat {
        kind: kind_of_mode(mode),
        size: a.size.unwrap_or(0),
        mode: mode & 0o7777,
        uid: a.uid.unwrap_or(0),
        gid: a.gid.unwrap_or(0),
    }
}

fn not_found(op: &'static str, path: &str) -> TargetError {
    TargetError::io(
        op,
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
    )
}

/// Attributes that set only the permission bits.
fn mode_attrs(mode: u32) -> FileAttributes {
    FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    }
}

/// Opens `path` for writing (created and truncated), created with
/// `create_mode` if it does not exist.
async fn create(
    conn: &Connection,
    op: &'static str,
    path: &str,
    create_mode: Option<u32>,
) -> Result<File> {
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let attrs = create_mode.map_or_else(FileAttributes::empty, mode_attrs);
    conn.sftp()
        .await?
        .open_with_flags_and_attributes(path, flags, attrs)
        .await
        .map_err(|e| sftp::error(conn, op, path, e))
}

/// Copies everything from `from` to `to` and closes `to`.
async fn pump(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    op: &'static str,
    path: &str,
) -> Result<()> {
    let mut from = BufReader::with_capacity(COPY_BUFFER, from);
    tokio::io::copy_buf(&mut from, &mut to)
        .await
        .map_err(|e| TargetError::io(op, path, e))?;
    to.shutdown()
        .await
        .map_err(|e| TargetError::io(op, path, e))
}

/// Reads a whole file.
pub(crate) async fn read(conn: &Connection, path: &str) -> Result<Vec<u8>> {
    let mut f = conn
        .sftp()
        .await?
        .open(path)
        .await
        .map_err(|e| sftp::error(conn, "read", path, e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .await
        .map_err(|e| TargetError::io("read", path, e))?;
    Ok(data)
}

/// Writes a whole file; `mode` applies when it is created.
pub(crate) async fn write(
    conn: &Connection,
    path: &str,
    data: &[u8],
    mode: Option<u32>,
) -> Result<()> {
    let existed = lstat(conn, path).await?.is_some();
    let new_mode = mode.filter(|_| !existed);
    let f = create(conn, "write", path, new_mode).await?;
    pump(data, f, "write", path).await?;
    if let Some(mode) = new_mode {
        // created with `mode` less the umask: now exactly `mode`
        chmod(conn, path, mode).await?;
    }
    Ok(())
}

/// Appends to an existing file.
pub(crate) async fn append(conn: &Connection, path: &str, data: &[u8]) -> Result<()> {
    let f = conn
        .sftp()
        .await?
        .open_with_flags(path, OpenFlags::APPEND | OpenFlags::WRITE)
        .await
        .map_err(|e| sftp::error(conn, "open", path, e))?;
    pump(data, f, "append to", path).await
}

async fn lstat(conn: &Connection, path: &str) -> Result<Option<FileStat>> {
    stat(conn, path, false).await
}

/// Metadata; `None` when the path does not exist.
pub(crate) async fn stat(
    conn: &Connection,
    path: &str,
    follow_links: bool,
) -> Result<Option<FileStat>> {
    let sftp = conn.sftp().await?;
    let attrs = if follow_links {
        sftp.metadata(path).await
    } else {
        sftp.symlink_metadata(path).await
    };
    match attrs {
        Ok(a) => Ok(Some(file_stat(&a))),
        Err(e) if is_no_such_file(&e) => Ok(None),
        Err(e) => Err(sftp::error(conn, "stat", path, e)),
    }
}

/// Lists a directory, sorted by name, kinds without following links.
pub(crate) async fn list_dir(conn: &Connection, path: &str) -> Result<Vec<DirEntry>> {
    let entries = conn
        .sftp()
        .await?
        .read_dir(path)
        .await
        .map_err(|e| sftp::error(conn, "list", path, e))?;
    let mut out: Vec<DirEntry> = entries
        .map(|e| DirEntry {
            name: e.file_name(),
            kind: kind_of_mode(e.metadata().permissions.unwrap_or(0)),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `path` and each of its ancestors, shortest first (`a/b/c` gives `a`,
/// `a/b`, `a/b/c`; `/x/y` gives `/x`, `/x/y`).
pub fn ancestors_and_self(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    if path.starts_with('/') {
        cur.push('/');
    }
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !cur.is_empty() && !cur.ends_with('/') {
            cur.push('/');
        }
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

/// Creates a directory and its parents.
pub(crate) async fn create_dir_all(conn: &Connection, path: &str) -> Result<()> {
    let sftp = conn.sftp().await?;
    for dir in ancestors_and_self(path) {
        match stat(conn, &dir, true).await? {
            Some(s) if s.kind == FileKind::Dir => continue,
            Some(_) => {
                return Err(TargetError::io(
                    "create folder",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{dir} exists and is not a folder"),
                    ),
                ))
            }
            None => {}
        }
        if let Err(e) = sftp.create_dir(dir.as_str()).await {
            // someone else may have made it meanwhile
            if stat(conn, &dir, true).await?.map(|s| s.kind) != Some(FileKind::Dir) {
                return Err(sftp::error(conn, "create folder", &dir, e));
            }
        }
    }
    Ok(())
}

/// Removes a file or symlink.
pub(crate) async fn remove_file(conn: &Connection, path: &str) -> Result<()> {
    conn.sftp()
        .await?
        .remove_file(path)
        .await
        .map_err(|e| sftp::error(conn, "delete", path, e))
}

/// Removes a directory; `recursive` removes its contents too (a symlink is
/// removed itself, never followed, as `std::fs::remove_dir_all` does).
pub(crate) async fn remove_dir(
    t: &SshTarget,
    conn: &Connection,
    path: &str,
    recursive: bool,
) -> Result<()> {
    const OP: &str = "delete folder";
    if !recursive {
        return conn
            .sftp()
            .await?
            .remove_dir(path)
            .await
            .map_err(|e| sftp::error(conn, OP, path, e));
    }
    match lstat(conn, path).await?.map(|s| s.kind) {
        None => Err(not_found(OP, path)),
        Some(FileKind::Symlink) => remove_file(conn, path).await,
        Some(FileKind::Dir) => run_checked(t, OP, path, "rm", &words(&["-rf", "--", path])).await,
        Some(_) => Err(TargetError::io(
            OP,
            path,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a folder"),
        )),
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// Renames `from` to `to`, replacing `to` as rename(2) does.
pub(crate) async fn rename(t: &SshTarget, conn: &Connection, from: &str, to: &str) -> Result<()> {
    let what = format!("{from} to {to}");
    if lstat(conn, from).await?.is_none() {
        return Err(not_found("move", &what));
    }
    run_checked(t, "move", &what, "mv", &words(&["-T", "--", from, to])).await
}

/// Copies a regular file inside the guest, keeping its permission bits
/// (not its owner or times), as `std::fs::copy` does.
pub(crate) async fn copy_file(
    t: &SshTarget,
    conn: &Connection,
    from: &str,
    to: &str,
) -> Result<()> {
    let what = format!("{from} to {to}");
    if stat(conn, from, true).await?.is_none() {
        return Err(not_found("copy", &what));
    }
    let args = words(&["-T", "--preserve=mode", "--", from, to]);
    run_checked(t, "copy", &what, "cp", &args).await
}

/// Creates a symbolic link at `link` pointing to `target`.
pub(crate) async fn symlink(conn: &Connection, target: &str, link: &str) -> Result<()> {
    // OpenSSH's sftp-server takes the link's target first and the link's
    // path second, the reverse of the SFTP draft that russh-sftp follows
    conn.sftp()
        .await?
        .symlink(target, link)
        .await
        .map_err(|e| sftp::error(conn, "create symlink", link, e))
}

/// Reads a symbolic link.
pub(crate) async fn read_link(conn: &Connection, path: &str) -> Result<String> {
    conn.sftp()
        .await?
        .read_link(path)
        .await
        .map_err(|e| sftp::error(conn, "read link", path, e))
}

/// Sets permission bits.
pub(crate) async fn chmod(conn: &Connection, path: &str, mode: u32) -> Result<()> {
    conn.sftp()
        .await?
        .set_metadata(path, mode_attrs(mode))
        .await
        .map_err(|e| sftp::error(conn, "set permissions of", path, e))
}

/// Copies a local file into the guest; the copy gets the local file's
/// permission bits.
pub(crate) async fn upload(conn: &Connection, local: &Path, path: &str) -> Result<()> {
    let local_name = local.display().to_string();
    let src = tokio::fs::File::open(local)
        .await
        .map_err(|e| TargetError::io("copy", &local_name, e))?;
    let mode = src
        .metadata()
        .await
        .map_err(|e| TargetError::io("copy", &local_name, e))?
        .permissions()
        .mode()
        & 0o7777;
    let dst = create(conn, "copy", path, Some(mode)).await?;
    pump(src, dst, "copy", path).await?;
    chmod(conn, path, mode).await
}

/// Copies a file of the guest to this host, as a private copy (see
/// [`crate::target::Target::download`]: the guest's mode bits are not
/// carried over).
pub(crate) async fn download(conn: &Connection, path: &str, local: &Path) -> Result<()> {
    let local_name = local.display().to_string();
    let sftp = conn.sftp().await?;
    let src = sftp
        .open(path)
        .await
        .map_err(|e| sftp::error(conn, "copy", path, e))?;
    let dst = crate::target::open_host_copy(local)
        .await
        .map_err(|e| TargetError::io("copy", &local_name, e))?;
    pump(src, dst, "copy", path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_mode_bits() {
        assert_eq!(kind_of_mode(0o040755), FileKind::Dir);
        assert_eq!(kind_of_mode(0o100644), FileKind::File);
        // a symlink's type bits include the regular-file bit
        assert_eq!(kind_of_mode(0o120777), FileKind::Symlink);
        assert_eq!(kind_of_mode(0o020666), FileKind::Other);
        assert_eq!(kind_of_mode(0o010644), FileKind::Other);
        let s = file_stat(&FileAttributes {
            permissions: Some(0o104755),
            size: Some(9),
            uid: Some(1),
            gid: Some(2),
            ..FileAttributes::empty()
        });
        assert_eq!(
            (s.kind, s.mode, s.size, s.uid, s.gid),
            (FileKind::File, 0o4755, 9, 1, 2)
        );
    }

    #[test]
    fn ancestors() {
        assert_eq!(ancestors_and_self("/a/b/c"), ["/a", "/a/b", "/a/b/c"]);
        assert_eq!(ancestors_and_self("a//b/"), ["a", "a/b"]);
        assert_eq!(ancestors_and_self("/"), Vec::<String>::new());
    }
}
