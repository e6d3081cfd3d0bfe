//! awstoe's log folder on the host: its name, the copies of the documents,
//! the JSON reports (written atomically), and reading one step's output back
//! out of `console.log`.

use std::path::Path;

use super::runner::DocumentRun;
use crate::util::redact;

/// Errors writing the log folder.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be written.
    #[error(transparent)]
    Write(crate::util::io::IoError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `TOE_<UTC time>_UTC-0_<execution id>`, as awstoe names its log folder.
pub fn folder_name(execution_id: &str) -> String {
    format!(
        "TOE_{}_UTC-0_{execution_id}",
        chrono::Utc::now().format("%Y-%m-%d_%H-%M-%S")
    )
}

/// Writes `value` as pretty JSON to `path`, every secret in its strings
/// masked ([`redact::json`]): a temporary name, fsync, rename.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), LogError> {
    let mut value = serde_json::to_value(value).map_err(|e| {
        LogError::Write(crate::util::io::IoError::at("encode", path)(
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        ))
    })?;
    redact::json(&mut value);
    crate::util::atomic::write_json(path, &value).map_err(LogError::Write)
}

/// Writes a copy of each document into `folder`: `document.yaml` for one,
/// `document-N.yaml` for several (a secret value written in a document, a
/// default for example, is masked).
pub fn write_documents(folder: &Path, docs: &[DocumentRun]) -> Result<(), LogError> {
    for (i, d) in docs.iter().enumerate() {
        let name = if docs.len() == 1 {
            "document.yaml".to_string()
        } else {
            format!("document-{}.yaml", i + 1)
        };
        let path = folder.join(name);
        std::fs::write(&path, redact::text(&d.loaded.doc.text)).map_err(io_err(&path))?;
    }
    Ok(())
}

/// The output of the last run of step `label` (`phase/step`) in a
/// `console.log` text: the lines after its `Step LABEL (…) started` line, up
/// to and including its last status line; at most `max_lines`, the last ones.
pub fn step_output(console: &str, label: &str, max_lines: usize) -> Option<String> {
    let start_marker = format!("Step {label} (");
    let end_marker = format!("Step {label}: ");
    let lines: Vec<&str> = console.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.starts_with(&start_marker) && l.ends_with(" started"))?;
    let end = lines[start..]
        .iter()
        .rposition(|l| l.starts_with(&end_marker))
        .map_or(lines.len(), |i| start + i + 1);
    let body = &lines[start + 1..end];
    Some(body[body.len().saturating_sub(max_lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_output_is_cut_from_the_console() {
        let console = "Phase build\nStep build/A (ExecuteBash) started\nold\nStep build/A: success (0.1s)\n\
Step build/B (ExecuteBash) started\nfirst try\nStep build/B: attempt 1 of 2 failed: x; retrying\n\
Step build/B (ExecuteBash) started\nline 1\nline 2\nStep build/B: failed (0.2s): bash exited with status 3\nStep build/C (ExecuteBash) started\n";
        assert_eq!(
            step_output(console, "build/B", 10).unwrap(),
            "line 1\nline 2\nStep build/B: failed (0.2s): bash exited with status 3"
        );
        assert_eq!(
            step_output(console, "build/B", 1).unwrap(),
            "Step build/B: failed (0.2s): bash exited with status 3"
        );
        assert_eq!(step_output(console, "build/C", 5).unwrap(), "");
        assert!(step_output(console, "validate/B", 5).is_none());
    }
}
