//! A small deterministic mutation fuzzer for parsers of untrusted bytes.
//!
//! Not coverage-guided: each case starts from a valid seed and applies a few
//! random mutations (bit flips, boundary bytes, boundary integers in both
//! byte orders, inserted/deleted/duplicated ranges, truncation). The seed of
//! the random generator is fixed per target, so a failure reproduces: the
//! report names the case number and writes the input to a file.
//!
//! Every case runs under a wall-clock budget (a case that takes longer fails
//! the test) and the whole test process under an address-space limit set by
//! [`limit_memory`], so an allocation bomb aborts the run instead of the
//! machine.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// xorshift64*: fast, deterministic, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for this seed (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const BOUNDARY_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'\n', b'"', b'{'];
const BOUNDARY_INTS: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 40,
];

/// Applies one random mutation to `data` in place.
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = BOUNDARY_BYTES[rng.below(BOUNDARY_BYTES.len())];
        }
        2 if len >= 8 => {
            let i = rng.below(len - 7);
            let v = BOUNDARY_INTS[rng.below(BOUNDARY_INTS.len())];
            let width = [2usize, 4, 8][rng.below(3)];
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let bytes = if bytes[0] == 0 && width < 8 {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            data[i..i + width].copy_from_slice(bytes);
        }
        3 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(i..i, fill);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            data.drain(i..i + n);
        }
        5 if len > 0 => {
            // duplicate a range (repeats structure: nested blocks, aliases)
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        6 if len > 0 => {
            let keep = rng.below(len);
            data.truncate(keep);
        }
        _ if len > 1 => {
            let i = rng.below(len);
            let j = rng.below(len);
            data.swap(i, j);
        }
        _ => data.push(rng.next() as u8),
    }
}

/// A mutated copy of one of `seeds`: 1 to 4 mutations.
pub fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut data);
    }
    data
}

/// Limits this process's address space to `bytes` (RLIMIT_AS), so that an
/// allocation bomb fails an allocation (and aborts the test binary) instead
/// of exhausting the machine. Call once at the start of a fuzz test binary.
pub fn limit_memory(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
}

/// Runs `parse` on `cases` mutants of `seeds` (plus every seed unmutated).
/// Fails, naming the case and saving its input under the system temp dir,
/// when `parse` panics or one case takes longer than `per_case`. `parse`
/// may return an error: only panics and overruns count.
pub fn fuzz<F>(target: &str, seeds: &[Vec<u8>], cases: usize, per_case: Duration, mut parse: F)
where
    F: FnMut(&[u8]),
{
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let seed = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = Rng::new(seed);
    let inputs = seeds
        .iter()
        .cloned()
        .chain((0..cases).map(|_| mutant(&mut rng, seeds)));
    for (n, input) in inputs.enumerate() {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| parse(&input)));
        let took = started.elapsed();
        if outcome.is_err() || took > per_case {
            let path = std::env::temp_dir().join(format!("kiln-fuzz-{target}-{n}.bin"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "{target}: case {n} {} (input saved to {})",
                if outcome.is_err() {
                    "panicked".to_string()
                } else {
                    format!("took {took:?} (budget {per_case:?})")
                },
                path.display()
            );
        }
    }
}
