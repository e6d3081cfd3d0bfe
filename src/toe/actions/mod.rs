//! Action modules. `spec` describes every action's inputs; the other files
//! run them, one family each, through the [`Target`](crate::target::Target).

pub mod spec;
