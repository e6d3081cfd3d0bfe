//! The catalog's SQLite schema, as migrations counted by `PRAGMA user_version`.

use rusqlite::Connection;

/// Each migration's SQL, in order: after applying the first `n`,
/// `user_version` is `n`. Never edit a released one: add another.
pub const MIGRATIONS: &[&str] = &[
    // 1: images and their files
    "CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        major INTEGER NOT NULL,
        minor INTEGER NOT NULL,
        patch INTEGER NOT NULL,
        build INTEGER NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('building', 'available', 'failed', 'deprecated')),
        inputs_digest TEXT NOT NULL,
        parent_image_id INTEGER REFERENCES images(id),
        parent_digest TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (name, major, minor, patch, build)
    );
    CREATE TABLE artifacts (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (image_id, path)
    );",
    // 2: keep flag, pipelines, parent origin, tests, logs, published folder,
    // failures, AMIs
    "ALTER TABLE images ADD COLUMN keep INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE images ADD COLUMN pipeline TEXT;
    ALTER TABLE images ADD COLUMN parent_origin TEXT;
    ALTER TABLE images ADD COLUMN test_results TEXT;
    ALTER TABLE images ADD COLUMN log_location TEXT;
    ALTER TABLE images ADD COLUMN location TEXT;
    ALTER TABLE images ADD COLUMN failure TEXT;
    CREATE INDEX images_parent ON images (parent_image_id);
    CREATE INDEX images_pipeline ON images (pipeline, id);
    CREATE TABLE amis (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        region TEXT NOT NULL,
        ami_id TEXT NOT NULL,
        PRIMARY KEY (image_id, region)
    );",
    // 3: the inputs themselves (to say what changed), the build's event
    // file, and the scheduler's memory of the last occurrence it acted on
    "ALTER TABLE images ADD COLUMN inputs TEXT;
    ALTER TABLE images ADD COLUMN events TEXT;
    CREATE TABLE schedule_state (
        pipeline TEXT PRIMARY KEY,
        last_scheduled INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );",
];

/// The schema version this kiln writes.
pub fn current_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Reads `PRAGMA user_version`.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations after the database's `user_version`, up to
/// `target`, each in its own IMMEDIATE transaction (so two processes opening
/// an old catalog at once migrate it once). Returns the version found first.
pub fn migrate_to(conn: &mut Connection, target: u32) -> rusqlite::Result<u32> {
    let found = version(conn)?;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = version(&tx)?;
        if at >= target {
            return Ok(found);
        }
        tx.execute_batch(MIGRATIONS[at as usize])?;
        tx.pragma_update(None, "user_version", at + 1)?;
        tx.commit()?;
    }
}
