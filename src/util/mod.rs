//! The leaf layer: building blocks every other module may use (I/O errors,
//! atomic publishing, digests, redaction, positioned YAML and diagnostics,
//! supervised subprocesses, bounded reads). Nothing here imports another
//! module of the crate.

pub mod flock;
pub mod reaper;
