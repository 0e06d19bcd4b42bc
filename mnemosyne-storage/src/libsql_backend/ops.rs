//! The SQL work of the libsql backend, run on a pooled connection.
//!
//! Transactions are begun and ended with plain SQL (`BEGIN IMMEDIATE`,
//! `COMMIT`, `ROLLBACK`) on the pooled connection itself, not with
//! `libsql::Transaction`: the local one panics when a rollback on drop fails,
//! and the remote one opens a separate server stream on which
//! `PRAGMA foreign_keys` (needed by the cascading deletes) was never set.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use libsql::{Connection, Row, Value};
use mnemosyne_core::{
    BatchOutcome, Embedding, Error, KeywordHit, KeywordQuery, Link, LinkOutcome, LinkedMemory,
    ListQuery, Memory, MemoryId, MemoryPatch, OnConflict, PendingEmbedding, PendingKind, Result,
};

use crate::fts_query::query_terms;
use crate::keyword_plan;
use crate::rows::{self, MEMORY_COLUMN_COUNT, MemoryRow, SqlValue};
use crate::schema;

use super::vectors;

/// Starts a write transaction. Foreign keys are switched on first, on the
/// same connection: for a remote database every statement outside a
/// transaction runs on a fresh server stream, so a pragma set when the
/// connection was created would be gone.
const BEGIN: &str = "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE";

/// `SQLITE_CONSTRAINT_UNIQUE` and `SQLITE_CONSTRAINT_PRIMARYKEY` (extended result codes).
const CONSTRAINT_UNIQUE: i32 = 2067;
const CONSTRAINT_PRIMARYKEY: i32 = 1555;

/// `SQLITE_FULL` (primary result code): the disk is full, or the file
/// reached the file size limit.
const SQLITE_FULL: i32 = 13;

