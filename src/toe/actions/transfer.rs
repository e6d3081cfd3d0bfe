//! Transfer actions: S3Download, S3Upload and WebDownload. Bytes are fetched
//! on this host and copied into the target, so a guest needs no network and
//! no credentials.

use super::{fail, ActionContext, ActionError, ActionOutcome, Inputs};

/// Network clients shared by the transfer actions of a run.
#[derive(Default)]
pub struct Clients {}

/// Runs one input map of a transfer action.
pub async fn run(
    action: &str,
    _inputs: &Inputs,
    _ctx: &ActionContext<'_>,
) -> Result<ActionOutcome, ActionError> {
    fail(format!("{action}: not written yet"))
}
