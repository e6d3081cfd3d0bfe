//! File-system actions: CreateFile, AppendFile, CopyFile, CopyFolder,
//! MoveFile, MoveFolder, DeleteFile, DeleteFolder, CreateFolder,
//! CreateSymlink, ListFiles, ReadFile, SetFileEncoding, SetFileOwner,
//! SetFolderOwner, SetFilePermissions, SetFolderPermissions.
//!
//! Everything goes through the [`Target`](crate::target::Target), so these
//! work the same on this host and on a guest. The rules (AWSTOE's):
//!
//! - `*` is the only wildcard. It is allowed in the last path segment of a
//!   copy or move `source` and of DeleteFile's `path`, and it also matches
//!   names that start with `.`.
//! - A destination ending in `/` (or `\`) is a folder: the source goes into it
//!   under its own name. A wildcard that matches several sources needs one.
//!   Missing destination folders are created.
//! - `overwrite` defaults to true; `false` makes an existing target an error.
//! - A missing source is always an error.

use crate::target::{FileKind, FileStat, TargetError};

use super::encoding::Encoding;
use super::paths;
use super::{ActionContext, ActionError, ActionOutcome, Inputs};

/// Runs one input map of a file-system action.
pub async fn run(
    action: &str,
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    let fs = Fs { action, ctx };
    match action {
        "CreateFile" => create_file(&fs, inputs).await,
        "AppendFile" => append_file(&fs, inputs).await,
        "CopyFile" => copy_or_move(&fs, inputs, false, false).await,
        "CopyFolder" => copy_or_move(&fs, inputs, true, false).await,
        "MoveFile" => copy_or_move(&fs, inputs, false, true).await,
        "MoveFolder" => copy_or_move(&fs, inputs, true, true).await,
        "DeleteFile" => delete_file(&fs, inputs).await,
        "DeleteFolder" => delete_folder(&fs, inputs).await,
        "CreateFolder" => create_folder(&fs, inputs).await,
        "CreateSymlink" => create_symlink(&fs, inputs).await,
        "ListFiles" => list_files(&fs, inputs).await,
        "ReadFile" => read_file(&fs, inputs).await,
        "SetFileEncoding" => set_file_encoding(&fs, inputs).await,
        "SetFileOwner" => set_owner(&fs, inputs, false).await,
        "SetFolderOwner" => set_owner(&fs, inputs, true).await,
        "SetFilePermissions" => set_permissions(&fs, inputs, false).await,
        "SetFolderPermissions" => set_permissions(&fs, inputs, true).await,
        _ => Err(fs.err(format!("{action} is not a file-system action"))),
    }
}

type Outcome = Result<ActionOutcome, ActionError>;

/// An action's view of the target: every call names the action in its errors.
struct Fs<'a, 'b> {
    action: &'a str,
    ctx: &'a ActionContext<'b>,
}

impl Fs<'_, '_> {
    /// A failure, prefixed with the action's name.
    fn err(&self, message: impl std::fmt::Display) -> ActionError {
        ActionError::Failed(format!("{}: {message}", self.action))
    }

    fn fail<T>(&self, message: impl std::fmt::Display) -> Result<T, ActionError> {
        Err(self.err(message))
    }

    /// A target error; I/O errors get the action's name, a lost connection
    /// stays a target error.
    fn target_err(&self, e: TargetError) -> ActionError {
        match e {
            TargetError::Connection { .. } => ActionError::Target(e),
            other => self.err(other),
        }
    }

    fn log(&self, line: impl std::fmt::Display) {
        self.ctx.log(&format!("{}: {line}", self.action));
    }

