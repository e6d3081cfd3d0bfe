//! The AWSTOE-compatible engine: component documents, validation,
//! expressions, conditions, loops, and running phases on a target.

pub mod actions;
pub mod builtin;
pub mod condition;
pub mod console;
pub mod document;
pub mod evaluate;
pub mod expr;
pub mod load;
pub mod logs;
pub mod looping;
pub mod report;
pub mod runner;
pub mod scope;
pub mod state;
pub mod validate;
