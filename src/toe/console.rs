//! The run's console: what steps print, written to `console.log` and echoed
//! to standard error, with every secret value redacted.

use std::io::Write;
use std::sync::Mutex;

/// Replaces secret values in text.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these values (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // longest first, so a secret that contains another is masked whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// Where step output and progress lines go.
pub struct Console {
    file: Mutex<Option<std::fs::File>>,
    echo: bool,
    redactor: Redactor,
}

impl Console {
    /// A console writing to `file` (if any), echoing to stderr when `echo`.
    pub fn new(file: Option<std::fs::File>, echo: bool, redactor: Redactor) -> Self {
        Console {
            file: Mutex::new(file),
            echo,
            redactor,
        }
    }

    /// A console that only keeps nothing (for tests).
    pub fn discard() -> Self {
        Console::new(None, false, Redactor::default())
    }

    /// The redactor in use.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Writes raw output (a chunk of a process's stdout or stderr).
    pub fn write(&self, text: &str) {
        let text = self.redactor.redact(text);
        if let Ok(mut guard) = self.file.lock() {
            if let Some(f) = guard.as_mut() {
                // console.log is best effort: a full disk must not fail the step
                let _ = f.write_all(text.as_bytes());
            }
        }
        if self.echo {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }

    /// Writes one line of kiln's own (names and messages in it have their
    /// control characters escaped; step output goes through [`Console::write`]).
    pub fn line(&self, text: &str) {
        self.write(&format!("{}\n", crate::util::display::EscapedLines(text)));
    }
}
