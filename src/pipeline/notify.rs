//! Notifications of finished builds: a JSON body POSTed to a webhook, or
//! given on standard input to a command.
//!
//! Webhook URLs often carry a token in their path or query, so errors name
//! only the URL's scheme, host and port.

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::file::Notification;

/// The event format's version.
pub const EVENT_VERSION: u32 = 1;
/// How long a webhook or command may take.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a build ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Built, tested and published.
    Success,
    /// Failed; nothing was published.
    Failure,
}

/// What a notification says.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildEvent {
    /// [`EVENT_VERSION`].
    pub v: u32,
    /// `build-finished`.
    pub event: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// The pipeline.
    pub pipeline: String,
    /// The image name.
    pub image: String,
    /// `x.y.z/n`.
    pub version: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// The published image's manifest.
    pub manifest: Option<serde_json::Value>,
    /// RFC 3339 time of the event.
    pub time: String,
}

impl BuildEvent {
    /// An event stamped now.
    pub fn new(outcome: Outcome, pipeline: &str, image: &str, version: &str) -> Self {
        BuildEvent {
            v: EVENT_VERSION,
            event: "build-finished",
            outcome,
            pipeline: pipeline.into(),
            image: image.into(),
            version: version.into(),
            failure: None,
            manifest: None,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook request failed.
    #[error("webhook {target}: {source}")]
    Request {
        /// Scheme, host and port of the URL.
        target: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The webhook answered with a non-success status.
    #[error("webhook {target} answered HTTP {status}")]
    Status {
        /// Scheme, host and port of the URL.
        target: String,
        /// The status.
        status: u16,
    },
    /// The command could not run, or its input could not be written.
    #[error("notification command `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command failed.
    #[error("notification command `{program}` {status}")]
    Command {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
    },
    /// The command or webhook took longer than [`NOTIFY_TIMEOUT`].
    #[error("notification {target} took longer than {} s", NOTIFY_TIMEOUT.as_secs())]
    Timeout {
        /// The webhook's host or the command's program.
        target: String,
    },
}

/// `scheme://host:port/…` of a URL, without path, query or credentials.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<invalid URL>".into(),
    }
}

/// Delivers `event` to one notification target, every secret in its
/// strings masked.
pub async fn send(target: &Notification, event: &BuildEvent) -> Result<(), NotifyError> {
    let body = crate::util::redact::to_json(event).to_string().into_bytes();
    match target {
        Notification::Webhook(url) => webhook(url, body).await,
        Notification::Command(argv) => command(argv, &body).await,
    }
}

async fn webhook(url: &str, body: Vec<u8>) -> Result<(), NotifyError> {
    let target = redact_url(url);
    let client = reqwest::Client::builder()
        .timeout(NOTIFY_TIMEOUT)
        .build()
        .map_err(|source| NotifyError::Request {
            target: target.clone(),
            source,
        })?;
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::USER_AGENT,
            concat!("kiln/", env!("CARGO_PKG_VERSION")),
        )
        .body(body)
        .send()
        .await
        // reqwest's error may print the URL: keep only its kind
        .map_err(|source| NotifyError::Request {
            target: target.clone(),
            source: source.without_url(),
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(NotifyError::Status {
            target,
            status: resp.status().as_u16(),
        })
    }
}

async fn command(argv: &[String], body: &[u8]) -> Result<(), NotifyError> {
    let program = argv[0].clone();
    let spawn_err = |source| NotifyError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let run = async {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // a command that does not read its input may close it: not an error
        match stdin.write_all(body).await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(spawn_err(e)),
            _ => {}
        }
        drop(stdin);
        child.wait().await.map_err(spawn_err)
    };
    let status = tokio::time::timeout(NOTIFY_TIMEOUT, run)
        .await
        .map_err(|_| NotifyError::Timeout {
            target: program.clone(),
        })??;
    if status.success() {
        Ok(())
    } else {
        Err(NotifyError::Command {
            program,
            status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example:8443/services/T0/B0/secret?token=x"),
            "https://hooks.example:8443/…"
        );
        assert_eq!(redact_url("http://127.0.0.1/x"), "http://127.0.0.1/…");
    }
}