    async fn stat(&self, path: &str, follow_links: bool) -> Result<Option<FileStat>, ActionError> {
        self.ctx
            .target
            .stat(path, follow_links)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn kind(&self, path: &str, follow_links: bool) -> Result<Option<FileKind>, ActionError> {
        Ok(self.stat(path, follow_links).await?.map(|s| s.kind))
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<crate::target::DirEntry>, ActionError> {
        self.ctx
            .target
            .list_dir(path)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn create_dir_all(&self, path: &str) -> Result<(), ActionError> {
        self.ctx
            .target
            .create_dir_all(path)
            .await
            .map_err(|e| self.target_err(e))
    }

    /// Creates the folder that will hold `path`, if it has one.
    async fn create_parent(&self, path: &str) -> Result<(), ActionError> {
        match paths::parent(path) {
            Some(dir) => self.create_dir_all(dir).await,
            None => Ok(()),
        }
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>, ActionError> {
        self.ctx
            .target
            .read(path)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), ActionError> {
        self.ctx
            .target
            .write(path, data, None)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn remove_file(&self, path: &str) -> Result<(), ActionError> {
        self.ctx
            .target
            .remove_file(path)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn remove_dir(&self, path: &str, recursive: bool) -> Result<(), ActionError> {
        self.ctx
            .target
            .remove_dir(path, recursive)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn copy_file(&self, from: &str, to: &str) -> Result<(), ActionError> {
        self.ctx
            .target
            .copy_file(from, to)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn symlink(&self, target: &str, link: &str) -> Result<(), ActionError> {
        self.ctx
            .target
            .symlink(target, link)
            .await
            .map_err(|e| self.target_err(e))
    }

    async fn chmod(&self, path: &str, mode: u32) -> Result<(), ActionError> {
        self.ctx
            .target
            .chmod(path, mode)
            .await
            .map_err(|e| self.target_err(e))
    }

    /// Renames; when that crosses file systems, copies then deletes.
    async fn rename(&self, from: &str, to: &str, folder: bool) -> Result<(), ActionError> {
        match self.ctx.target.rename(from, to).await {
            Ok(()) => Ok(()),
            Err(e) if is_cross_device(&e) => {
                if folder {
                    self.copy_tree(from, to).await?;
                    self.remove_dir(from, true).await
                } else {
                    self.copy_file(from, to).await?;
                    self.remove_file(from).await
                }
            }
            Err(e) => Err(self.target_err(e)),
        }
    }

    /// Sets owner and/or group; an absent owner keeps the current one, an
    /// absent group becomes the owner's login group.
    async fn chown(
        &self,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
        recursive: bool,
    ) -> Result<(), ActionError> {
        if owner.is_none() && group.is_none() {
            return Ok(());
        }
        let current = match self.stat(path, true).await? {
            Some(st) => st,
            None => return self.fail(format!("{path} does not exist")),
        };
        let owner = owner.map_or_else(|| current.uid.to_string(), str::to_string);
        // the default group is the owner's login group, else the current one
        let group = match group {
            Some(g) => g.to_string(),
            None => match self.login_group(&owner).await? {
                Some(g) => g,
                None => current.gid.to_string(),
            },
        };
        self.ctx
            .target
            .chown(path, &owner, Some(&group), recursive)
            .await
            .map_err(|e| self.target_err(e))
    }

    /// The login group id of a user (by name or number), if it has one.
    async fn login_group(&self, user: &str) -> Result<Option<String>, ActionError> {
        let args = ["-g".to_string(), "--".to_string(), user.to_string()];
        let out = self
            .ctx
            .target
            .capture("id", &args)
            .await
            .map_err(|e| self.target_err(e))?;
        let gid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(
            (out.code == Some(0) && !gid.is_empty() && gid.bytes().all(|b| b.is_ascii_digit()))
                .then_some(gid),
        )
    }

    /// Every entry below `root`, as paths relative to it, each folder before
    /// its contents. Symlinks are listed, never followed.
    async fn walk(&self, root: &str) -> Result<Vec<(String, FileKind)>, ActionError> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(rel) = pending.pop() {
            let dir = if rel.is_empty() {
                root.to_string()
            } else {
                paths::join(root, &rel)
            };
            for entry in self.list_dir(&dir).await? {
                let path = if rel.is_empty() {
                    entry.name
                } else {
                    format!("{rel}/{}", entry.name)
                };
                if entry.kind == FileKind::Dir {
                    pending.push(path.clone());
                }
                out.push((path, entry.kind));
            }
        }
        Ok(out)
    }

    /// Copies the contents of folder `from` into folder `to` (created if
    /// needed), replacing files of the same name. Symlinks are copied as
    /// links; folder permissions are kept.
    async fn copy_tree(&self, from: &str, to: &str) -> Result<(), ActionError> {
        let entries = self.walk(from).await?;
        self.create_dir_all(to).await?;
        let mut folders = vec![(from.to_string(), to.to_string())];
        for (rel, kind) in entries {
            let src = paths::join(from, &rel);
            let dst = paths::join(to, &rel);
            let existing = self.kind(&dst, false).await?;
            match kind {
                FileKind::Dir => {
                    match existing {
                        Some(FileKind::Dir) => {}
                        Some(_) => {
                            return self.fail(format!(
                                "cannot replace {dst} with the folder {src}: it exists and is not a folder"
                            ))
                        }
                        None => self.create_dir_all(&dst).await?,
                    }
                    folders.push((src, dst));
                }
                FileKind::File | FileKind::Symlink => {
                    match existing {
                        Some(FileKind::Dir) => {
                            return self.fail(format!(
                                "cannot replace the folder {dst} with the file {src}"
                            ))
                        }
                        // never write through a link or into a special file
                        Some(FileKind::Symlink | FileKind::Other) => self.remove_file(&dst).await?,
                        Some(FileKind::File) if kind == FileKind::Symlink => {
                            self.remove_file(&dst).await?
                        }
                        _ => {}
                    }
                    if kind == FileKind::File {
                        self.copy_file(&src, &dst).await?;
                    } else {
                        let link = self
                            .ctx
                            .target
                            .read_link(&src)
                            .await
                            .map_err(|e| self.target_err(e))?;
                        self.symlink(&link, &dst).await?;
                    }
                }
                FileKind::Other => self.log(format!("skipped {src}: not a file, folder or link")),
            }
        }
        // deepest first, so a read-only folder is made so after its contents
        for (src, dst) in folders.into_iter().rev() {
            if let Some(st) = self.stat(&src, true).await? {
                self.chmod(&dst, st.mode).await?;
            }
        }
        Ok(())
    }
}

fn is_cross_device(e: &TargetError) -> bool {
    matches!(e, TargetError::Io { source, .. } if source.raw_os_error() == Some(libc::EXDEV))
}

/// A string input; empty or blank counts as absent.
fn opt_str<'a>(inputs: &'a Inputs, key: &str) -> Option<&'a str> {
    inputs.str(key).filter(|s| !s.trim().is_empty())
}

/// A required path input, which may not be blank.
fn required_path<'a>(
    fs: &Fs<'_, '_>,
    inputs: &'a Inputs,
    key: &str,
) -> Result<&'a str, ActionError> {
    match inputs.str(key) {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => fs.fail(format!("input `{key}` is empty")),
        None => fs.fail(format!("input `{key}` is missing")),
    }
}

fn encoding(fs: &Fs<'_, '_>, inputs: &Inputs) -> Result<Encoding, ActionError> {
    let name = opt_str(inputs, "encoding").unwrap_or("utf8");
    Encoding::parse(name).ok_or_else(|| {
        fs.err(format!(
            "unknown encoding `{name}` (use utf8, utf16, utf16-BE, utf32 or utf32-BE)"
        ))
    })
}

/// Parses a permissions string such as `0755`, `755` or `4755` as octal.
fn parse_mode(raw: &str) -> Result<u32, String> {
    let text = raw.trim();
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let bad = || format!("permissions `{raw}` must be an octal mode such as 0755");
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(bad()),
    }
}

fn permissions(fs: &Fs<'_, '_>, inputs: &Inputs) -> Result<Option<u32>, ActionError> {
    opt_str(inputs, "permissions")
        .map(|raw| parse_mode(raw).map_err(|m| fs.err(m)))
        .transpose()
}

fn done() -> Outcome {
    Ok(ActionOutcome::default())
}

fn output(key: &str, value: String) -> Outcome {
    Ok(ActionOutcome {
        outputs: [(key.to_string(), value)].into(),
        reboot: None,
    })
}

async fn create_file(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let content = inputs.str("content").unwrap_or("");
    let enc = encoding(fs, inputs)?;
    let mode = permissions(fs, inputs)?;
    let overwrite = inputs.bool("overwrite", true)?;
    if paths::ends_with_separator(path) {
        return fs.fail(format!(
            "path {path} ends with a separator: it must name a file"
        ));
    }
    match fs.kind(path, true).await? {
        Some(FileKind::Dir) => return fs.fail(format!("{path} is a folder")),
        Some(_) if !overwrite => {
            return fs.fail(format!("file {path} already exists and overwrite is false"))
        }
        Some(_) => {}
        None => fs.create_parent(path).await?,
    }
    fs.write(path, &enc.encode(content)).await?;
    if let Some(mode) = mode {
        fs.chmod(path, mode).await?;
    }
    fs.chown(
        path,
        opt_str(inputs, "owner"),
        opt_str(inputs, "group"),
        false,
    )
    .await?;
    fs.log(format!("created {path}"));
    done()
}

async fn append_file(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let content = inputs.str("content").unwrap_or("");
    let enc = encoding(fs, inputs)?;
    match fs.kind(path, true).await? {
        None => return fs.fail(format!("file {path} does not exist")),
        Some(FileKind::Dir) => return fs.fail(format!("{path} is a folder, not a file")),
        Some(_) => {}
    }
    fs.ctx
        .target
        .append(path, &enc.encode(content))
        .await
        .map_err(|e| fs.target_err(e))?;
    fs.log(format!("appended to {path}"));
    done()
}

async fn create_folder(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let mode = permissions(fs, inputs)?;
    let overwrite = inputs.bool("overwrite", true)?;
    match fs.kind(path, true).await? {
        Some(FileKind::Dir) if !overwrite => {
            return fs.fail(format!(
                "folder {path} already exists and overwrite is false"
            ))
        }
        Some(FileKind::Dir) => {}
        Some(_) => return fs.fail(format!("{path} exists and is not a folder")),
        None => fs.create_dir_all(path).await?,
    }
    if let Some(mode) = mode {
        fs.chmod(path, mode).await?;
    }
    fs.chown(
        path,
        opt_str(inputs, "owner"),
        opt_str(inputs, "group"),
        false,
    )
    .await?;
    fs.log(format!("created folder {path}"));
    done()
}

/// The existing sources a copy or move `source` names: the path itself, or
/// the matches of a wildcard in its last segment.
async fn resolve_sources(
    fs: &Fs<'_, '_>,
    source: &str,
    folder: bool,
) -> Result<Vec<String>, ActionError> {
    let wanted = if folder {
        FileKind::Dir
    } else {
        FileKind::File
    };
    let other_action = if folder {
        fs.action.replace("Folder", "File")
    } else {
        fs.action.replace("File", "Folder")
    };
    let trimmed = paths::trim_trailing_slashes(source);
    if !paths::has_wildcard(source) {
        return match fs.kind(trimmed, true).await? {
            None => fs.fail(format!("source {source} does not exist")),
            Some(FileKind::Dir) if !folder => fs.fail(format!(
                "source {source} is a folder, not a file (use {other_action})"
            )),
            Some(k) if k != wanted && folder => fs.fail(format!(
                "source {source} is not a folder (use {other_action})"
            )),
            Some(_) => Ok(vec![trimmed.to_string()]),
        };
    }
    let (dir, pattern) = paths::split_pattern(source).map_err(|m| fs.err(m))?;
    let listed = dir.unwrap_or(".");
    match fs.kind(listed, true).await? {
        Some(FileKind::Dir) => {}
        _ => return fs.fail(format!("folder {listed} of source {source} does not exist")),
    }
    let mut found = Vec::new();
    for entry in fs.list_dir(listed).await? {
        if !paths::wildcard_match(pattern, &entry.name) {
            continue;
        }
        let path = paths::join(dir.unwrap_or(""), &entry.name);
        let kind = match entry.kind {
            FileKind::Symlink => fs.kind(&path, true).await?,
            k => Some(k),
        };
        if kind == Some(wanted) {
            found.push(path);
        }
    }
    if found.is_empty() {
        let what = if folder { "folder" } else { "file" };
        return fs.fail(format!("no {what} matches source {source}"));
    }
    Ok(found)
}

async fn copy_or_move(fs: &Fs<'_, '_>, inputs: &Inputs, folder: bool, mv: bool) -> Outcome {
    let source = required_path(fs, inputs, "source")?;
    let destination = required_path(fs, inputs, "destination")?;
    let overwrite = inputs.bool("overwrite", true)?;
    let sources = resolve_sources(fs, source, folder).await?;
    if sources.len() > 1 && !paths::ends_with_separator(destination) {
        return fs.fail(format!(
            "source {source} matches {} {}, so destination {destination} must end with / to name a folder",
            sources.len(),
            if folder { "folders" } else { "files" },
        ));
    }
    for src in &sources {
        let dst = paths::resolve_destination(destination, src);
        if folder {
            folder_to(fs, src, &dst, overwrite, mv).await?;
        } else {
            file_to(fs, src, &dst, overwrite, mv).await?;
        }
        fs.log(format!(
            "{} {src} to {dst}",
            if mv { "moved" } else { "copied" }
        ));
    }
    done()
}

/// Copies (`mv` false) or moves one file to an exact destination path.
async fn file_to(
    fs: &Fs<'_, '_>,
    src: &str,
    dst: &str,
    overwrite: bool,
    mv: bool,
) -> Result<(), ActionError> {
    let verb = if mv { "move" } else { "copy" };
    if paths::normalize(src) == paths::normalize(dst) {
        return fs.fail(format!("source and destination are the same file: {src}"));
    }
    // a copy writes through a link at the destination; a move replaces the link
    match fs.kind(dst, !mv).await? {
        Some(FileKind::Dir) => {
            return fs.fail(format!(
                "destination {dst} is a folder (end it with / to {verb} into it)"
            ))
        }
        Some(_) if !overwrite => {
            return fs.fail(format!(
                "destination {dst} already exists and overwrite is false"
            ))
        }
        Some(_) => {}
        None => fs.create_parent(dst).await?,
    }
    if mv {
        fs.rename(src, dst, false).await
    } else {
        fs.copy_file(src, dst).await
    }
}

/// Copies (`mv` false) or moves one folder to an exact destination path;
/// an existing destination folder is merged into when `overwrite` is true.
async fn folder_to(
    fs: &Fs<'_, '_>,
    src: &str,
    dst: &str,
    overwrite: bool,
    mv: bool,
) -> Result<(), ActionError> {
    let verb = if mv { "move" } else { "copy" };
    if paths::is_within(dst, src) {
        return fs.fail(format!("cannot {verb} folder {src} into itself ({dst})"));
    }
    match fs.kind(dst, true).await? {
        Some(FileKind::Dir) if !overwrite => fs.fail(format!(
            "destination {dst} already exists and overwrite is false"
        )),
        // merge into the existing folder, replacing files of the same name
        Some(FileKind::Dir) => {
            fs.copy_tree(src, dst).await?;
            if mv {
                fs.remove_dir(src, true).await?;
            }
            Ok(())
        }
        Some(_) => fs.fail(format!("destination {dst} exists and is not a folder")),
        None if !mv => fs.copy_tree(src, dst).await,
        None => {
            if fs.kind(dst, false).await?.is_some() {
                // a dangling symlink: replace it like `mv` would
                fs.remove_file(dst).await?;
            }
            fs.create_parent(dst).await?;
            fs.rename(src, dst, true).await
        }
    }
}

async fn delete_file(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    if !paths::has_wildcard(path) {
        match fs.kind(path, false).await? {
            None => return fs.fail(format!("file {path} does not exist")),
            Some(FileKind::Dir) => {
                return fs.fail(format!("{path} is a folder, not a file (use DeleteFolder)"))
            }
            Some(_) => fs.remove_file(path).await?,
        }
        fs.log(format!("deleted {path}"));
        return done();
    }
    let (dir, pattern) = paths::split_pattern(path).map_err(|m| fs.err(m))?;
    let listed = dir.unwrap_or(".");
    match fs.kind(listed, true).await? {
        Some(FileKind::Dir) => {}
        _ => return fs.fail(format!("folder {listed} of {path} does not exist")),
    }
    let mut deleted = 0;
    for entry in fs.list_dir(listed).await? {
        if entry.kind != FileKind::Dir && paths::wildcard_match(pattern, &entry.name) {
            let file = paths::join(dir.unwrap_or(""), &entry.name);
            fs.remove_file(&file).await?;
            fs.log(format!("deleted {file}"));
            deleted += 1;
        }
    }
    if deleted == 0 {
        return fs.fail(format!("no file matches {path}"));
    }
    done()
}

async fn delete_folder(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let force = inputs.bool("force", false)?;
    match fs.kind(path, false).await? {
        None => return fs.fail(format!("folder {path} does not exist")),
        Some(FileKind::Dir) => {}
        Some(_) => return fs.fail(format!("{path} is not a folder (use DeleteFile)")),
    }
    if !force && !fs.list_dir(path).await?.is_empty() {
        return fs.fail(format!(
            "folder {path} is not empty; set force: true to delete it with its contents"
        ));
    }
    fs.remove_dir(path, force).await?;
    fs.log(format!("deleted folder {path}"));
    done()
}

/// `path` made absolute against the target's working folder.
async fn absolute(fs: &Fs<'_, '_>, path: &str) -> Result<String, ActionError> {
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    let out = fs
        .ctx
        .target
        .capture("pwd", &[])
        .await
        .map_err(|e| fs.target_err(e))?;
    let cwd = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.code != Some(0) || !cwd.starts_with('/') {
        return fs.fail(format!("cannot find the working folder to resolve {path}"));
    }
    Ok(paths::clean_absolute(&paths::join(&cwd, path)))
}

async fn create_symlink(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let target = required_path(fs, inputs, "target")?;
    let force = inputs.bool("force", false)?;
    let link = absolute(fs, paths::trim_trailing_slashes(path)).await?;
    // a relative target is relative to the link's folder, as the OS reads it
    let resolved = if target.starts_with('/') {
        target.to_string()
    } else {
        // lexically: the link's folder may not exist yet
        paths::clean_absolute(&paths::join(paths::parent(&link).unwrap_or("/"), target))
    };
    if fs.kind(&resolved, true).await?.is_none() {
        return fs.fail(if resolved == target {
            format!("target {target} does not exist")
        } else {
            format!("target {target} ({resolved}) does not exist")
        });
    }
    match fs.kind(&link, false).await? {
        Some(FileKind::Symlink) if force => fs.remove_file(&link).await?,
        Some(FileKind::Symlink) => {
            return fs.fail(format!(
                "{link} already exists; set force: true to replace the link"
            ))
        }
        Some(_) => return fs.fail(format!("{link} already exists and is not a symlink")),
        None => fs.create_parent(&link).await?,
    }
    fs.symlink(target, &link).await?;
    fs.log(format!("linked {link} to {target}"));
    done()
}

async fn list_files(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let pattern = opt_str(inputs, "fileNamePattern");
    let recursive = inputs.bool("recursive", false)?;
    match fs.kind(path, true).await? {
        None => return fs.fail(format!("folder {path} does not exist")),
        Some(FileKind::Dir) => {}
        Some(_) => return fs.fail(format!("{path} is not a folder")),
    }
    let root = paths::trim_trailing_slashes(path);
    let entries = if recursive {
        fs.walk(root).await?
    } else {
        fs.list_dir(root)
            .await?
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect()
    };
    let mut files: Vec<String> = entries
        .into_iter()
        .filter(|(rel, kind)| {
            *kind != FileKind::Dir
                && pattern.is_none_or(|p| paths::wildcard_match(p, paths::file_name(rel)))
        })
        .map(|(rel, _)| paths::join(root, &rel))
        .collect();
    files.sort();
    output("files", files.join(","))
}

/// Checks that `path` is an existing file (symlinks followed).
async fn require_file(fs: &Fs<'_, '_>, path: &str) -> Result<(), ActionError> {
    match fs.kind(path, true).await? {
        None => fs.fail(format!("file {path} does not exist")),
        Some(FileKind::Dir) => fs.fail(format!("{path} is a folder, not a file")),
        Some(_) => Ok(()),
    }
}

async fn read_file(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let enc = encoding(fs, inputs)?;
    let print = inputs.bool("printFileContent", false)?;
    require_file(fs, path).await?;
    let bytes = fs.read(path).await?;
    let content = enc
        .decode(&bytes)
        .map_err(|m| fs.err(format!("{path} is not {} text: {m}", enc.name())))?;
    if print && !fs.ctx.quiet {
        fs.ctx.console.write(&content);
        if !content.is_empty() && !content.ends_with('\n') {
            fs.ctx.console.write("\n");
        }
    }
    output("content", content)
}

async fn set_file_encoding(fs: &Fs<'_, '_>, inputs: &Inputs) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let enc = encoding(fs, inputs)?;
    require_file(fs, path).await?;
    let bytes = fs.read(path).await?;
    let text = Encoding::Utf8
        .decode(&bytes)
        .map_err(|m| fs.err(format!("{path} is not UTF-8 text: {m}")))?;
    fs.write(path, &enc.encode(&text)).await?;
    fs.log(format!("converted {path} to {}", enc.name()));
    done()
}

/// Checks that `path` exists and is a folder (`folder`) or not one.
async fn require_kind(fs: &Fs<'_, '_>, path: &str, folder: bool) -> Result<(), ActionError> {
    let other = if folder {
        fs.action.replace("Folder", "File")
    } else {
        fs.action.replace("File", "Folder")
    };
    match fs.kind(path, true).await? {
        None => fs.fail(format!("{path} does not exist")),
        Some(FileKind::Dir) if !folder => fs.fail(format!("{path} is a folder (use {other})")),
        Some(k) if folder && k != FileKind::Dir => {
            fs.fail(format!("{path} is not a folder (use {other})"))
        }
        Some(_) => Ok(()),
    }
}

async fn set_owner(fs: &Fs<'_, '_>, inputs: &Inputs, folder: bool) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let owner = required_path(fs, inputs, "owner")?;
    let group = opt_str(inputs, "group");
    let recursive = folder && inputs.bool("recursive", true)?;
    require_kind(fs, path, folder).await?;
    fs.chown(path, Some(owner), group, recursive).await?;
    fs.log(format!(
        "set owner of {path} to {owner}{}",
        group.map(|g| format!(":{g}")).unwrap_or_default()
    ));
    done()
}

