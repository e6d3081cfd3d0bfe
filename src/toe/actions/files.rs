//! File-system actions: CreateFile, AppendFile, CopyFile, CopyFolder,
//! MoveFile, MoveFolder, DeleteFile, DeleteFolder, CreateFolder,
//! CreateSymlink, ListFiles, ReadFile, SetFileEncoding, SetFileOwner,
//! SetFolderOwner, SetFilePermissions, SetFolderPermissions.

use super::{fail, ActionContext, ActionError, ActionOutcome, Inputs};

/// Runs one input map of a file-system action.
pub async fn run(
    action: &str,
    _inputs: &Inputs,
    _ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    fail(format!("{action}: not written yet"))
}
