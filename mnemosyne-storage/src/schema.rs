//! Embedded, versioned schema. The version lives in `PRAGMA user_version`.

use mnemosyne_core::Error;

/// Migrations in order; migration `i` (0-based) brings the schema to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_memories.sql"),
    include_str!("../migrations/0002_tags_links.sql"),
    include_str!("../migrations/0003_embeddings.sql"),
    include_str!("../migrations/0004_work_items.sql"),
    include_str!("../migrations/0005_documents.sql"),
    include_str!("../migrations/0006_finished_work.sql"),
];

/// Schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Pragmas set on every local connection, before anything else.
pub fn connection_pragmas(busy_timeout_ms: u64, page_cache_bytes_max: u64) -> String {
    // A negative cache_size is a size in KiB rather than in pages.
    let cache_kib = page_cache_bytes_max.div_ceil(1024);
    format!(
        "PRAGMA busy_timeout = {busy_timeout_ms};\
         PRAGMA foreign_keys = ON;\
         PRAGMA synchronous = NORMAL;\
         PRAGMA cache_size = -{cache_kib};"
    )
}

/// Pragma that bounds SQLite's heap, all connections of the process together
/// (a soft limit: SQLite frees cached pages first, and never fails for it).
pub fn heap_limit_pragma(heap_bytes_max: u64) -> String {
    format!("PRAGMA soft_heap_limit = {heap_bytes_max};")
}

/// Pragma that cuts the WAL file back to `wal_bytes_max` after a checkpoint
/// has emptied it (SQLite reuses the file; it would otherwise keep its
/// largest size).
pub fn wal_size_limit_pragma(wal_bytes_max: u64) -> String {
    format!("PRAGMA journal_size_limit = {wal_bytes_max};")
}

/// Pause between tries of [`JOURNAL_MODE_WAL`]. Switching a rollback-journal
/// file to WAL upgrades a shared lock to an exclusive one; when another
/// process opening the file at the same moment holds a pending lock, SQLite
/// answers SQLITE_BUSY at once, without waiting `busy_timeout` (it would be
/// a deadlock), so the writer retries until its busy timeout has passed.
pub const WAL_SWITCH_RETRY_MS: u64 = 10;

/// Pragma that puts a database file in WAL mode (persistent; set once by the writer).
pub const JOURNAL_MODE_WAL: &str = "PRAGMA journal_mode = WAL";

/// The migrations to run on a database at version `found`, or the refusal to open it.
pub fn pending_migrations(found: u32) -> Result<&'static [&'static str], Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(&MIGRATIONS[found as usize..])
}

/// SQL that runs migration `index` (0-based) and records the new version; run it in one transaction.
pub fn migration_script(index: usize) -> String {
    format!(
        "{}\nPRAGMA user_version = {};",
        MIGRATIONS[index],
        index + 1
    )
}
