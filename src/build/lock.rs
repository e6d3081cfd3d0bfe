//! Exclusive advisory locks (`flock(2)`) on lock files, so two kiln processes
//! do not build the same thing at once: the second waits, then reuses the
//! first one's result. The implementation is the leaf
//! [`crate::util::flock`], which the catalog uses too.

pub use crate::util::flock::{read_note, Attempt, FileLock, LockError};
