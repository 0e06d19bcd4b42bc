//! The schema and the file: migrations, WAL mode, checkpoints, integrity.

use std::time::{Duration, Instant};

use mnemosyne_core::{Error, Result};

use super::conn::{Conn, DbError, transaction};
use crate::schema;
use crate::wal_bound::{CHECKPOINT_WAIT_MS, TRUNCATE_CHECKPOINT};

/// The schema version the file is at.
pub fn user_version(conn: &mut impl Conn) -> Result<u32> {
    let version = conn.query_one("PRAGMA user_version", &[], |row| row.int(0))?;
    u32::try_from(version).map_err(|_| Error::Storage(format!("unexpected user_version {version}")))
}

/// Brings the schema to [`schema::SCHEMA_VERSION`], safe with any number
/// of processes opening the file at once: the version is read again inside
/// one write transaction (BEGIN IMMEDIATE waits `busy_timeout` for the
/// others) that runs every pending migration, so one opener migrates and
/// the others find the schema current.
pub fn migrate(conn: &mut impl Conn) -> Result<()> {
    if !schema::pending_migrations(user_version(conn)?)?.is_empty() {
        transaction(conn, |conn| {
            let found = user_version(conn)?;
            let pending = schema::pending_migrations(found)?;
            for index in found as usize..found as usize + pending.len() {
                conn.execute_batch(&schema::migration_script(index))
                    .map_err(|e| {
                        Error::Storage(format!("migration to version {} failed: {e}", index + 1))
                    })?;
            }
            Ok(())
        })?;
    }
    let version = user_version(conn)?;
    if version != schema::SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "migrations did not apply: the schema is at version {version}, expected {}",
            schema::SCHEMA_VERSION
        )));
    }
    Ok(())
}

/// Writes the first `version` migrations in one transaction: what an older
/// mnemosyne left (for tests of migrations).
pub fn migrate_to(conn: &mut impl Conn, version: u32) -> Result<()> {
    transaction(conn, |conn| {
        for index in 0..version as usize {
            conn.execute_batch(&schema::migration_script(index))?;
        }
        Ok(())
    })
}

/// A TRUNCATE checkpoint that waits at most [`CHECKPOINT_WAIT_MS`] for
/// readers, then restores `busy_timeout_ms`; true when it emptied the WAL.
pub fn truncate_wal(conn: &mut impl Conn, busy_timeout_ms: u64) -> bool {
    let busy_timeout = |ms: u64| format!("PRAGMA busy_timeout = {ms}");
    if conn
        .for_each_row(&busy_timeout(CHECKPOINT_WAIT_MS), &[], &mut |_| Ok(()))
        .is_err()
    {
        return false;
    }
    let busy = conn
        .query_first(TRUNCATE_CHECKPOINT, &[], |row| row.int(0))
        .ok()
        .flatten();
    // Back to the connection's own timeout; if even that fails the next
    // statement still runs, only with the short wait.
    let _ = conn.for_each_row(&busy_timeout(busy_timeout_ms), &[], &mut |_| Ok(()));
    busy == Some(0)
}

/// `PRAGMA integrity_check` output: `ok` when healthy.
pub fn integrity_check(conn: &mut impl Conn) -> Result<String> {
    let lines = conn.query_all("PRAGMA integrity_check", &[], |row| row.text(0))?;
    Ok(lines.join("\n"))
}

/// Runs `attempt` (switching a new file to WAL mode) until it succeeds, or
/// fails other than busy, or `busy_timeout_ms` has passed: another process
/// opening the same file at once may hold the lock the switch needs. Waits
/// [`schema::WAL_SWITCH_RETRY_MS`] between attempts.
pub fn retry_while_busy<T>(
    busy_timeout_ms: u64,
    mut attempt: impl FnMut() -> std::result::Result<T, DbError>,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_millis(busy_timeout_ms);
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(e) if e.is_busy() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(schema::WAL_SWITCH_RETRY_MS));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
