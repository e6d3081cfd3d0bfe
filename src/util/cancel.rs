//! Cooperative cancellation of CPU-bound export work that runs on plain
//! threads: the async side sets the flag (Ctrl-C, SIGTERM, a dropped
//! future), the writers check it between chunks and stop with
//! [`Cancelled`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared "stop now" flag; clones see the same flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

/// The work stopped because [`Cancel::cancel`] was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// A guard that cancels when dropped: held by the async side, so a
    /// dropped future (Ctrl-C, a failed sibling) stops the threads.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }

    /// `Err(Cancelled)` once cancelled: `cancel.check()?` between chunks.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

impl Cancel {
    /// `inner`, failing every read once the flag is set (an
    /// `io::Error` whose inner error is [`Cancelled`]): blocking readers
    /// of untrusted streams stop within one read of a signal.
    pub fn reader<R>(&self, inner: R) -> CancelRead<R> {
        CancelRead {
            inner,
            cancel: self.clone(),
        }
    }
}

/// A reader that stops when its [`Cancel`] is set (see [`Cancel::reader`]).
#[derive(Debug)]
pub struct CancelRead<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: std::io::Read> std::io::Read for CancelRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other(Cancelled));
        }
        self.inner.read(buf)
    }
}

/// Cancels its flag when dropped (see [`Cancel::on_drop`]).
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = Cancel::new();
        let b = a.clone();
        assert_eq!(b.check(), Ok(()));
        a.cancel();
        assert!(b.is_cancelled());
        assert_eq!(b.check(), Err(Cancelled));
        let c = Cancel::new();
        drop(c.on_drop());
        assert!(c.is_cancelled());
    }

    #[test]
    fn readers_stop() {
        use std::io::Read;
        let c = Cancel::new();
        let mut r = c.reader(std::io::repeat(7));
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        c.cancel();
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.get_ref().is_some_and(|i| i.is::<Cancelled>()), "{e}");
    }
}
