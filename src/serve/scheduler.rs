//! Which scheduled pipelines to start now. Pure: the clock, the
//! remembered occurrences and what is running are inputs.
//!
//! Rules (the catch-up rule itself is [`crate::pipeline::schedule`]'s):
//! - a pipeline never seen before is remembered as acted on *now*, so
//!   nothing is caught up for it: its first run is its next occurrence;
//! - a due pipeline starts when it is not already running and a slot is
//!   free (`--parallel N` slots); the longest-waiting occurrence first,
//!   then by name;
//! - a due pipeline that finds no free slot (or is still running) waits:
//!   its occurrence stays due and is coalesced with later ones, so a
//!   pipeline never queues more than one run;
//! - the occurrence a run stands for is remembered when it starts, so a
//!   run interrupted by a restart is not repeated: the next occurrence runs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::pipeline::{Due, Schedule};

/// A run to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// The pipeline.
    pub pipeline: String,
    /// The occurrence it stands for.
    pub scheduled: DateTime<Utc>,
    /// Earlier occurrences coalesced into it.
    pub missed: u32,
}

/// What to do at one tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Occurrences to remember (pipeline, time) before anything starts:
    /// first sightings (now) and the occurrences of the runs below.
    pub remember: Vec<(String, DateTime<Utc>)>,
    /// Runs to start.
    pub start: Vec<Start>,
    /// Due pipelines left waiting, with why.
    pub waiting: Vec<(String, &'static str)>,
}

/// Plans the tick at `now` for `schedules` (pipeline → schedule), given
/// the remembered last occurrence per pipeline, the pipelines running and
/// the number of slots.
pub fn plan(
    schedules: &BTreeMap<String, Schedule>,
    last: &BTreeMap<String, DateTime<Utc>>,
    running: &BTreeSet<String>,
    slots: usize,
    now: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::default();
    let mut due = Vec::new();
    for (name, schedule) in schedules {
        let Some(&seen) = last.get(name) else {
            out.remember.push((name.clone(), now));
            continue;
        };
        if let Due::Now { scheduled, missed } = schedule.due(Some(seen), now) {
            due.push(Start {
                pipeline: name.clone(),
                scheduled,
                missed,
            });
        }
    }
    due.sort_by(|a, b| (a.scheduled, &a.pipeline).cmp(&(b.scheduled, &b.pipeline)));
    let mut free = slots.saturating_sub(running.len());
    for s in due {
        if running.contains(&s.pipeline) {
            out.waiting
                .push((s.pipeline, "its previous run is still going"));
        } else if free == 0 {
            out.waiting.push((s.pipeline, "every build slot is busy"));
        } else {
            free -= 1;
            out.remember.push((s.pipeline.clone(), s.scheduled));
            out.start.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedules(list: &[(&str, &str)]) -> BTreeMap<String, Schedule> {
        list.iter()
            .map(|(n, e)| (n.to_string(), Schedule::parse(e, None).unwrap()))
            .collect()
    }

    #[test]
    fn first_sight_is_remembered_and_nothing_is_caught_up() {
        let s = schedules(&[("nightly", "0 2 * * *")]);
        let now = t("2026-12-01T09:00:00Z");
        let p = plan(&s, &BTreeMap::new(), &BTreeSet::new(), 1, now);
        assert_eq!(p.remember, [("nightly".to_string(), now)]);
        assert!(p.start.is_empty());
    }

    #[test]
    fn a_due_job_starts_and_missed_ones_are_coalesced() {
        let s = schedules(&[("nightly", "0 2 * * *")]);
        let last = [("nightly".to_string(), t("2026-11-28T02:00:00Z"))].into();
        // the scheduler was down for three nights
        let now = t("2026-12-01T09:00:00Z");
        let p = plan(&s, &last, &BTreeSet::new(), 1, now);
        assert_eq!(
            p.start,
            [Start {
                pipeline: "nightly".into(),
                scheduled: t("2026-12-01T02:00:00Z"),
                missed: 2,
            }]
        );
        assert_eq!(
            p.remember,
            [("nightly".to_string(), t("2026-12-01T02:00:00Z"))]
        );
        // once remembered, nothing more is due until the next night
        let last = [("nightly".to_string(), t("2026-12-01T02:00:00Z"))].into();
        let p = plan(&s, &last, &BTreeSet::new(), 1, now);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn slots_and_running_pipelines_make_due_jobs_wait() {
        let s = schedules(&[("a", "*/5 * * * *"), ("b", "0 * * * *"), ("c", "* * * * *")]);
        let before = t("2026-12-01T08:59:00Z");
        let last: BTreeMap<String, DateTime<Utc>> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), before))
            .collect();
        let now = t("2026-12-01T09:00:30Z");
        let running: BTreeSet<String> = ["c".to_string()].into();
        let p = plan(&s, &last, &running, 2, now);
        // all three are due at 09:00; c still runs, one slot is free: a
        // (same time as b, first by name) starts
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].pipeline, "a");
        assert_eq!(
            p.waiting,
            [
                ("b".to_string(), "every build slot is busy"),
                ("c".to_string(), "its previous run is still going"),
            ]
        );
        // with a free slot more, b starts too
        let p = plan(&s, &last, &running, 3, now);
        let started: Vec<&str> = p.start.iter().map(|s| s.pipeline.as_str()).collect();
        assert_eq!(started, ["a", "b"]);
    }
}
