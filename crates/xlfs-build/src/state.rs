//! The state database (SQLite): what was built, with which inputs, how long it took, and what failed.
//! Artifacts themselves live in the artifact store; a build counts as done only when both the
//! artifact is in the store and its row is here (the row is written after the artifact).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use xlfs_plan::{Inputs, Previous};

pub struct StateDb {
    conn: Connection,
}

/// One successful build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRecord {
    pub key: String,
    pub name: String,
    pub version: String,
    #[serde(skip)]
    pub inputs: Inputs,
    pub artifact_sha256: String,
    pub artifact_size: u64,
    pub installed_size: u64,
    pub build_tree_size: u64,
    /// The time the build took, earlier runs of its tree included (see `earlier_wall_ms`).
    pub wall_ms: u64,
    pub cpu_ms: u64,
    /// The part of `wall_ms` spent in earlier runs of the same build tree (a build that goes on
    /// after a kill or a failed suite): up to the last step they marked as ended. The run that
    /// finished the build took `wall_ms - earlier_wall_ms`, up to `finished_at`.
    pub earlier_wall_ms: u64,
    pub finished_at: i64,
    pub log: String,
    /// Source files actually used, with their sha256.
    pub sources: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub name: String,
    pub key: String,
    pub at: i64,
    pub log: String,
    pub build_dir: String,
    pub message: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS builds (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    inputs TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    installed_size INTEGER NOT NULL,
    build_tree_size INTEGER NOT NULL,
    wall_ms INTEGER NOT NULL,
    cpu_ms INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    log TEXT NOT NULL,
    sources TEXT NOT NULL,
    earlier_wall_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS builds_name ON builds(name);
CREATE TABLE IF NOT EXISTS latest (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cpu_samples (
    at_ms INTEGER PRIMARY KEY,
    busy REAL NOT NULL,
    cores INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    log TEXT NOT NULL,
    build_dir TEXT NOT NULL,
    message TEXT NOT NULL
);
";

fn row_to_record(row: &rusqlite::Row) -> rusqlite::Result<BuildRecord> {
    let inputs: String = row.get(3)?;
    let sources: String = row.get(12)?;
    Ok(BuildRecord {
        key: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        inputs: serde_json::from_str(&inputs).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        artifact_sha256: row.get(4)?,
        artifact_size: row.get::<_, i64>(5)? as u64,
        installed_size: row.get::<_, i64>(6)? as u64,
        build_tree_size: row.get::<_, i64>(7)? as u64,
        wall_ms: row.get::<_, i64>(8)? as u64,
        cpu_ms: row.get::<_, i64>(9)? as u64,
        finished_at: row.get(10)?,
        log: row.get(11)?,
        sources: serde_json::from_str(&sources).unwrap_or_default(),
        earlier_wall_ms: row.get::<_, i64>(13)? as u64,
    })
}

const COLUMNS: &str = "key, name, version, inputs, artifact_sha256, artifact_size, installed_size, \
                       build_tree_size, wall_ms, cpu_ms, finished_at, log, sources, earlier_wall_ms";

impl StateDb {
    pub fn open(path: &Path) -> rusqlite::Result<StateDb> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // A database from before `earlier_wall_ms`: its builds took no time in earlier runs.
        // (Another xlfs may add the column at the same moment: only its absence is an error.)
        let has = |conn: &Connection| {
            conn.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('builds') WHERE name = 'earlier_wall_ms'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )
        };
        if !has(&conn)? {
            if let Err(e) =
                conn.execute_batch("ALTER TABLE builds ADD COLUMN earlier_wall_ms INTEGER NOT NULL DEFAULT 0")
            {
                if !has(&conn)? {
                    return Err(e);
                }
            }
        }
        Ok(StateDb { conn })
    }

    pub fn record(&self, r: &BuildRecord) -> rusqlite::Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            &format!("INSERT OR REPLACE INTO builds ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"),
            params![
                r.key,
                r.name,
                r.version,
                serde_json::to_string(&r.inputs).expect("inputs serialise"),
                r.artifact_sha256,
                r.artifact_size as i64,
                r.installed_size as i64,
                r.build_tree_size as i64,
                r.wall_ms as i64,
                r.cpu_ms as i64,
                r.finished_at,
                r.log,
                serde_json::to_string(&r.sources).expect("sources serialise"),
                r.earlier_wall_ms as i64,
            ],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO latest (name, key) VALUES (?1, ?2)",
            params![r.name, r.key],
        )?;
        tx.execute("DELETE FROM failures WHERE name = ?1", params![r.name])?;
        tx.commit()
    }

    pub fn record_failure(&self, f: &Failure) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO failures (name, key, at, log, build_dir, message) VALUES (?1,?2,?3,?4,?5,?6)",
            params![f.name, f.key, f.at, f.log, f.build_dir, f.message],
        )?;
        Ok(())
    }

    pub fn build(&self, key: &str) -> rusqlite::Result<Option<BuildRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM builds WHERE key = ?1"),
                [key],
                row_to_record,
            )
            .optional()
    }

    /// Every recorded key (for cache checks in bulk).
    pub fn keys(&self) -> rusqlite::Result<std::collections::HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT key FROM builds")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// The last successful build of a package.
    pub fn latest(&self, name: &str) -> rusqlite::Result<Option<BuildRecord>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM builds b JOIN latest l ON b.key = l.key WHERE l.name = ?1",
                    prefixed()
                ),
                [name],
                row_to_record,
            )
            .optional()
    }

    /// A consistent copy of the whole database at `to` (SQLite's `VACUUM INTO`).
    pub fn copy_to(&self, to: &std::path::Path) -> rusqlite::Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().to_string()])?;
        Ok(())
    }

    /// Record the machine's CPU use (busy fraction of all cores) at `at_ms` (Unix milliseconds).
    pub fn add_cpu_sample(&self, at_ms: i64, busy: f64, cores: u32) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO cpu_samples (at_ms, busy, cores) VALUES (?1, ?2, ?3)",
            rusqlite::params![at_ms, busy, cores],
        )?;
        Ok(())
    }

    /// CPU samples between two Unix times (milliseconds), in time order.
    pub fn cpu_samples(&self, from_ms: i64, to_ms: i64) -> rusqlite::Result<Vec<(i64, f64, u32)>> {
        let mut stmt = self.conn.prepare(
            "SELECT at_ms, busy, cores FROM cpu_samples WHERE at_ms BETWEEN ?1 AND ?2 ORDER BY at_ms",
        )?;
        let rows = stmt.query_map([from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    pub fn all_latest(&self) -> rusqlite::Result<Vec<BuildRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM builds b JOIN latest l ON b.key = l.key ORDER BY b.name",
            prefixed()
        ))?;
        let rows = stmt.query_map([], row_to_record)?;
        rows.collect()
    }

    pub fn previous(&self, name: &str) -> Option<Previous> {
        self.latest(name).ok().flatten().map(|r| Previous {
            key: r.key,
            inputs: r.inputs,
        })
    }

    pub fn failures(&self) -> rusqlite::Result<Vec<Failure>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, key, at, log, build_dir, message FROM failures ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Failure {
                name: r.get(0)?,
                key: r.get(1)?,
                at: r.get(2)?,
                log: r.get(3)?,
                build_dir: r.get(4)?,
                message: r.get(5)?,
            })
        })?;
        rows.collect()
    }

    pub fn forget(&self, key: &str) -> rusqlite::Result<()> {
        self.conn.execute("DELETE FROM builds WHERE key = ?1", [key])?;
        self.conn.execute("DELETE FROM latest WHERE key = ?1", [key])?;
        Ok(())
    }

    pub fn all_keys_with_names(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare("SELECT key, name FROM builds")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }
}

fn prefixed() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("b.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
