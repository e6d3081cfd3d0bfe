//! The leaf layer: building blocks every other module may use (I/O errors,
//! atomic publishing, digests, redaction, positioned YAML and diagnostics,
//! supervised subprocesses, bounded reads). Nothing here imports another
//! module of the crate.

pub mod atomic;
pub mod cancel;
pub mod diag;
pub mod digest;
pub mod display;
pub mod flock;
pub mod host_key;
pub mod io;
pub mod process;
pub mod read;
pub mod reaper;
pub mod redact;
pub mod tail;
pub mod task;
pub mod yaml;
