//! Schedules: a cron expression (croner: 5 fields, or 6 with seconds) in an
//! IANA time zone, and when a pipeline is due. Pure: the clock is a
//! parameter.
//!
//! **Catch-up rule.** The scheduler remembers, per pipeline, the last
//! scheduled time it acted on. When it looks again (at start-up after being
//! down, or on its next tick), every occurrence after that time up to now
//! is due, and they are coalesced: **one** run starts now, however many were
//! missed, and the missed count is reported. With no record (a pipeline
//! never scheduled before), nothing is caught up: the first run is the next
//! occurrence after now.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The most missed occurrences counted (the count is for people; the
/// search stops there).
pub const MAX_COUNTED_MISSES: u32 = 1000;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    cron: croner::Cron,
    tz: Tz,
}

/// Why a schedule is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("`{expression}` is not a cron expression: {source}")]
    Cron {
        /// The expression.
        expression: String,
        /// The cause.
        #[source]
        source: croner::errors::CronError,
    },
    /// The time zone is unknown.
    #[error("`{0}` is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)")]
    TimeZone(String),
    /// The expression parses but no time matches it.
    #[error("`{0}` never matches (an empty field, or a day that none of its months has)")]
    Never(String),
}

/// True when no time can match `p`: a field with no value (`0 , * * *`
/// parses), or days of the month that none of the months has with no day
/// of the week to match instead. croner would search for such an
/// expression up to the year 5000, hour by hour (seconds of CPU, on every
/// scheduler tick).
fn never_matches(p: &croner::CronPattern) -> bool {
    let fields = [&p.seconds, &p.minutes, &p.hours, &p.months];
    if fields
        .iter()
        .any(|c| c.values().is_empty() && !c.has_modifiers())
    {
        return true;
    }
    // `L`, `W` and `#` days exist in some month
    if p.days.has_modifiers() || p.days_of_week.has_modifiers() {
        return false;
    }
    let months = p.months.values();
    let longest = |m: u16| match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let some_day = p
        .days
        .values()
        .iter()
        .any(|&d| months.iter().any(|&m| d <= longest(m)));
    // every month has every weekday
    let some_weekday = !p.days_of_week.values().is_empty();
    match (p.is_dom_wildcard(), p.is_dow_wildcard()) {
        (true, true) => false,
        (true, false) => !some_weekday,
        (false, true) => !some_day,
        // both given: croner matches either, or both with `+`
        (false, false) if p.matches_dom_and_dow() => !(some_day && some_weekday),
        (false, false) => !(some_day || some_weekday),
    }
}

/// What the scheduler should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Run now, for the occurrence at `scheduled` (the latest one passed);
    /// `missed` earlier occurrences were coalesced into this run.
    Now {
        /// The occurrence this run stands for.
        scheduled: DateTime<Utc>,
        /// Occurrences before it since the last one acted on.
        missed: u32,
    },
    /// Nothing to do before `next` (`None`: the expression never matches again).
    Wait {
        /// The next occurrence.
        next: Option<DateTime<Utc>>,
    },
}

/// Parses an IANA time zone name (`UTC`, `Europe/Paris`, …).
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse()
        .map_err(|_| ScheduleError::TimeZone(name.into()))
}

impl Schedule {
    /// Parses `expression` in time zone `tz` (an IANA name; default UTC).
    pub fn parse(expression: &str, tz: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = tz.map(parse_time_zone).transpose()?.unwrap_or(Tz::UTC);
        Self::new(expression, tz)
    }

