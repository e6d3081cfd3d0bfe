//! `kiln serve`: the long-running factory process. `scheduler` decides
//! what starts when (pure), `daemon` runs the pipelines of a folder on
//! their schedules and keeps its own log, `http` serves the read-only API.

pub mod daemon;
pub mod http;
pub mod scheduler;
