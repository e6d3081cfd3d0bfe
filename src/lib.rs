//! kiln: a local VM image factory that runs EC2 Image Builder components.

pub mod ami;
pub mod aws;
pub mod build;
pub mod catalog;
pub mod cli;
pub mod disk;
pub mod export;
pub mod pipeline;
pub mod recipe;
pub mod serve;
pub mod target;
pub mod toe;
pub mod util;
pub mod vm;
