//! What killed builds leave in an output folder, and how the next build
//! there cleans it up.
//!
//! A build holds an exclusive lock (`flock`) on `.kiln-tmp/<id>/lock` from
//! the moment its folder exists until the folder is gone. The kernel drops
//! a lock when its process ends, SIGKILL included, so a folder whose lock
//! is free belongs to a build that will never finish: its logs are moved to
//! `failed/<name>-<version>-<id>/` (as an interrupted build's are), a
//! version it had moved aside to replace is put back, and the folder is
//! removed. Free `<name>@<version>.lock` files are removed too.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::util::flock::{read_note, Attempt, FileLock};

/// The folder of builds in progress under an output folder.
pub const TMP: &str = ".kiln-tmp";

/// The lock file inside a build's folder.
pub const BUILD_LOCK: &str = "lock";

/// A build folder without a lock file is taken for a leftover (of a kiln
/// killed while creating it, or of an older kiln) only after this long.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// Who holds a build folder, as its lock file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// The kiln process.
    pub pid: u32,
    /// The image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where the image is published.
    pub destination: PathBuf,
}

impl Owner {
    /// The lock file's note: one `key value` line each.
    pub fn note(&self) -> String {
        format!(
            "pid {}\nname {}\nversion {}\ndestination {}\n",
            self.pid,
            self.name,
            self.version,
            self.destination.display()
        )
    }

    /// Reads a note written by [`Owner::note`].
    pub fn parse(note: &str) -> Option<Owner> {
        let mut owner = Owner::default();
        for line in note.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "pid" => owner.pid = value.parse().ok()?,
                "name" => owner.name = value.to_string(),
                "version" => owner.version = value.to_string(),
                "destination" => owner.destination = PathBuf::from(value),
                _ => {}
            }
        }
        Some(owner)
    }
}

/// The pid in a lock file's note (`pid N` on its first line), if any.
pub fn holder_pid(lock: &Path) -> Option<u32> {
    let note = read_note(lock)?;
    note.lines().next()?.strip_prefix("pid ")?.parse().ok()
}

/// One cleaned-up build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The build id (its folder's name).
    pub id: String,
    /// Where its logs went, if it had any.
    pub logs: Option<PathBuf>,
}

/// Cleans up after the dead builds of `output` (see the module docs);
/// folders of live builds, and anything that cannot be checked, stay.
pub fn reconcile(output: &Path) -> Vec<Removed> {
    let tmp = output.join(TMP);
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind.is_file() && name.ends_with(".lock") {
            if let Ok(Attempt::Locked(lock)) = FileLock::try_lock(&path, false) {
                lock.release_and_remove();
            }
        } else if kind.is_dir() {
            if let Some(r) = reconcile_build(output, &path, &name) {
                removed.push(r);
            }
        }
    }
    // the folder goes when nothing is left in it
    let _ = std::fs::remove_dir(&tmp);
    removed
}

/// Cleans up one build folder if its build is dead.
fn reconcile_build(output: &Path, dir: &Path, id: &str) -> Option<Removed> {
    let lock = match FileLock::try_lock(&dir.join(BUILD_LOCK), false) {
        Ok(Attempt::Locked(lock)) => Some(lock),
        Ok(Attempt::Missing) => {
            let age = std::fs::metadata(dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())?;
            if age < UNLOCKED_GRACE {
                return None; // maybe a build that is creating its folder
            }
            None // nothing to hold: nobody holds it either
        }
        Ok(Attempt::Held) | Err(_) => return None,
    };
    let owner = read_note(&dir.join(BUILD_LOCK))
        .as_deref()
        .and_then(Owner::parse);
    // a version moved aside by a publish that never completed goes back
    let replaced = dir.join("replaced");
    if let Some(o) = &owner {
        if replaced.exists() && !o.destination.as_os_str().is_empty() && !o.destination.exists() {
            if let Some(parent) = o.destination.parent() {
                std::fs::create_dir_all(parent).ok()?;
            }
            std::fs::rename(&replaced, &o.destination).ok()?;
        }
    }
    let logs = dir.join("stage").join("logs");
    let kept = if logs.is_dir() {
        let label = match &owner {
            Some(o) => format!("{}-{}-{id}", o.name, o.version),
            None => id.to_string(),
        };
        let to = output.join("failed").join(label);
        std::fs::create_dir_all(output.join("failed")).ok()?;
        // logs that cannot be moved keep the folder for another try
        std::fs::rename(&logs, &to).ok()?;
        Some(to)
    } else {
        None
    };
    std::fs::remove_dir_all(dir).ok()?;
    drop(lock);
    Some(Removed {
        id: id.to_string(),
        logs: kept,
    })
}

