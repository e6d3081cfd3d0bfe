//! The staged build of a golden image: the parent image resolved to a local
//! file with its digest (a file, a verified download, or a Debian image
//! bootstrapped from packages, cached), then the build VM, seal, flatten,
//! test VM and publish. See [`run::Build`].

pub mod bootstrap;
pub mod cache;
pub mod digest;
pub mod distribute;
pub mod download;
pub mod guest;
pub mod inputs;
pub mod layers;
pub mod leftovers;
pub mod lock;
pub mod manifest;
pub mod parent;
pub mod phases;
pub mod progress;
pub mod record;
pub mod run;
pub mod seal;
pub mod workspace;