/// The core error of a libsql error. A full disk under a local file is
/// [`Error::DiskFull`]; [`LibsqlStorage`](super::LibsqlStorage) names the
/// database in it.
pub(super) fn db(error: libsql::Error) -> Error {
    match error {
        libsql::Error::SqliteFailure(code, _) if code & 0xff == SQLITE_FULL => {
            Error::disk_full(format!("libsql: {error}"))
        }
        _ => Error::Storage(format!("libsql: {error}")),
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED (primary codes): another connection holds the lock.
fn is_busy(error: &libsql::Error) -> bool {
    matches!(error, libsql::Error::SqliteFailure(code, _) if matches!(code & 0xff, 5 | 6))
}

pub(super) fn is_unique_violation(error: &libsql::Error) -> bool {
    match error {
        libsql::Error::SqliteFailure(code, _) => {
            *code == CONSTRAINT_UNIQUE || *code == CONSTRAINT_PRIMARYKEY
        }
        // A remote server's error arrives as text.
        other => {
            let text = other.to_string();
            text.contains("UNIQUE constraint failed")
                || text.contains("SQLITE_CONSTRAINT_UNIQUE")
                || text.contains("SQLITE_CONSTRAINT_PRIMARYKEY")
        }
    }
}

/// [`rows::MEMORY_COLUMNS`] with `content` and `summary` read as BLOBs: the
/// local libsql driver reads TEXT through a NUL-terminated C string, which
/// would cut a text at its first NUL byte; a BLOB comes back whole.
static MEMORY_COLUMNS_NUL_SAFE: LazyLock<String> = LazyLock::new(|| {
    rows::MEMORY_COLUMNS.replacen(
        "m.content, m.summary,",
        "CAST(m.content AS BLOB), CAST(m.summary AS BLOB),",
        1,
    )
});

/// A memory query of [`rows`] that reads the text columns whole.
pub(super) fn nul_safe(sql: &str) -> String {
    sql.replacen(rows::MEMORY_COLUMNS, &MEMORY_COLUMNS_NUL_SAFE, 1)
}

fn value(param: SqlValue) -> Value {
    match param {
        SqlValue::Int(v) => Value::Integer(v),
        SqlValue::Real(v) => Value::Real(v),
        SqlValue::Text(v) => Value::Text(v),
        SqlValue::Blob(v) => Value::Blob(v),
        SqlValue::Null => Value::Null,
    }
}

pub(super) fn values(params: Vec<SqlValue>) -> Vec<Value> {
    params.into_iter().map(value).collect()
}

pub(super) fn text(v: &str) -> Value {
    Value::Text(v.to_owned())
}

pub(super) async fn begin(conn: &Connection) -> Result<()> {
    conn.execute_batch(BEGIN).await.map_err(db)?;
    Ok(())
}

async fn rollback(conn: &Connection) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute("ROLLBACK", ()).await {
        // The pool throws the connection away when it comes back still inside a transaction.
        tracing::warn!(error = %e, "libsql: rollback failed");
    }
}

/// Commits after `outcome` succeeded, rolls back after it failed.
pub(super) async fn finish<T>(conn: &Connection, outcome: Result<T>) -> Result<T> {
    match outcome {
        Ok(value) => match conn.execute("COMMIT", ()).await {
            Ok(_) => Ok(value),
            Err(e) => {
                rollback(conn).await;
                Err(match db(e) {
                    Error::Storage(message) => Error::Storage(format!("commit failed: {message}")),
                    other => other,
                })
            }
        },
        Err(e) => {
            rollback(conn).await;
            Err(e)
        }
    }
}

fn type_error(row: &Row, idx: i32, expected: &str, found: &Value) -> Error {
    let found = match found {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    };
    let column = row.column_name(idx).unwrap_or("?");
    Error::Storage(format!(
        "libsql: column {column} holds {found}, expected {expected}"
    ))
}

// `Row::get` panics on a type mismatch; these read the value and check it.

pub(super) fn col_int(row: &Row, idx: i32) -> Result<i64> {
    match row.get_value(idx).map_err(db)? {
        Value::Integer(v) => Ok(v),
        other => Err(type_error(row, idx, "an integer", &other)),
    }
}

pub(super) fn col_real(row: &Row, idx: i32) -> Result<f64> {
    match row.get_value(idx).map_err(db)? {
        Value::Real(v) => Ok(v),
        Value::Integer(v) => Ok(v as f64),
        other => Err(type_error(row, idx, "a number", &other)),
    }
}

/// Text, or a BLOB holding UTF-8 (see [`nul_safe`]).
pub(super) fn col_text(row: &Row, idx: i32) -> Result<String> {
    match row.get_value(idx).map_err(db)? {
        Value::Text(v) => Ok(v),
        Value::Blob(bytes) => utf8(row, idx, bytes),
        other => Err(type_error(row, idx, "text", &other)),
    }
}

pub(super) fn col_blob(row: &Row, idx: i32) -> Result<Vec<u8>> {
    match row.get_value(idx).map_err(db)? {
        Value::Blob(v) => Ok(v),
        other => Err(type_error(row, idx, "a blob", &other)),
    }
}

pub(super) fn col_opt_text(row: &Row, idx: i32) -> Result<Option<String>> {
    match row.get_value(idx).map_err(db)? {
        Value::Null => Ok(None),
        Value::Text(v) => Ok(Some(v)),
        Value::Blob(bytes) => utf8(row, idx, bytes).map(Some),
        other => Err(type_error(row, idx, "text or NULL", &other)),
    }
}

fn utf8(row: &Row, idx: i32, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        let column = row.column_name(idx).unwrap_or("?");
        Error::Storage(format!(
            "libsql: column {column} holds text that is not UTF-8"
        ))
    })
}

/// Every row of a query, each decoded before the next is fetched (a local
/// row is only a view of the statement's current row).
pub(super) async fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = conn.query(sql, params).await.map_err(db)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.map_err(db)? {
        out.push(decode(&row)?);
    }
    Ok(out)
}

/// The first row of a query, if any.
pub(super) async fn query_first<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut rows = conn.query(sql, params).await.map_err(db)?;
    match rows.next().await.map_err(db)? {
        Some(row) => Ok(Some(decode(&row)?)),
        None => Ok(None),
    }
}

/// The single value a query returns.
pub(super) async fn query_value<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    decode: impl Fn(&Row) -> Result<T>,
) -> Result<T> {
    query_first(conn, sql, params, decode)
        .await?
        .ok_or_else(|| Error::Storage(format!("libsql: no row returned by {sql}")))
}

