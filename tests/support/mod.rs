//! Real peers for integration tests: a moto server (S3 and other AWS APIs)
//! and a small HTTP/1.1 server. Use with `mod support;` in a test file.
//!
//! The moto server comes from `.venv` in the repository root; run
//! `bash scripts/setup-test-peers.sh` once to create it.

#![allow(dead_code)]

pub mod http;
pub mod moto;
