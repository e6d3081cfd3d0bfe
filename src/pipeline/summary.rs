//! A one-line description of a pipeline, for `kiln pipeline validate` and
//! the scheduler's log.

use super::file::{Pipeline, RecipeSource, StartCondition};

impl Pipeline {
    /// One line saying what a valid pipeline is.
    pub fn summary(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let p = self;
        let recipe = match &p.recipe {
            RecipeSource::Path(path) => format!("recipe {}", path.display()),
            RecipeSource::Inline(r) => format!("inline recipe {} {}", r.name, r.version),
        };
        let schedule = match &p.schedule {
            Some(s) => format!(
                "schedule `{}` {} (next {})",
                s.expression(),
                s.time_zone().name(),
                s.next_after(now).map_or("never".into(), |t| t
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            ),
            None => "no schedule".into(),
        };
        let start = match p.start_condition {
            StartCondition::Always => "always builds",
            StartCondition::IfChanged => "builds if changed",
        };
        let mut retention = Vec::new();
        if let Some(n) = p.retention.keep_last {
            retention.push(format!("keep last {n}"));
        }
        if let Some(a) = p.retention.max_age {
            retention.push(format!("max age {} days", a.num_days()));
        }
        format!(
            "pipeline {}: {recipe}; {schedule}; {start}; {} notification(s); retention: {}",
            p.name,
            p.notifications.len(),
            if retention.is_empty() {
                "none".into()
            } else {
                retention.join(", ")
            }
        )
    }
}