/// Switches the file to WAL mode and returns the journal mode now in
/// effect, retrying for `busy_timeout_ms` while another opener holds the
/// lock (see [`schema::WAL_SWITCH_RETRY_MS`]). Runs on a blocking thread.
pub(super) async fn journal_mode_wal(conn: &Connection, busy_timeout_ms: u64) -> Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(busy_timeout_ms);
    loop {
        let mode = async {
            let mut rows = conn.query(schema::JOURNAL_MODE_WAL, ()).await?;
            let row = rows.next().await?;
            row.map(|row| row.get::<String>(0)).transpose()
        }
        .await;
        match mode {
            Ok(Some(mode)) => return Ok(mode),
            Ok(None) => {
                return Err(Error::Storage(format!(
                    "libsql: no row returned by {}",
                    schema::JOURNAL_MODE_WAL
                )));
            }
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(
                    schema::WAL_SWITCH_RETRY_MS,
                ));
            }
            Err(e) => return Err(db(e)),
        }
    }
}

pub(super) async fn user_version(conn: &Connection) -> Result<u32> {
    let version = query_value(conn, "PRAGMA user_version", Vec::new(), |row| {
        col_int(row, 0)
    })
    .await?;
    u32::try_from(version)
        .map_err(|_| Error::Storage(format!("libsql: unexpected user_version {version}")))
}

/// Brings the schema to [`schema::SCHEMA_VERSION`], safe with any number
/// of processes opening the file at once: the version is read again inside
/// one write transaction (BEGIN IMMEDIATE waits `busy_timeout` for the
/// others) that runs every pending migration, so one opener migrates and
/// the others find the schema current.
pub(super) async fn migrate(conn: &Connection) -> Result<()> {
    if !schema::pending_migrations(user_version(conn).await?)?.is_empty() {
        begin(conn).await?;
        let applied = async {
            let found = user_version(conn).await?;
            let pending = schema::pending_migrations(found)?;
            for index in found as usize..found as usize + pending.len() {
                conn.execute_batch(&schema::migration_script(index))
                    .await
                    .map_err(|e| {
                        Error::Storage(format!("migration to version {} failed: {e}", index + 1))
                    })?;
            }
            Ok(())
        }
        .await;
        finish(conn, applied).await?;
    }
    let version = user_version(conn).await?;
    if version != schema::SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "migrations did not apply: the schema is at version {version}, expected {}",
            schema::SCHEMA_VERSION
        )));
    }
    Ok(())
}

/// Writes the first `version` migrations in one transaction.
pub(super) async fn migrate_to(conn: &Connection, version: u32) -> Result<()> {
    begin(conn).await?;
    let applied = async {
        for index in 0..version as usize {
            conn.execute_batch(&schema::migration_script(index))
                .await
                .map_err(db)?;
        }
        Ok(())
    }
    .await;
    finish(conn, applied).await
}

fn read_memory_row(row: &Row) -> Result<MemoryRow> {
    read_memory_row_at(row, 0)
}

/// The memory columns starting at column `first`.
pub(super) fn read_memory_row_at(row: &Row, first: i32) -> Result<MemoryRow> {
    Ok(MemoryRow {
        id: col_text(row, first)?,
        namespace: col_text(row, first + 1)?,
        content: col_text(row, first + 2)?,
        summary: col_opt_text(row, first + 3)?,
        memory_type: col_text(row, first + 4)?,
        importance: col_int(row, first + 5)?,
        tags: col_text(row, first + 6)?,
        created_at_ms: col_int(row, first + 7)?,
        updated_at_ms: col_int(row, first + 8)?,
        accessed_at_ms: col_int(row, first + 9)?,
        access_count: col_int(row, first + 10)?,
        archived: col_int(row, first + 11)?,
    })
}

async fn exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(
        query_first(conn, rows::MEMORY_EXISTS, vec![text(id)], |_| Ok(()))
            .await?
            .is_some(),
    )
}