/// One line saying what [`reconcile`] did, if it did anything.
pub fn summary(output: &Path, removed: &[Removed]) -> Option<String> {
    if removed.is_empty() {
        return None;
    }
    let ids: Vec<&str> = removed.iter().map(|r| r.id.as_str()).collect();
    let logs = if removed.iter().any(|r| r.logs.is_some()) {
        format!("; their logs are in {}", output.join("failed").display())
    } else {
        String::new()
    };
    Some(format!(
        "removed the temporary files of {} interrupted build(s) in {} ({}): their kiln process is gone{logs}",
        removed.len(),
        output.join(TMP).display(),
        ids.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_notes_round_trip() {
        let o = Owner {
            pid: 42,
            name: "web".into(),
            version: "1.2.3".into(),
            destination: "/out/web/1.2.3".into(),
        };
        assert_eq!(Owner::parse(&o.note()), Some(o));
        assert_eq!(Owner::parse("garbage"), None);
    }

    #[test]
    fn live_builds_stay_dead_ones_go_with_their_logs_kept() {
        let out = tempfile::tempdir().unwrap();
        let tmp = out.path().join(TMP);
        let make = |id: &str| {
            let dir = tmp.join(id);
            std::fs::create_dir_all(dir.join("stage/logs")).unwrap();
            std::fs::write(dir.join("stage/logs/kiln.log"), id).unwrap();
            let mut lock = FileLock::try_exclusive(&dir.join(BUILD_LOCK))
                .unwrap()
                .unwrap();
            let owner = Owner {
                pid: 7,
                name: "web".into(),
                version: "1.0.0".into(),
                destination: out.path().join("web/1.0.0"),
            };
            lock.set_note(&owner.note()).unwrap();
            lock
        };
        let live = make("live1");
        drop(make("dead1"));
        // a dead build that had moved the published version aside
        let dead2 = make("dead2");
        std::fs::create_dir_all(tmp.join("dead2/replaced")).unwrap();
        std::fs::write(tmp.join("dead2/replaced/image.qcow2"), b"old").unwrap();
        drop(dead2);
        // a stale version lock, and a held one
        drop(FileLock::try_exclusive(&tmp.join("web@1.0.0.lock")).unwrap());
        let held = FileLock::try_exclusive(&tmp.join("db@2.0.0.lock"))
            .unwrap()
            .unwrap();
        // a folder without a lock, just created
        std::fs::create_dir_all(tmp.join("fresh")).unwrap();

        let mut removed = reconcile(out.path());
        removed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            removed,
            [
                Removed {
                    id: "dead1".into(),
                    logs: Some(out.path().join("failed/web-1.0.0-dead1")),
                },
                Removed {
                    id: "dead2".into(),
                    logs: Some(out.path().join("failed/web-1.0.0-dead2")),
                },
            ]
        );
        assert_eq!(
            std::fs::read(out.path().join("failed/web-1.0.0-dead1/kiln.log")).unwrap(),
            b"dead1"
        );
        assert_eq!(
            std::fs::read(out.path().join("web/1.0.0/image.qcow2")).unwrap(),
            b"old",
            "the replaced version is back"
        );
        assert!(tmp.join("live1/stage/logs/kiln.log").exists());
        assert!(tmp.join("fresh").exists());
        assert!(!tmp.join("web@1.0.0.lock").exists());
        assert!(tmp.join("db@2.0.0.lock").exists());
        let line = summary(out.path(), &removed).unwrap();
        assert!(
            line.contains("2 interrupted build(s)") && line.contains("dead1, dead2"),
            "{line}"
        );
        assert_eq!(summary(out.path(), &[]), None);
        drop((live, held));
    }
}
