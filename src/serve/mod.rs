//! `kiln serve`: the long-running factory process.

pub mod http;
