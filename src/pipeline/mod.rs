//! Pipelines: a recipe plus its infrastructure, distribution, schedule,
//! start condition, notifications and retention (`file`); the inputs
//! digest behind `startCondition: ifChanged` (`digest`); when a schedule is
//! due, with its catch-up rule (`schedule`); and which old images go
//! (`retention`), all pure; and running one (`runner`: lock, start
//! condition, build, copies to other directories and S3 (`copies`),
//! notifications, retention).

pub mod copies;
pub mod file;
pub mod notify;
pub mod retention;
pub mod runner;
pub mod schedule;
mod summary;

pub use file::{
    check_recipe_file, load, parse, Notification, Pipeline, PipelineDistribution, PipelineError,
    RecipeSource, StartCondition,
};
pub use retention::RetentionPolicy;
pub use schedule::{Due, Schedule, ScheduleError};