    /// Parses `expression` (5 fields, or 6 with seconds first) in `tz`.
    pub fn new(expression: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|source| ScheduleError::Cron {
                expression: expression.into(),
                source,
            })?;
        if never_matches(&cron.pattern) {
            return Err(ScheduleError::Never(expression.into()));
        }
        Ok(Schedule {
            expression: expression.into(),
            cron,
            tz,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// What to do at `now`, given the last scheduled time acted on (see the
    /// module's catch-up rule).
    pub fn due(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
        let Some(last) = last else {
            return Due::Wait {
                next: self.next_after(now),
            };
        };
        let mut latest = None;
        let mut count = 0u32;
        let mut t = last;
        while let Some(n) = self.next_after(t).filter(|n| *n <= now) {
            latest = Some(n);
            count += 1;
            if count >= MAX_COUNTED_MISSES {
                // jump to the last occurrence at or before now
                latest = self
                    .cron
                    .find_previous_occurrence(&now.with_timezone(&self.tz), true)
                    .ok()
                    .map(|p| p.with_timezone(&Utc))
                    .or(latest);
                break;
            }
            t = n;
        }
        match latest {
            Some(scheduled) => Due::Now {
                scheduled,
                missed: count - 1,
            },
            None => Due::Wait {
                next: self.next_after(now),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_occurrence_in_a_time_zone() {
        let s = Schedule::parse("0 2 * * *", Some("Europe/Paris")).unwrap();
        // 02:00 in Paris in winter is 01:00 UTC
        assert_eq!(
            s.next_after(t("2026-12-01T00:00:00Z")),
            Some(t("2026-12-01T01:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-12-01T01:00:00Z")),
            Some(t("2026-12-02T01:00:00Z"))
        );
        // in summer it is 00:00 UTC
        assert_eq!(
            s.next_after(t("2026-07-01T00:30:00Z")),
            Some(t("2026-07-02T00:00:00Z"))
        );
        let utc = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            utc.next_after(t("2026-12-01T10:07:00Z")),
            Some(t("2026-12-01T10:15:00Z"))
        );
    }

    #[test]
    fn due_runs_once_for_missed_occurrences() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        // acted on 10:00, now 10:30: wait for 11:00
        assert_eq!(
            s.due(Some(t("2026-12-01T10:00:00Z")), t("2026-12-01T10:30:00Z")),
            Due::Wait {
                next: Some(t("2026-12-01T11:00:00Z"))
            }
        );
        // exactly at 11:00: due, nothing missed
        assert_eq!(
            s.due(Some(t("2026-12-01T10:00:00Z")), t("2026-12-01T11:00:00Z")),
            Due::Now {
                scheduled: t("2026-12-01T11:00:00Z"),
                missed: 0
            }
        );
        // down from 10:30 to 14:10: 11, 12, 13, 14 passed: one run for 14:00
        assert_eq!(
            s.due(Some(t("2026-12-01T10:00:00Z")), t("2026-12-01T14:10:00Z")),
            Due::Now {
                scheduled: t("2026-12-01T14:00:00Z"),
                missed: 3
            }
        );
        // no record: no catch-up
        assert_eq!(
            s.due(None, t("2026-12-01T14:10:00Z")),
            Due::Wait {
                next: Some(t("2026-12-01T15:00:00Z"))
            }
        );
        // a very long outage is still one run, for the latest occurrence
        let every_minute = Schedule::parse("* * * * *", None).unwrap();
        assert_eq!(
            every_minute.due(Some(t("2026-01-01T00:00:00Z")), t("2026-12-01T14:10:30Z")),
            Due::Now {
                scheduled: t("2026-12-01T14:10:00Z"),
                missed: MAX_COUNTED_MISSES - 1
            }
        );
    }

    #[test]
    fn bad_schedules() {
        let e = Schedule::parse("61 * * * *", None).unwrap_err();
        assert!(e.to_string().contains("is not a cron expression"), "{e}");
        let e = Schedule::parse("0 2 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(e.to_string().contains("not an IANA time zone"), "{e}");
    }

    /// Found by tests/fuzz_text.rs: `0 , * * *` parses with no hour, and
    /// croner then searched hour by hour up to the year 5000 on every call.
    #[test]
    fn schedules_that_never_match_are_refused_at_once() {
        let started = std::time::Instant::now();
        for never in [
            "0 , * * *",
            ", 3 * * *",
            "0 3 , * *",
            "0 3 * , *",
            "0 0 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 31 2 ,",
        ] {
            let e = Schedule::parse(never, None).unwrap_err();
            assert!(matches!(e, ScheduleError::Never(_)), "{never}: {e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        let now = t("2026-12-01T00:00:00Z");
        for ok in [
            "0 0 29 2 *",
            "0 0 30 2 1",
            "0 0 31 * *",
            "0 0 L 2 *",
            "0 0 * * 5#5",
            "0 0 1W 2 *",
            "*/5 * * * * *",
        ] {
            let s = Schedule::parse(ok, None).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(s.next_after(now).is_some(), "{ok}");
        }
    }
}
