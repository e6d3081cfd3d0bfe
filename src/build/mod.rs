//! The staged build of a golden image: parent image, build VM, seal,
//! flatten, test VM, publish. See [`run::Build`].

pub mod guest;
pub mod manifest;
pub mod phases;
pub mod progress;
pub mod run;
pub mod seal;
pub mod workspace;
