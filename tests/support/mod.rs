//! Real peers for integration tests: a moto server (S3 and other AWS APIs),
//! a small HTTP/1.1 server, and the Debian base image VM tests boot. Use
//! with `mod support;` in a test file.
//!
//! The moto server comes from `.venv` in the repository root; run
//! `bash scripts/setup-test-peers.sh` once to create it.

#![allow(dead_code)]

pub mod base_image;
pub mod catalog;
pub mod fuzz;
pub mod http;
pub mod kiln;
pub mod leak;
pub mod moto;