async fn set_permissions(fs: &Fs<'_, '_>, inputs: &Inputs, folder: bool) -> Outcome {
    let path = required_path(fs, inputs, "path")?;
    let raw = required_path(fs, inputs, "permissions")?;
    let mode = parse_mode(raw).map_err(|m| fs.err(m))?;
    let recursive = folder && inputs.bool("recursive", true)?;
    require_kind(fs, path, folder).await?;
    if recursive {
        // contents first, deepest first, so a mode without x or w on
        // folders does not lock us out half-way
        let root = paths::trim_trailing_slashes(path);
        for (rel, kind) in fs.walk(root).await?.into_iter().rev() {
            // links are skipped: chmod would follow them out of the folder
            if matches!(kind, FileKind::File | FileKind::Dir) {
                fs.chmod(&paths::join(root, &rel), mode).await?;
            }
        }
    }
    fs.chmod(path, mode).await?;
    fs.log(format!("set permissions of {path} to {raw}"));
    done()
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn permissions_are_octal_text() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode(" 0644 "), Ok(0o644));
        assert_eq!(parse_mode("0777"), Ok(0o777));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        assert_eq!(parse_mode("0"), Ok(0));
        assert_eq!(parse_mode("00600"), Ok(0o600));
        assert_eq!(parse_mode("0o700"), Ok(0o700));
        for bad in ["", "rwx", "u+x", "0789", "-755", "17777", "0x1ff", "7 55"] {
            let err = parse_mode(bad).unwrap_err();
            assert!(err.contains("octal"), "{bad}: {err}");
        }
    }
}
