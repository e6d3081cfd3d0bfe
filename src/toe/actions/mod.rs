//! Action modules. `spec` describes every action's inputs; the other files
//! run them, one family each, through the [`Target`].

pub mod encoding;
pub mod exec;
pub mod files;
pub mod os;
pub mod paths;
pub mod spec;
pub mod transfer;

use std::collections::BTreeMap;

use crate::target::{Target, TargetError};

use super::console::Console;

/// One resolved input map (all scalars are strings, as written).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs(pub serde_json::Map<String, serde_json::Value>);

/// Errors of an action.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// The target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Shorthand for a failed action.
pub fn fail<T>(message: impl Into<String>) -> Result<T, ActionError> {
    Err(ActionError::Failed(message.into()))
}

impl Inputs {
    /// A string input, if given (null counts as absent).
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(serde_json::Value::as_str)
    }

    /// A required string input.
    pub fn required(&self, key: &str) -> Result<&str, ActionError> {
        self.str(key)
            .ok_or_else(|| ActionError::Failed(format!("input `{key}` is missing")))
    }

    /// A boolean input, `default` when absent.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ActionError> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => fail(format!("input `{key}` must be true or false, found `{s}`")),
            },
            Some(other) => fail(format!(
                "input `{key}` must be true or false, found {other}"
            )),
        }
    }

    /// An integer input, `default` when absent.
    pub fn int(&self, key: &str, default: i64) -> Result<i64, ActionError> {
        match self.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::String(s)) => s
                .trim()
                .parse()
                .or_else(|_| fail(format!("input `{key}` must be an integer, found `{s}`"))),
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| ActionError::Failed(format!("input `{key}` is out of range"))),
            Some(other) => fail(format!("input `{key}` must be an integer, found {other}")),
        }
    }

    /// A list-of-strings input (empty when absent).
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.0.get(key) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// What a step asks for after its action ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RebootRequest {
    /// Exit code 194: reboot, then run the same step again.
    RerunStep,
    /// The `Reboot` action: reboot (after a delay), then go on with the next step.
    NextStep {
        /// Seconds to wait before rebooting.
        delay_seconds: u64,
    },
}

/// The result of a successful action.
#[derive(Clone, Debug, Default)]
pub struct ActionOutcome {
    /// Output fields (e.g. `stdout`).
    pub outputs: BTreeMap<String, String>,
    /// A reboot request, if the action made one.
    pub reboot: Option<RebootRequest>,
}

/// What an action can use while it runs.
pub struct ActionContext<'a> {
    /// Where it runs.
    pub target: &'a dyn Target,
    /// Where its output goes.
    pub console: &'a Console,
    /// A folder on the target for this step's scripts.
    pub scratch_dir: &'a str,
    /// Whether the step's output is hidden (`disableLogging`).
    pub quiet: bool,
    /// Environment variables for processes the step starts.
    pub env: &'a [(String, String)],
    /// Network clients for the transfer actions.
    pub clients: &'a transfer::Clients,
}

impl ActionContext<'_> {
    /// Writes a line to the console unless the step is quiet.
    pub fn log(&self, line: &str) {
        if !self.quiet {
            self.console.line(line);
        }
    }
}

/// Runs one (non-document, non-assert) action with its resolved inputs. List-shaped actions
/// run once per input map; their outputs are joined with `\n`.
pub async fn run(
    action: &str,
    items: &[Inputs],
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    let mut outcome = ActionOutcome::default();
    for item in items {
        let one = run_one(action, item, ctx).await?;
        for (k, v) in one.outputs {
            outcome
                .outputs
                .entry(k)
                .and_modify(|e| {
                    e.push('\n');
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        if one.reboot.is_some() {
            outcome.reboot = one.reboot;
        }
    }
    Ok(outcome)
}

async fn run_one(
    action: &str,
    inputs: &Inputs,
    ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    match action {
        "ExecuteBash" | "ExecuteBinary" => return exec::run(action, inputs, ctx).await,
        "UpdateOS" | "Reboot" => return os::run(action, inputs, ctx).await,
        "S3Download" | "S3Upload" | "WebDownload" => {
            return transfer::run(action, inputs, ctx).await
        }
        "CreateFile"
        | "AppendFile"
        | "CopyFile"
        | "CopyFolder"
        | "MoveFile"
        | "MoveFolder"
        | "DeleteFile"
        | "DeleteFolder"
        | "CreateFolder"
        | "CreateSymlink"
        | "ListFiles"
        | "ReadFile"
        | "SetFileEncoding"
        | "SetFileOwner"
        | "SetFolderOwner"
        | "SetFilePermissions"
        | "SetFolderPermissions" => return files::run(action, inputs, ctx).await,
        _ => {}
    }
    match spec::find(action) {
        Some(s) if s.platform == spec::Platform::Windows => fail(format!(
            "`{action}` is a Windows action and cannot run on {} (Linux)",
            ctx.target.describe()
        )),
        _ => fail(format!("action `{action}` is not available")),
    }
}
