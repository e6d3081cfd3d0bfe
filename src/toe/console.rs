//! The run's console: what steps print, written to `console.log` and echoed
//! to standard error, with every secret redacted ([`crate::util::redact`]).
//! A process's output is redacted as a stream per output stream, so a
//! secret cut in two by a read boundary is still masked.

use std::io::Write;
use std::sync::Mutex;

use crate::target::Stream;
pub use crate::util::redact::Redactor;
use crate::util::redact::StreamRedactor;

/// Where step output and progress lines go.
pub struct Console {
    file: Mutex<Option<std::fs::File>>,
    echo: bool,
    redactor: Redactor,
    /// What each output stream of the running process holds back.
    streams: Mutex<[StreamRedactor; 2]>,
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Console {
    /// A console writing to `file` (if any), echoing to stderr when `echo`.
    pub fn new(file: Option<std::fs::File>, echo: bool, redactor: Redactor) -> Self {
        Console {
            file: Mutex::new(file),
            echo,
            redactor,
            streams: Mutex::new(Default::default()),
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

    fn emit(&self, text: &str) {
        if text.is_empty() {
            return;
        }
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

    /// Writes a piece of a process's output: what can be decided is shown
    /// now, a possible start of a secret waits for the next piece of the
    /// same stream or [`Console::end_output`].
    pub fn output(&self, stream: Stream, bytes: &[u8]) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let text = streams[index(stream)].push(bytes);
        self.emit(&text);
    }

    /// The process ended: shows what its streams held back.
    pub fn end_output(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for s in streams.iter_mut() {
            let text = s.finish();
            self.emit(&text);
        }
    }

    /// Writes text (whole: nothing of it is held back).
    pub fn write(&self, text: &str) {
        self.end_output();
        self.emit(&self.redactor.redact(text));
    }

    /// Writes one line of kiln's own (names and messages in it have their
    /// control characters escaped; step output goes through
    /// [`Console::output`]).
    pub fn line(&self, text: &str) {
        self.write(&format!("{}\n", crate::util::display::EscapedLines(text)));
    }
}
