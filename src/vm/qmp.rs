//! A QMP client: QEMU's JSON control protocol over a unix socket.

use std::path::Path;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::VmError;

/// A connected QMP session, in command mode.
pub struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
    events: Vec<Value>,
}

fn qmp_err(what: &str, message: impl ToString) -> VmError {
    VmError::Qmp {
        what: what.to_string(),
        message: message.to_string(),
    }
}

impl Qmp {
    /// Connects to the socket, reads the greeting and enters command mode.
    pub async fn connect(socket: &Path) -> Result<Qmp, VmError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| qmp_err("connect", e))?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(r),
            writer: w,
            events: Vec::new(),
        };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(qmp_err("greeting", format!("unexpected {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> Result<Value, VmError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .map_err(|e| qmp_err("read", e))?;
        if n == 0 {
            return Err(qmp_err("read", "the socket closed (QEMU exited?)"));
        }
        serde_json::from_str(&line).map_err(|e| qmp_err("read", format!("{e}: {line}")))
    }

    /// Runs a command and returns its `return` value. Events that arrive
    /// meanwhile are kept for [`Qmp::take_events`].
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, VmError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .await
            .map_err(|e| qmp_err(command, e))?;
        loop {
            let reply = self.read_message().await?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(qmp_err(
                    command,
                    err.get("desc").and_then(Value::as_str).unwrap_or("error"),
                ));
            }
            if reply.get("event").is_some() {
                self.events.push(reply);
            }
        }
    }

    /// Events received so far (e.g. `SHUTDOWN`, `RESET`), oldest first.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }
}
