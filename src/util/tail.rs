//! The last bytes of a stream: what kiln keeps in memory of a process's
//! output (for a step's `stdout` output and its failure message) while the
//! whole stream goes to the console and `console.log` as it arrives.

/// How much of a step's standard output kiln keeps (its `stdout` output).
pub const STDOUT_TAIL: usize = 1 << 20;
/// How much of a step's standard error kiln keeps (its failure message
/// quotes the last lines).
pub const STDERR_TAIL: usize = 64 << 10;

/// Keeps the last `cap` bytes pushed into it (memory stays under twice
/// that) and counts every byte.
#[derive(Clone, Debug)]
pub struct Tail {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    /// An empty tail keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Tail {
            buf: Vec::new(),
            cap,
            total: 0,
        }
    }

    /// Appends `bytes`, dropping the oldest ones past the cap.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        if bytes.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        // trimmed in batches: each byte is moved at most once on average
        if self.buf.len() >= 2 * self.cap {
            let extra = self.buf.len() - self.cap;
            self.buf.drain(..extra);
        }
    }

    /// Every byte pushed, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True when bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.buf.len().min(self.cap) as u64
    }

    /// The kept bytes (the last `cap`); when some were dropped, a UTF-8
    /// character cut at the start is dropped too.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.buf.len() > self.cap {
            let extra = self.buf.len() - self.cap;
            self.buf.drain(..extra);
        }
        if self.truncated() {
            let cut = self
                .buf
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xc0 == 0x80)
                .count();
            self.buf.drain(..cut);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_all() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        assert!(!t.truncated());
        t.push(b"cd");
        assert!(!t.truncated());
        t.push(b"efg");
        assert_eq!(t.total(), 7);
        assert!(t.truncated());
        assert_eq!(t.clone().into_bytes(), b"defg");
        t.push(b"0123456789");
        assert_eq!(t.into_bytes(), b"6789");
        let mut t = Tail::new(3);
        t.push(b"xyz");
        assert_eq!(t.into_bytes(), b"xyz");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut t = Tail::new(1000);
        for _ in 0..10_000 {
            t.push(&[b'x'; 7]);
            assert!(t.buf.len() < 2000);
        }
        assert_eq!(t.total(), 70_000);
    }

    #[test]
    fn a_character_cut_at_the_start_is_dropped() {
        let mut t = Tail::new(4);
        t.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the cut leaves 1 byte of é
        assert_eq!(t.into_bytes(), "€".as_bytes());
        let mut t = Tail::new(6);
        t.push("aé€".as_bytes());
        assert_eq!(t.into_bytes(), "aé€".as_bytes());
    }
}
