//! Retention: which images of a pipeline go, and why. Pure: the caller
//! reads the catalog and deletes.
//!
//! The rules, applied to the images a pipeline built (status `building`
//! is never touched):
//! - `keepLast: N` keeps the N newest successful images (available or
//!   deprecated); older successful ones go. A failed build is kept only
//!   while it is newer than the newest successful image (the evidence of
//!   what is broken now), and goes once a later build succeeded.
//! - `maxAgeDays: D` removes images created more than D days before now.
//! - Both given: an image goes when either rule says so.
//! - Never removed, whatever the rules: an image marked keep, and any
//!   ancestor (parent, grandparent, …) of an image that stays in the
//!   catalog, in this pipeline or any other.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::catalog::{Image, ImageId, Status};

/// A pipeline's retention settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep this many newest successful images.
    pub keep_last: Option<u32>,
    /// Remove images older than this.
    pub max_age: Option<Duration>,
}

/// One image's fate, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The catalog id.
    pub id: ImageId,
    /// `NAME/x.y.z/n`.
    pub image: String,
    /// Why it goes or stays.
    pub reason: String,
}

/// What retention would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Images to delete, children before their parents (newest first).
    pub delete: Vec<Decision>,
    /// Images of the pipeline that stay, with why.
    pub keep: Vec<Decision>,
}