async fn insert_tags(conn: &Connection, memory: &Memory, id: &str) -> Result<()> {
    for tag in &memory.tags {
        conn.execute(rows::INSERT_TAG, vec![text(tag), text(id)])
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Inserts the link unless it exists; `Ok(false)` when an end is missing.
async fn insert_link(conn: &Connection, source: &str, link: &Link, now_ms: i64) -> Result<bool> {
    let target = link.target.to_string();
    let params = vec![
        text(source),
        text(&target),
        text(link.link_type.as_str()),
        Value::Integer(now_ms),
    ];
    let changed = conn.execute(rows::INSERT_LINK, params).await.map_err(db)?;
    Ok(changed == 1 || (exists(conn, source).await? && exists(conn, &target).await?))
}

pub(super) async fn insert_memory(
    conn: &Connection,
    memory: &Memory,
    embedding: Option<&Embedding>,
) -> Result<()> {
    begin(conn).await?;
    let outcome = async {
        let id = memory.id.to_string();
        let inserted = conn
            .execute(rows::INSERT_MEMORY, values(rows::memory_params(memory)))
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(Error::AlreadyExists(memory.id)),
            other => other.map_err(db)?,
        };
        insert_tags(conn, memory, &id).await?;
        let now_ms = rows::to_ms(memory.created_at);
        for link in &memory.links {
            if !insert_link(conn, &id, link, now_ms).await? {
                return Err(Error::NotFound(link.target));
            }
        }
        if let Some(embedding) = embedding {
            vectors::store(conn, &id, embedding, vectors::SameModel::Replace).await?;
        }
        Ok(())
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn insert_memories(
    conn: &Connection,
    memories: &[Memory],
    on_conflict: OnConflict,
) -> Result<BatchOutcome> {
    begin(conn).await?;
    let outcome = async {
        let mut outcome = BatchOutcome::default();
        for memory in memories {
            let changed = conn
                .execute(
                    rows::INSERT_MEMORY_OR_IGNORE,
                    values(rows::memory_params(memory)),
                )
                .await
                .map_err(db)?;
            if changed == 0 {
                if on_conflict == OnConflict::Fail {
                    return Err(Error::AlreadyExists(memory.id));
                }
                outcome.skipped += 1;
                continue;
            }
            insert_tags(conn, memory, &memory.id.to_string()).await?;
            outcome.inserted += 1;
        }
        Ok(outcome)
    }
    .await;
    finish(conn, outcome).await
}

async fn links_of(conn: &Connection, id: &str) -> Result<Vec<Link>> {
    query_all(conn, rows::SELECT_LINKS, vec![text(id)], |row| {
        rows::decode_link(&col_text(row, 0)?, &col_text(row, 1)?)
    })
    .await
}

async fn load_memory(conn: &Connection, id: &str) -> Result<Option<Memory>> {
    let row = query_first(
        conn,
        &nul_safe(&rows::select_memory_by_id()),
        vec![text(id)],
        read_memory_row,
    )
    .await?;
    match row {
        Some(row) => Ok(Some(row.into_memory(links_of(conn, id).await?)?)),
        None => Ok(None),
    }
}

pub(super) async fn get_memory(conn: &Connection, id: MemoryId) -> Result<Option<Memory>> {
    load_memory(conn, &id.to_string()).await
}

pub(super) async fn record_access(
    conn: &Connection,
    id: MemoryId,
    at: DateTime<Utc>,
) -> Result<()> {
    let params = vec![text(&id.to_string()), Value::Integer(rows::to_ms(at))];
    let changed = conn
        .execute(rows::RECORD_ACCESS, params)
        .await
        .map_err(db)?;
    if changed == 0 {
        Err(Error::NotFound(id))
    } else {
        Ok(())
    }
}

pub(super) async fn update_memory(
    conn: &Connection,
    id: MemoryId,
    patch: &MemoryPatch,
    now: DateTime<Utc>,
    embedding: Option<&Embedding>,
) -> Result<Memory> {
    begin(conn).await?;
    let outcome = async {
        let key = id.to_string();
        let mut memory = load_memory(conn, &key).await?.ok_or(Error::NotFound(id))?;
        patch.apply_to(&mut memory, now);
        conn.execute(rows::UPDATE_MEMORY, values(rows::memory_params(&memory)))
            .await
            .map_err(db)?;
        if patch.tags.is_some() {
            conn.execute(rows::DELETE_TAGS, vec![text(&key)])
                .await
                .map_err(db)?;
            insert_tags(conn, &memory, &key).await?;
        }
        if let Some(embedding) = embedding {
            vectors::store(conn, &key, embedding, vectors::SameModel::Replace).await?;
        }
        Ok(memory)
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn delete_memory(conn: &Connection, id: MemoryId) -> Result<()> {
    // In a transaction so that the cascade runs with foreign keys on (see [`BEGIN`]).
    begin(conn).await?;
    let outcome = async {
        let changed = conn
            .execute(rows::DELETE_MEMORY, vec![text(&id.to_string())])
            .await
            .map_err(db)?;
        if changed == 0 {
            Err(Error::NotFound(id))
        } else {
            Ok(())
        }
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn add_link(
    conn: &Connection,
    source: MemoryId,
    link: &Link,
    links_max: u32,
) -> Result<()> {
    begin(conn).await?;
    let outcome = async {
        let key = source.to_string();
        let target = link.target.to_string();
        if !exists(conn, &key).await? {
            return Err(Error::NotFound(source));
        }
        if !exists(conn, &target).await? {
            return Err(Error::NotFound(link.target));
        }
        let existing = query_value(
            conn,
            "SELECT count(*) FROM memory_links WHERE source_id = ?1",
            vec![text(&key)],
            |row| col_int(row, 0),
        )
        .await?;
        let already = query_value(
            conn,
            "SELECT EXISTS (SELECT 1 FROM memory_links WHERE source_id = ?1 AND target_id = ?2 AND link_type = ?3)",
            vec![text(&key), text(&target), text(link.link_type.as_str())],
            |row| col_int(row, 0),
        )
        .await?
            != 0;
        if !already && existing >= i64::from(links_max) {
            return Err(Error::invalid(format!(
                "memory {source} already has {existing} links, the limit (memory_links_max)"
            )));
        }
        insert_link(conn, &key, link, rows::to_ms(Utc::now())).await?;
        Ok(())
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn add_links(
    conn: &Connection,
    links: &[(MemoryId, Link)],
    links_max: u32,
) -> Result<LinkOutcome> {
    begin(conn).await?;
    let outcome = async {
        let now_ms = rows::to_ms(Utc::now());
        let mut outcome = LinkOutcome::default();
        for (source, link) in links {
            let key = source.to_string();
            let params = vec![
                text(&key),
                text(&link.target.to_string()),
                text(link.link_type.as_str()),
            ];
            let (count, already) = query_first(conn, rows::LINK_STATE, params, |row| {
                Ok((col_int(row, 0)?, col_int(row, 1)? != 0))
            })
            .await?
            .unwrap_or((0, false));
            if !already && count >= i64::from(links_max) {
                outcome.over_limit += 1;
            } else if insert_link(conn, &key, link, now_ms).await? {
                outcome.linked += 1;
            } else {
                outcome.missing += 1;
            }
        }
        Ok(outcome)
    }
    .await;
    finish(conn, outcome).await
}

/// Fills in the links of each memory with one query per chunk of ids.
pub(super) async fn attach_links(
    conn: &Connection,
    memories: Vec<(MemoryRow, Option<f64>)>,
) -> Result<Vec<(Memory, Option<f64>)>> {
    const CHUNK: usize = 500;
    let mut links: HashMap<String, Vec<Link>> = HashMap::new();
    for chunk in memories.chunks(CHUNK) {
        let ids = chunk.iter().map(|(row, _)| text(&row.id)).collect();
        let found = query_all(conn, &rows::links_of_sql(chunk.len()), ids, |row| {
            Ok((
                col_text(row, 0)?,
                rows::decode_link(&col_text(row, 1)?, &col_text(row, 2)?)?,
            ))
        })
        .await?;
        for (source, link) in found {
            links.entry(source).or_default().push(link);
        }
    }
    memories
        .into_iter()
        .map(|(row, score)| {
            // A memory may come more than once (linked from several given ones).
            let own = links.get(&row.id).cloned().unwrap_or_default();
            Ok((row.into_memory(own)?, score))
        })
        .collect()
}

pub(super) async fn list_memories(conn: &Connection, query: &ListQuery) -> Result<Vec<Memory>> {
    let (sql, params) = rows::list_sql(query);
    let found = query_all(conn, &nul_safe(&sql), values(params), |row| {
        Ok((read_memory_row(row)?, None))
    })
    .await?;
    Ok(attach_links(conn, found)
        .await?
        .into_iter()
        .map(|(memory, _)| memory)
        .collect())
}

pub(super) async fn keyword_search(
    conn: &Connection,
    query: &KeywordQuery,
) -> Result<Vec<KeywordHit>> {
    let terms = query_terms(&query.text);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut stats = Vec::with_capacity(terms.len());
    for term in terms {
        let params = vec![
            text(&keyword_plan::probe_expression(&term)),
            Value::Integer(keyword_plan::FREQUENT_TERM_DOCS - 1),
        ];
        let row = query_first(conn, keyword_plan::PROBE_SQL, params, |row| {
            Ok((col_int(row, 0)?, col_int(row, 1)?))
        })
        .await?;
        stats.push(keyword_plan::TermStat::from_probe(term, row));
    }
    let (sql, params) = keyword_plan::keyword_sql(query, &stats);
    let ranked = query_all(conn, &sql, values(params), |row| {
        Ok((col_int(row, 0)?, col_real(row, 1)?))
    })
    .await?;
    let (sql, mut params) = keyword_plan::candidate_rows_sql(query);
    let sql = nul_safe(&sql);
    let wanted = query.limit as usize;
    // (position in the ranking, row, score)
    let mut found: Vec<(usize, MemoryRow, f64)> = Vec::with_capacity(wanted);
    let mut taken = 0;
    while found.len() < wanted && taken < ranked.len() {
        let end = ranked
            .len()
            .min(taken + keyword_plan::next_chunk(taken, wanted - found.len()));
        let chunk = &ranked[taken..end];
        params[0] = SqlValue::Text(keyword_plan::seqs_json(chunk));
        let rows = query_all(conn, &sql, values(params.clone()), |row| {
            let at =
                usize::try_from(col_int(row, MEMORY_COLUMN_COUNT as i32)?).unwrap_or(usize::MAX);
            Ok((at, read_memory_row(row)?))
        })
        .await?;
        for (at, row) in rows {
            let score = chunk.get(at).map_or(0.0, |(_, score)| *score);
            found.push((taken + at, row, score));
        }
        taken = end;
    }
    found.sort_unstable_by_key(|(at, _, _)| *at);
    found.truncate(wanted);
    let found = found
        .into_iter()
        .map(|(_, row, score)| (row, Some(score)))
        .collect();
    Ok(attach_links(conn, found)
        .await?
        .into_iter()
        .map(|(memory, score)| KeywordHit {
            memory,
            bm25: score.unwrap_or_default(),
        })
        .collect())
}

pub(super) async fn set_embeddings(
    conn: &Connection,
    items: &[(MemoryId, Embedding)],
    same_model: vectors::SameModel,
) -> Result<u64> {
    begin(conn).await?;
    let outcome = async {
        let mut stored = 0;
        for (id, embedding) in items {
            if vectors::store(conn, &id.to_string(), embedding, same_model).await? {
                stored += 1;
            }
        }
        Ok(stored)
    }
    .await;
    finish(conn, outcome).await
}

/// [`rows::PENDING_EMBEDDINGS`] reading `content` and `summary` whole (see [`nul_safe`]).
static PENDING_EMBEDDINGS_NUL_SAFE: LazyLock<String> = LazyLock::new(|| {
    rows::PENDING_EMBEDDINGS.replacen(
        "m.content, m.summary",
        "CAST(m.content AS BLOB), CAST(m.summary AS BLOB)",
        1,
    )
});

/// [`rows::PENDING_EMBEDDINGS_AMONG`] reading `content` and `summary` whole.
static PENDING_EMBEDDINGS_AMONG_NUL_SAFE: LazyLock<String> = LazyLock::new(|| {
    rows::PENDING_EMBEDDINGS_AMONG.replacen(
        "m.content, m.summary",
        "CAST(m.content AS BLOB), CAST(m.summary AS BLOB)",
        1,
    )
});

fn pending_row(row: &Row) -> Result<PendingEmbedding> {
    let id = col_text(row, 0)?;
    let content = col_text(row, 1)?;
    let summary = col_opt_text(row, 2)?;
    Ok(PendingEmbedding {
        id: id
            .parse()
            .map_err(|_| Error::Storage(format!("corrupt row for memory {id}: bad id")))?,
        text: rows::embedding_text(&content, summary.as_deref()),
    })
}

fn stale_flag(kind: PendingKind) -> Value {
    Value::Integer(i64::from(kind.includes_stale()))
}

pub(super) async fn pending_embeddings(
    conn: &Connection,
    model_id: &str,
    kind: PendingKind,
    after: Option<MemoryId>,
    limit: u32,
) -> Result<Vec<PendingEmbedding>> {
    let params = vec![
        text(model_id),
        after.map_or(Value::Null, |id| Value::Text(id.to_string())),
        Value::Integer(i64::from(limit)),
        stale_flag(kind),
    ];
    query_all(conn, &PENDING_EMBEDDINGS_NUL_SAFE, params, pending_row).await
}

pub(super) async fn pending_embeddings_among(
    conn: &Connection,
    model_id: &str,
    kind: PendingKind,
    ids: &[MemoryId],
) -> Result<Vec<PendingEmbedding>> {
    let params = vec![text(model_id), text(&rows::ids_json(ids)), stale_flag(kind)];
    query_all(
        conn,
        &PENDING_EMBEDDINGS_AMONG_NUL_SAFE,
        params,
        pending_row,
    )
    .await
}

pub(super) async fn count_pending_embeddings(
    conn: &Connection,
    model_id: &str,
    kind: PendingKind,
) -> Result<u64> {
    let count = query_value(
        conn,
        rows::COUNT_PENDING_EMBEDDINGS,
        vec![text(model_id), stale_flag(kind)],
        |row| col_int(row, 0),
    )
    .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Most ids one [`linked_memories`] call takes: they are bound as
/// parameters, and libsql binds at most 32 766 in one statement.
pub(super) const LINKED_IDS_MAX: usize = 10_000;

pub(super) fn check_linked_ids(ids: &[MemoryId]) -> Result<()> {
    if ids.len() > LINKED_IDS_MAX {
        return Err(Error::invalid(format!(
            "linked memories of {} ids asked for, at most {LINKED_IDS_MAX} in one call",
            ids.len()
        )));
    }
    Ok(())
}

pub(super) async fn linked_memories(
    conn: &Connection,
    ids: &[MemoryId],
    per_memory_max: u32,
    include_archived: bool,
) -> Result<Vec<LinkedMemory>> {
    check_linked_ids(ids)?;
    let sql = nul_safe(&rows::linked_memories_sql(ids.len(), include_archived));
    let mut params: Vec<Value> = ids.iter().map(|id| Value::Text(id.to_string())).collect();
    params.push(Value::Integer(i64::from(per_memory_max)));
    let found = query_all(conn, &sql, params, |row| {
        Ok((col_text(row, 0)?, read_memory_row_at(row, 1)?))
    })
    .await?;
    let (from, memories): (Vec<String>, Vec<(MemoryRow, Option<f64>)>) = found
        .into_iter()
        .map(|(from, row)| (from, (row, None)))
        .unzip();
    let memories = attach_links(conn, memories).await?;
    from.into_iter()
        .zip(memories)
        .map(|(from, (memory, _))| {
            Ok(LinkedMemory {
                from: from
                    .parse()
                    .map_err(|_| Error::Storage(format!("corrupt link from {from:?}")))?,
                memory,
            })
        })
        .collect()
}

pub(super) async fn count_memories(conn: &Connection, include_archived: bool) -> Result<u64> {
    let sql = if include_archived {
        "SELECT count(*) FROM memories"
    } else {
        "SELECT count(*) FROM memories WHERE archived = 0"
    };
    let count = query_value(conn, sql, Vec::new(), |row| col_int(row, 0)).await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) async fn integrity_check(conn: &Connection) -> Result<String> {
    let lines = query_all(conn, "PRAGMA integrity_check", Vec::new(), |row| {
        col_text(row, 0)
    })
    .await?;
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use mnemosyne_core::ListQuery;

    use super::*;

    #[test]
    fn memory_queries_read_content_and_summary_as_blobs() {
        assert_ne!(MEMORY_COLUMNS_NUL_SAFE.as_str(), rows::MEMORY_COLUMNS);
        let keyword = KeywordQuery {
            text: "lease".into(),
            namespaces: Vec::new(),
            tags: Vec::new(),
            limit: 10,
            include_archived: false,
            min_importance: None,
        };
        for sql in [
            rows::select_memory_by_id(),
            rows::list_sql(&ListQuery::default()).0,
            keyword_plan::candidate_rows_sql(&keyword).0,
        ] {
            let safe = nul_safe(&sql);
            assert!(
                safe.contains("CAST(m.content AS BLOB), CAST(m.summary AS BLOB)"),
                "{safe}"
            );
        }
    }
}
