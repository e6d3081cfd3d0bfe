//! The SQLite side of the catalog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::model::{
    Ami, Artifact, BuildNumber, FinishedBuild, Image, ImageId, NewBuild, Parent, Status,
};
use super::{running, schema, CatalogError, ImageRef};
use crate::recipe::Version;
use crate::util::flock::FileLock;
use crate::util::redact;

/// A JSON value as stored: text, every secret in its strings masked.
fn shown_json(v: &serde_json::Value) -> String {
    let mut v = v.clone();
    redact::json(&mut v);
    v.to_string()
}

/// A `u64` stored as SQLite's signed 64-bit integer, checked both ways.
#[derive(Clone, Copy)]
struct U(u64);

impl rusqlite::ToSql for U {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        i64::try_from(self.0)
            .map(rusqlite::types::ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl rusqlite::types::FromSql for U {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let n = i64::column_result(v)?;
        u64::try_from(n)
            .map(U)
            .map_err(|_| rusqlite::types::FromSqlError::OutOfRange(n))
    }
}

fn u(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    r.get::<_, U>(i).map(|x| x.0)
}

/// How long a write waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const IMAGE_COLUMNS: &str = "id, name, major, minor, patch, build, status, keep, pipeline, \
     inputs_digest, parent_image_id, parent_digest, parent_origin, test_results, log_location, \
     location, failure, created_at, finished_at, inputs, events";

/// An open catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
    /// The builds this catalog began and has not settled: their locks say
    /// a kiln process works on them (see [`running`]).
    running: HashMap<ImageId, FileLock>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Catalog {
    /// Opens (creating it and its folder if needed) the catalog at `path`,
    /// in WAL mode with a busy timeout, and migrates it to the current
    /// schema. Entries left `building` by a kiln process that is gone are
    /// marked failed, in one line on standard error (see [`running`]).
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sql = |what: &str| sql_error(path, what.to_string());
        let mut conn = Connection::open(path).map_err(sql("opening"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("switching to WAL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        let known = schema::current_version();
        let found = schema::migrate_to(&mut conn, known).map_err(sql("migrating the schema"))?;
        if found > known {
            return Err(CatalogError::NewerSchema {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        let mut catalog = Catalog {
            conn,
            path: path.to_path_buf(),
            running: HashMap::new(),
        };
        let interrupted = catalog.reconcile()?;
        if !interrupted.is_empty() {
            eprintln!(
                "kiln: {} build(s) in {} had no kiln process left (killed or crashed): marked failed: {}",
                interrupted.len(),
                path.display(),
                interrupted.join(", ")
            );
        }
        Ok(catalog)
    }

    /// Marks failed ([`running::INTERRUPTED`]) the `building` entries whose
    /// kiln process is gone, and removes the locks of settled builds.
    /// Returns the entries it failed, `NAME/x.y.z/n`.
    pub fn reconcile(&mut self) -> Result<Vec<String>, CatalogError> {
        let building = self.select("WHERE status = 'building' ORDER BY id", [])?;
        let mut failed = Vec::new();
        for image in &building {
            if self.running.contains_key(&image.id) {
                continue;
            }
            let Some(lock) = running::owner_gone(&self.path, image.id) else {
                continue;
            };
            // the lock (held now) keeps a racing reconciler out; the status
            // check, a build that settled meanwhile
            let changed = self
                .conn
                .execute(
                    "UPDATE images SET status = 'failed', failure = ?2, finished_at = ?3
                     WHERE id = ?1 AND status = 'building'",
                    params![image.id, running::INTERRUPTED, now()],
                )
                .map_err(self.sql("marking an interrupted build failed"))?;
            if changed == 1 {
                failed.push(image.full_name());
            }
            if let Some(lock) = lock {
                lock.release_and_remove();
            }
        }
        // locks of builds another catalog handle settled
        for id in running::lock_ids(&self.path) {
            if building.iter().any(|i| i.id == id) || self.running.contains_key(&id) {
                continue;
            }
            if let Some(Some(lock)) = running::owner_gone(&self.path, id) {
                lock.release_and_remove();
            }
        }
        Ok(failed)
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> CatalogError {
        sql_error(&self.path, what)
    }

    /// Records a started build and assigns its build number: one more than
    /// the highest of the same name and version, inside an IMMEDIATE
    /// transaction so concurrent kiln processes never get the same number.
    pub fn begin_build(&mut self, new: &NewBuild) -> Result<BuildNumber, CatalogError> {
        let path = self.path.clone();
        let sql = |what: &'static str| sql_error(&path, what);
        let tx = immediate(&mut self.conn, &path)?;
        let v = new.version;
        let build: u64 = tx
            .query_row(
                "SELECT COALESCE(MAX(build), 0) + 1 FROM images
                 WHERE name = ?1 AND major = ?2 AND minor = ?3 AND patch = ?4",
                params![new.name, U(v.major), U(v.minor), U(v.patch)],
                |r| u(r, 0),
            )
            .map_err(sql("choosing a build number"))?;
        let parent = new.parent.as_ref();
        let origin = parent.map(|p| redact::text(&p.origin));
        let inputs = new.inputs.as_ref().map(shown_json);
        tx.execute(
            "INSERT INTO images (name, major, minor, patch, build, status, inputs_digest,
                 parent_image_id, parent_digest, parent_origin, pipeline, created_at, inputs,
                 events)
             VALUES (?1, ?2, ?3, ?4, ?5, 'building', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                new.name,
                U(v.major),
                U(v.minor),
                U(v.patch),
                U(build),
                new.inputs_digest,
                parent.and_then(|p| p.image_id),
                parent.map(|p| &p.sha256),
                origin,
                new.pipeline,
                now(),
                inputs,
                new.events,
            ],
        )
        .map_err(sql("recording the build"))?;
        let id = tx.last_insert_rowid();
        // held before anyone can see the entry: a reconciler never takes a
        // starting build for a dead one
        let lock = running::hold(&path, id)?;
        tx.commit().map_err(sql("committing the build"))?;
        self.running.insert(id, lock);
        Ok(BuildNumber { id, build })
    }

    /// Marks a building image available with its files, AMIs, tests and logs.
    pub fn finish_build(&mut self, id: ImageId, done: &FinishedBuild) -> Result<(), CatalogError> {
        let image = self.get(id)?;
        if image.status != Status::Building {
            return Err(wrong(&image, "finishing a build", "building"));
        }
        let path = self.path.clone();
        let sql = |what: &'static str| sql_error(&path, what);
        let tests = done.test_results.as_ref().map(shown_json);
        let tx = immediate(&mut self.conn, &path)?;
        for a in &done.artifacts {
            tx.execute(
                "INSERT OR REPLACE INTO artifacts (image_id, path, format, sha256, size)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, a.path, a.format, a.sha256, U(a.size)],
            )
            .map_err(sql("recording an artifact"))?;
        }
        for a in &done.amis {
            tx.execute(
                "INSERT OR REPLACE INTO amis (image_id, region, ami_id) VALUES (?1, ?2, ?3)",
                params![id, a.region, a.ami_id],
            )
            .map_err(sql("recording an AMI"))?;
        }
        tx.execute(
            "UPDATE images SET status = 'available', test_results = ?2, log_location = ?3,
                 location = ?4, finished_at = ?5 WHERE id = ?1 AND status = 'building'",
            params![id, tests, done.log_location, done.location, now()],
        )
        .map_err(sql("marking the image available"))?;
        tx.commit().map_err(sql("committing the build"))?;
        self.settled(id);
        Ok(())
    }

    /// A build this catalog began is settled: its lock goes.
    fn settled(&mut self, id: ImageId) {
        if let Some(lock) = self.running.remove(&id) {
            lock.release_and_remove();
        }
    }

    /// Marks a building image failed, with why (secrets masked) and where
    /// its logs are.
    pub fn fail_build(
        &mut self,
        id: ImageId,
        reason: &str,
        log_location: Option<&str>,
    ) -> Result<(), CatalogError> {
        let image = self.get(id)?;
        if image.status != Status::Building {
            return Err(wrong(&image, "failing a build", "building"));
        }
        self.conn
            .execute(
                "UPDATE images SET status = 'failed', failure = ?2, log_location = ?3,
                     finished_at = ?4 WHERE id = ?1",
                params![id, redact::text(reason), log_location, now()],
            )
            .map_err(self.sql("marking the image failed"))?;
        self.settled(id);
        Ok(())
    }

    /// Adds (or replaces) the AMI of an image in a region.
    pub fn add_ami(&mut self, id: ImageId, ami: &Ami) -> Result<(), CatalogError> {
        self.get(id)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO amis (image_id, region, ami_id) VALUES (?1, ?2, ?3)",
                params![id, ami.region, ami.ami_id],
            )
            .map_err(self.sql("recording an AMI"))?;
        Ok(())
    }

    /// Deprecates an available image: wildcards no longer resolve to it.
    pub fn deprecate(&mut self, id: ImageId) -> Result<(), CatalogError> {
        let image = self.get(id)?;
        match image.status {
            Status::Available => {}
            Status::Deprecated => return Ok(()),
            _ => return Err(wrong(&image, "deprecating", "available")),
        }
        self.conn
            .execute(
                "UPDATE images SET status = 'deprecated' WHERE id = ?1",
                params![id],
            )
            .map_err(self.sql("deprecating the image"))?;
        Ok(())
    }

    /// Sets or clears an image's keep mark.
    pub fn set_keep(&mut self, id: ImageId, keep: bool) -> Result<(), CatalogError> {
        self.get(id)?;
        self.conn
            .execute(
                "UPDATE images SET keep = ?2 WHERE id = ?1",
                params![id, keep],
            )
            .map_err(self.sql("setting the keep mark"))?;
        Ok(())
    }

    /// Removes an image from the catalog and returns what it was (its files
    /// stay on disk: the caller removes them). Refused for a building
    /// image, an image marked keep, and the parent of any other image.
    pub fn delete(&mut self, id: ImageId) -> Result<Image, CatalogError> {
        let path = self.path.clone();
        let sql = |what: &'static str| sql_error(&path, what);
        let tx = immediate(&mut self.conn, &path)?;
        let image = read_image(&tx, &self.path, id)?;
        if image.status == Status::Building {
            return Err(wrong(&image, "deleting", "available, deprecated or failed"));
        }
        if image.keep {
            return Err(CatalogError::Kept {
                image: image.full_name(),
            });
        }
        let children = {
            let mut st = tx
                .prepare(
                    "SELECT name, major, minor, patch, build FROM images
                     WHERE parent_image_id = ?1 ORDER BY id",
                )
                .map_err(sql("finding child images"))?;
            let rows = st
                .query_map(params![id], |r| {
                    Ok(format!(
                        "{}/{}.{}.{}/{}",
                        r.get::<_, String>(0)?,
                        u(r, 1)?,
                        u(r, 2)?,
                        u(r, 3)?,
                        u(r, 4)?
                    ))
                })
                .map_err(sql("finding child images"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sql("finding child images"))?
        };
        if !children.is_empty() {
            return Err(CatalogError::ParentOfOthers {
                image: image.full_name(),
                children,
            });
        }
        tx.execute("DELETE FROM images WHERE id = ?1", params![id])
            .map_err(sql("deleting the image"))?;
        tx.commit().map_err(sql("committing the delete"))?;
        Ok(image)
    }

    /// The image with catalog id `id`.
    pub fn get(&self, id: ImageId) -> Result<Image, CatalogError> {
        read_image(&self.conn, &self.path, id)
    }

    /// Every image, optionally of one name, oldest first.
    pub fn list(&self, name: Option<&str>) -> Result<Vec<Image>, CatalogError> {
        self.select(
            "WHERE (?1 IS NULL OR name = ?1) ORDER BY name, major, minor, patch, build",
            params![name],
        )
    }

    /// The images a pipeline built, oldest first.
    pub fn list_pipeline(&self, pipeline: &str) -> Result<Vec<Image>, CatalogError> {
        self.select("WHERE pipeline = ?1 ORDER BY id", params![pipeline])
    }

    /// The newest image matching `r`: any status for an exact build
    /// (`web/1.2.3/4`); otherwise the highest version and build that is
    /// available (deprecated and failed images are skipped, as Image Builder
    /// skips deprecated images for wildcards).
    pub fn find(&self, r: &ImageRef) -> Result<Image, CatalogError> {
        let not_found = || CatalogError::NotFound {
            what: r.to_string(),
        };
        if let Some((v, build)) = r.exact() {
            let mut found = self.select(
                "WHERE name = ?1 AND major = ?2 AND minor = ?3 AND patch = ?4 AND build = ?5",
                params![r.name, U(v.major), U(v.minor), U(v.patch), U(build)],
            )?;
            return found.pop().ok_or_else(not_found);
        }
        self.resolve(&r.name, &r.filter)?.ok_or_else(not_found)
    }

    /// The newest available image of `name` whose version matches `filter`
    /// (highest version, then highest build), or `None`.
    pub fn resolve(
        &self,
        name: &str,
        filter: &crate::recipe::VersionFilter,
    ) -> Result<Option<Image>, CatalogError> {
        let mut found = self.select(
            "WHERE name = ?1 AND status = 'available'
               AND (?2 IS NULL OR major = ?2) AND (?3 IS NULL OR minor = ?3)
               AND (?4 IS NULL OR patch = ?4) AND (?5 IS NULL OR build = ?5)
             ORDER BY major DESC, minor DESC, patch DESC, build DESC LIMIT 1",
            params![
                name,
                filter.major.map(U),
                filter.minor.map(U),
                filter.patch.map(U),
                filter.build.map(U)
            ],
        )?;
        Ok(found.pop())
    }

    /// The image whose qcow2 disk has sha256 `digest` (the newest if
    /// several), or `None`: how a build's parent is recognised as a catalog
    /// image whatever way the recipe named it.
    pub fn find_by_disk_digest(&self, digest: &str) -> Result<Option<Image>, CatalogError> {
        let mut found = self.select(
            "WHERE id IN (SELECT image_id FROM artifacts WHERE format = 'qcow2' AND sha256 = ?1)
               AND status IN ('available', 'deprecated')
             ORDER BY id DESC LIMIT 1",
            params![digest],
        )?;
        Ok(found.pop())
    }

    /// The most recent successful build (available or deprecated) of
    /// images named `name`, or `None`.
    pub fn last_successful(&self, name: &str) -> Result<Option<Image>, CatalogError> {
        let mut found = self.select(
            "WHERE name = ?1 AND status IN ('available', 'deprecated') ORDER BY id DESC LIMIT 1",
            params![name],
        )?;
        Ok(found.pop())
    }

    /// The most recent successful build (available or deprecated) of a
    /// pipeline, or `None`.
    pub fn last_successful_of_pipeline(
        &self,
        pipeline: &str,
    ) -> Result<Option<Image>, CatalogError> {
        let mut found = self.select(
            "WHERE pipeline = ?1 AND status IN ('available', 'deprecated') ORDER BY id DESC LIMIT 1",
            params![pipeline],
        )?;
        Ok(found.pop())
    }

    /// The last scheduled occurrence the scheduler acted on for
    /// `pipeline` (see [`crate::pipeline::schedule`]'s catch-up rule).
    pub fn schedule_last(&self, pipeline: &str) -> Result<Option<DateTime<Utc>>, CatalogError> {
        let seconds: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_scheduled FROM schedule_state WHERE pipeline = ?1",
                params![pipeline],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("reading the schedule state"))?;
        Ok(seconds.and_then(|s| DateTime::from_timestamp(s, 0)))
    }

    /// Remembers that the scheduler acted on `pipeline`'s occurrence `at`.
    pub fn set_schedule_last(
        &mut self,
        pipeline: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "INSERT INTO schedule_state (pipeline, last_scheduled, updated_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (pipeline) DO UPDATE SET last_scheduled = ?2, updated_at = ?3",
                params![pipeline, at.timestamp(), now()],
            )
            .map_err(self.sql("writing the schedule state"))?;
        Ok(())
    }

    /// The `limit` most recent builds (any status), newest first, of one
    /// pipeline or of all.
    pub fn recent(&self, pipeline: Option<&str>, limit: u64) -> Result<Vec<Image>, CatalogError> {
        self.select(
            "WHERE (?1 IS NULL OR pipeline = ?1) ORDER BY id DESC LIMIT ?2",
            params![pipeline, U(limit)],
        )
    }

    fn select(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<Image>, CatalogError> {
        let q = format!("SELECT {IMAGE_COLUMNS} FROM images {tail}");
        let mut st = self.conn.prepare(&q).map_err(self.sql("listing images"))?;
        let rows = st
            .query_map(p, raw_row)
            .map_err(self.sql("listing images"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql("listing images"))?;
        rows.into_iter()
            .map(|raw| complete(&self.conn, &self.path, raw))
            .collect()
    }
}

fn wrong(image: &Image, action: &'static str, wanted: &'static str) -> CatalogError {
    CatalogError::WrongStatus {
        image: image.full_name(),
        status: image.status,
        action,
        wanted,
    }
}

/// A row of `images` before its text columns are checked.
struct RawImage {
    id: ImageId,
    name: String,
    version: (u64, u64, u64),
    build: u64,
    status: String,
    keep: bool,
    pipeline: Option<String>,
    inputs_digest: String,
    parent: (Option<ImageId>, Option<String>, Option<String>),
    test_results: Option<String>,
    log_location: Option<String>,
    location: Option<String>,
    failure: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    inputs: Option<String>,
    events: Option<String>,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawImage> {
    Ok(RawImage {
        id: r.get(0)?,
        name: r.get(1)?,
        version: (u(r, 2)?, u(r, 3)?, u(r, 4)?),
        build: u(r, 5)?,
        status: r.get(6)?,
        keep: r.get(7)?,
        pipeline: r.get(8)?,
        inputs_digest: r.get(9)?,
        parent: (r.get(10)?, r.get(11)?, r.get(12)?),
        test_results: r.get(13)?,
        log_location: r.get(14)?,
        location: r.get(15)?,
        failure: r.get(16)?,
        created_at: r.get(17)?,
        finished_at: r.get(18)?,
        inputs: r.get(19)?,
        events: r.get(20)?,
    })
}

fn read_image(conn: &Connection, path: &Path, id: ImageId) -> Result<Image, CatalogError> {
    let raw = conn
        .query_row(
            &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1"),
            params![id],
            raw_row,
        )
        .optional()
        .map_err(sql_error(path, format!("reading image {id}")))?
        .ok_or_else(|| CatalogError::NotFound {
            what: format!("with id {id}"),
        })?;
    complete(conn, path, raw)
}

/// Checks a raw row and adds its artifacts and AMIs.
fn complete(conn: &Connection, path: &Path, raw: RawImage) -> Result<Image, CatalogError> {
    let corrupt = |what: &'static str, detail: String| CatalogError::Corrupt {
        path: path.to_path_buf(),
        id: raw.id,
        what,
        detail,
    };
    let sql = |what: &'static str| sql_error(path, what);
    let status = raw.status.parse().map_err(|e| corrupt("status", e))?;
    let json = |text: Option<&str>, what: &'static str| {
        text.map(serde_json::from_str::<serde_json::Value>)
            .transpose()
            .map_err(|e| corrupt(what, e.to_string()))
    };
    let test_results = json(raw.test_results.as_deref(), "test_results")?;
    let inputs = json(raw.inputs.as_deref(), "inputs")?;
    let parent = match raw.parent {
        (image_id, Some(sha256), origin) => Some(Parent {
            image_id,
            sha256,
            origin: origin.unwrap_or_default(),
        }),
        (None, None, _) => None,
        (Some(p), None, _) => {
            return Err(corrupt("parent", format!("image {p} without a digest")));
        }
    };
    let mut st = conn
        .prepare_cached(
            "SELECT path, format, sha256, size FROM artifacts WHERE image_id = ?1 ORDER BY path",
        )
        .map_err(sql("reading artifacts"))?;
    let artifacts = st
        .query_map(params![raw.id], |r| {
            Ok(Artifact {
                path: r.get(0)?,
                format: r.get(1)?,
                sha256: r.get(2)?,
                size: u(r, 3)?,
            })
        })
        .map_err(sql("reading artifacts"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("reading artifacts"))?;
    let mut st = conn
        .prepare_cached("SELECT region, ami_id FROM amis WHERE image_id = ?1 ORDER BY region")
        .map_err(sql("reading AMIs"))?;
    let amis = st
        .query_map(params![raw.id], |r| {
            Ok(Ami {
                region: r.get(0)?,
                ami_id: r.get(1)?,
            })
        })
        .map_err(sql("reading AMIs"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("reading AMIs"))?;
    let (major, minor, patch) = raw.version;
    Ok(Image {
        id: raw.id,
        name: raw.name,
        version: Version {
            major,
            minor,
            patch,
        },
        build: raw.build,
        status,
        keep: raw.keep,
        pipeline: raw.pipeline,
        inputs_digest: raw.inputs_digest,
        inputs,
        events: raw.events,
        parent,
        artifacts,
        amis,
        test_results,
        log_location: raw.log_location,
        location: raw.location,
        failure: raw.failure,
        created_at: raw.created_at,
        finished_at: raw.finished_at,
    })
}

/// Starts an IMMEDIATE transaction (the write lock is taken at once, so two
/// kiln processes serialize instead of failing at commit).
fn immediate<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>, CatalogError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error(path, "starting a transaction"))
}

/// A `map_err` adapter for SQL failures on the catalog at `path`.
fn sql_error(path: &Path, what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> CatalogError {
    let (path, what) = (path.to_path_buf(), what.into());
    move |source| CatalogError::Sql { path, what, source }
}