fn created(image: &Image) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&image.created_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Plans retention for `pipeline` over `all` (every image of the catalog,
/// so that parents of other pipelines' images are protected) at `now`.
pub fn plan(pipeline: &str, all: &[Image], policy: &RetentionPolicy, now: DateTime<Utc>) -> Plan {
    let mut mine: Vec<&Image> = all
        .iter()
        .filter(|i| i.pipeline.as_deref() == Some(pipeline))
        .collect();
    mine.sort_by_key(|i| std::cmp::Reverse(i.id));
    let successful = |i: &Image| matches!(i.status, Status::Available | Status::Deprecated);
    let newest_success = mine.iter().find(|i| successful(i)).map(|i| i.id);

    // first pass: the policy alone
    let mut going: HashMap<ImageId, String> = HashMap::new();
    let mut staying: HashMap<ImageId, String> = HashMap::new();
    let mut rank = 0u32;
    for i in &mine {
        let mut reasons = Vec::new();
        let mut keep_reason = "within the retention policy".to_string();
        match i.status {
            Status::Building => {
                staying.insert(i.id, "still building".into());
                continue;
            }
            Status::Available | Status::Deprecated => {
                rank += 1;
                if let Some(n) = policy.keep_last {
                    if rank > n {
                        reasons.push(format!("older than the {n} newest successful builds"));
                    } else {
                        keep_reason = format!("one of the {n} newest successful builds");
                    }
                }
            }
            Status::Failed => {
                if newest_success.is_some_and(|s| s > i.id) {
                    reasons.push("failed, and a later build succeeded".to_string());
                } else {
                    keep_reason = "the latest failure, after the last success".into();
                }
            }
        }
        if let Some(max) = policy.max_age {
            match created(i) {
                Some(t) if now - t > max => {
                    reasons.push(format!("older than {} days", max.num_days()))
                }
                Some(_) => {}
                None => {
                    staying.insert(i.id, "its creation time cannot be read".into());
                    continue;
                }
            }
        }
        if i.keep {
            staying.insert(i.id, "marked keep".into());
        } else if reasons.is_empty() {
            staying.insert(i.id, keep_reason);
        } else {
            going.insert(i.id, reasons.join("; "));
        }
    }

    // second pass: every ancestor of an image that stays (anywhere) stays
    let by_id: HashMap<ImageId, &Image> = all.iter().map(|i| (i.id, i)).collect();
    let remaining: Vec<&Image> = all.iter().filter(|i| !going.contains_key(&i.id)).collect();
    let mut seen = HashSet::new();
    for child in remaining {
        let mut cur = child;
        while let Some(pid) = cur.parent.as_ref().and_then(|p| p.image_id) {
            let Some(parent) = by_id.get(&pid) else { break };
            if going.remove(&pid).is_some() {
                staying.insert(pid, format!("parent of {}, which stays", cur.full_name()));
            }
            if !seen.insert((pid, cur.id)) {
                break;
            }
            cur = parent;
        }
    }

    let decide = |ids: &HashMap<ImageId, String>| {
        let mut v: Vec<Decision> = mine
            .iter()
            .filter_map(|i| {
                ids.get(&i.id).map(|r| Decision {
                    id: i.id,
                    image: i.full_name(),
                    reason: r.clone(),
                })
            })
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.id));
        v
    };
    Plan {
        delete: decide(&going),
        keep: decide(&staying),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Parent;

    fn image(id: ImageId, status: Status, days_old: i64, now: DateTime<Utc>) -> Image {
        Image {
            status,
            pipeline: Some("p".into()),
            created_at: (now - Duration::days(days_old)).to_rfc3339(),
            ..Image::sample(id, "web", "1.0.0", id as u64)
        }
    }

    fn ids(d: &[Decision]) -> Vec<ImageId> {
        d.iter().map(|d| d.id).collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn keep_last_counts_successful_builds_and_drops_old_failures() {
        let n = now();
        let all = vec![
            image(1, Status::Available, 5, n),
            image(2, Status::Failed, 4, n),
            image(3, Status::Deprecated, 3, n),
            image(4, Status::Available, 2, n),
            image(5, Status::Failed, 1, n),
            image(6, Status::Building, 0, n),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(2),
            max_age: None,
        };
        let p = plan("p", &all, &policy, n);
        assert_eq!(ids(&p.delete), [2, 1]);
        assert_eq!(ids(&p.keep), [6, 5, 4, 3]);
        assert!(p.delete[1].reason.contains("older than the 2 newest"));
        assert!(p.delete[0].reason.contains("a later build succeeded"));
        // other pipelines' images are not candidates
        assert!(plan("other", &all, &policy, n).delete.is_empty());
    }

    #[test]
    fn max_age_and_keep_marks() {
        let n = now();
        let mut all = vec![
            image(1, Status::Available, 40, n),
            image(2, Status::Available, 31, n),
            image(3, Status::Available, 10, n),
        ];
        all[1].keep = true;
        let policy = RetentionPolicy {
            keep_last: None,
            max_age: Some(Duration::days(30)),
        };
        let p = plan("p", &all, &policy, n);
        assert_eq!(ids(&p.delete), [1]);
        assert_eq!(p.delete[0].reason, "older than 30 days");
        assert_eq!(p.keep[1].reason, "marked keep");
        // both rules: either one removes
        let both = RetentionPolicy {
            keep_last: Some(1),
            max_age: Some(Duration::days(30)),
        };
        assert_eq!(ids(&plan("p", &all, &both, n).delete), [1]);
        all[1].keep = false;
        assert_eq!(ids(&plan("p", &all, &both, n).delete), [2, 1]);
    }

    #[test]
    fn ancestors_of_remaining_images_are_kept() {
        let n = now();
        let mut all = vec![
            image(1, Status::Available, 9, n),
            image(2, Status::Available, 8, n),
            image(3, Status::Available, 7, n),
            image(4, Status::Available, 1, n),
        ];
        // 2 was built on 1; 3 of another pipeline, built on 2, stays
        let parent_of = |id| Parent {
            image_id: Some(id),
            sha256: String::new(),
            origin: String::new(),
        };
        all[1].parent = Some(parent_of(1));
        all[2].parent = Some(parent_of(2));
        all[2].pipeline = Some("other".into());
        let policy = RetentionPolicy {
            keep_last: Some(1),
            max_age: None,
        };
        let p = plan("p", &all, &policy, n);
        assert!(p.delete.is_empty(), "{:?}", p.delete);
        let reasons: Vec<&str> = p.keep.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "one of the 1 newest successful builds",
                "parent of web/1.0.0/3, which stays",
                "parent of web/1.0.0/2, which stays"
            ]
        );
        // once the other pipeline's image is gone, the chain can go too
        all.remove(2);
        assert_eq!(ids(&plan("p", &all, &policy, n).delete), [2, 1]);
    }
}
