//! The SQL work of the sqlite backend, run on a pooled connection.

use chrono::{DateTime, Utc};
use mnemosyne_core::{
    BatchOutcome, Embedding, Error, KeywordHit, KeywordQuery, Link, LinkOutcome, LinkedMemory,
    ListQuery, Memory, MemoryId, MemoryPatch, OnConflict, PendingEmbedding, PendingKind, Result,
};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{
    Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params,
};

use crate::fts_query::query_terms;
use crate::keyword_plan;
use crate::rows::{self, MEMORY_COLUMN_COUNT, MemoryRow, SqlValue};
use crate::schema;

use super::vectors;

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(v.as_str().into()),
            SqlValue::Blob(v) => ToSqlOutput::Borrowed(v.as_slice().into()),
            SqlValue::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// The core error of a rusqlite error. A full disk (SQLITE_FULL: the disk,
/// or the file size limit when SQLite could write part of a page) is
/// [`Error::DiskFull`]; [`SqliteStorage`](super::SqliteStorage) names the
/// database in it.
pub(super) fn db(error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::disk_full(format!("sqlite: {error}")),
        _ => Error::Storage(format!("sqlite: {error}")),
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock.
pub(super) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(super) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

pub(super) fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

pub(super) fn user_version(conn: &mut Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db)
}

/// Brings the schema to [`schema::SCHEMA_VERSION`], safe with any number
/// of processes opening the file at once: the version is read again inside
/// one write transaction (BEGIN IMMEDIATE waits `busy_timeout` for the
/// others) that runs every pending migration, so one opener migrates and
/// the others find the schema current.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    if schema::pending_migrations(user_version(conn)?)?.is_empty() {
        return Ok(());
    }
    let tx = begin(conn)?;
    let found: u32 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db)?;
    let pending = schema::pending_migrations(found)?;
    for offset in 0..pending.len() {
        let index = found as usize + offset;
        tx.execute_batch(&schema::migration_script(index))
            .map_err(|e| {
                Error::Storage(format!("migration to version {} failed: {e}", index + 1))
            })?;
    }
    tx.commit().map_err(db)
}

/// Writes the first `version` migrations to a new connection on `path`.
pub(super) fn migrate_to(conn: &mut Connection, version: u32) -> Result<()> {
    let tx = begin(conn)?;
    for index in 0..version as usize {
        tx.execute_batch(&schema::migration_script(index))
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// Reads [`rows::MEMORY_COLUMNS`] starting at column `at`.
pub(super) fn read_memory_row(row: &Row<'_>, at: usize) -> rusqlite::Result<MemoryRow> {
    Ok(MemoryRow {
        id: row.get(at)?,
        namespace: row.get(at + 1)?,
        content: row.get(at + 2)?,
        summary: row.get(at + 3)?,
        memory_type: row.get(at + 4)?,
        importance: row.get(at + 5)?,
        tags: row.get(at + 6)?,
        created_at_ms: row.get(at + 7)?,
        updated_at_ms: row.get(at + 8)?,
        accessed_at_ms: row.get(at + 9)?,
        access_count: row.get(at + 10)?,
        archived: row.get(at + 11)?,
    })
}

fn exists(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached(rows::MEMORY_EXISTS)
        .and_then(|mut stmt| stmt.exists([id]))
        .map_err(db)
}

fn insert_tags(conn: &Connection, memory: &Memory, id: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(rows::INSERT_TAG).map_err(db)?;
    for tag in &memory.tags {
        stmt.execute(params![tag, id]).map_err(db)?;
    }
    Ok(())
}

/// Inserts the link unless it exists; `Ok(false)` when an end is missing.
fn insert_link(conn: &Connection, source: &str, link: &Link, now_ms: i64) -> Result<bool> {
    let target = link.target.to_string();
    let changed = conn
        .prepare_cached(rows::INSERT_LINK)
        .and_then(|mut stmt| stmt.execute(params![source, target, link.link_type.as_str(), now_ms]))
        .map_err(db)?;
    Ok(changed == 1 || (exists(conn, source)? && exists(conn, &target)?))
}

pub(super) fn insert_memory(
    conn: &mut Connection,
    memory: &Memory,
    embedding: Option<&Embedding>,
) -> Result<()> {
    let tx = begin(conn)?;
    let id = memory.id.to_string();
    let inserted = tx
        .prepare_cached(rows::INSERT_MEMORY)
        .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(rows::memory_params(memory))));
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(Error::AlreadyExists(memory.id)),
        other => other.map_err(db)?,
    };
    insert_tags(&tx, memory, &id)?;
    let now_ms = rows::to_ms(memory.created_at);
    for link in &memory.links {
        if !insert_link(&tx, &id, link, now_ms)? {
            return Err(Error::NotFound(link.target));
        }
    }
    if let Some(embedding) = embedding {
        vectors::store_vector(&tx, &id, embedding, vectors::SameModel::Replace)?;
    }
    tx.commit().map_err(db)
}

pub(super) fn insert_memories(
    conn: &mut Connection,
    memories: &[Memory],
    on_conflict: OnConflict,
) -> Result<BatchOutcome> {
    let tx = begin(conn)?;
    let mut outcome = BatchOutcome::default();
    {
        let mut insert = tx
            .prepare_cached(rows::INSERT_MEMORY_OR_IGNORE)
            .map_err(db)?;
        for memory in memories {
            let changed = insert
                .execute(rusqlite::params_from_iter(rows::memory_params(memory)))
                .map_err(db)?;
            if changed == 0 {
                if on_conflict == OnConflict::Fail {
                    return Err(Error::AlreadyExists(memory.id));
                }
                outcome.skipped += 1;
                continue;
            }
            insert_tags(&tx, memory, &memory.id.to_string())?;
            outcome.inserted += 1;
        }
    }
    tx.commit().map_err(db)?;
    Ok(outcome)
}

fn links_of(conn: &Connection, id: &str) -> Result<Vec<Link>> {
    let mut stmt = conn.prepare_cached(rows::SELECT_LINKS).map_err(db)?;
    let raw = stmt
        .query_map([id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    raw.iter()
        .map(|(target, kind)| rows::decode_link(target, kind))
        .collect()
}

fn load_memory(conn: &Connection, id: &str) -> Result<Option<Memory>> {
    let row = conn
        .prepare_cached(&rows::select_memory_by_id())
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| read_memory_row(row, 0))
                .optional()
        })
        .map_err(db)?;
    match row {
        Some(row) => Ok(Some(row.into_memory(links_of(conn, id)?)?)),
        None => Ok(None),
    }
}

pub(super) fn get_memory(conn: &mut Connection, id: MemoryId) -> Result<Option<Memory>> {
    load_memory(conn, &id.to_string())
}

pub(super) fn record_access(conn: &mut Connection, id: MemoryId, at: DateTime<Utc>) -> Result<()> {
    let changed = conn
        .prepare_cached(rows::RECORD_ACCESS)
        .and_then(|mut stmt| stmt.execute(params![id.to_string(), rows::to_ms(at)]))
        .map_err(db)?;
    if changed == 0 {
        Err(Error::NotFound(id))
    } else {
        Ok(())
    }
}

pub(super) fn update_memory(
    conn: &mut Connection,
    id: MemoryId,
    patch: &MemoryPatch,
    now: DateTime<Utc>,
    embedding: Option<&Embedding>,
) -> Result<Memory> {
    let tx = begin(conn)?;
    let key = id.to_string();
    let mut memory = load_memory(&tx, &key)?.ok_or(Error::NotFound(id))?;
    patch.apply_to(&mut memory, now);
    tx.prepare_cached(rows::UPDATE_MEMORY)
        .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(rows::memory_params(&memory))))
        .map_err(db)?;
    if patch.tags.is_some() {
        tx.execute(rows::DELETE_TAGS, [&key]).map_err(db)?;
        insert_tags(&tx, &memory, &key)?;
    }
    if let Some(embedding) = embedding {
        vectors::store_vector(&tx, &key, embedding, vectors::SameModel::Replace)?;
    }
    tx.commit().map_err(db)?;
    Ok(memory)
}

pub(super) fn delete_memory(conn: &mut Connection, id: MemoryId) -> Result<()> {
    let tx = begin(conn)?;
    let key = id.to_string();
    let indexed: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT e.memory_seq, e.dims FROM memories m \
             JOIN memory_embeddings e ON e.memory_seq = m.seq WHERE m.id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([&key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(db)?;
    if let Some((seq, dims)) = indexed {
        vectors::unindex(&tx, seq, usize::try_from(dims).unwrap_or(0))?;
    }
    let changed = tx.execute(rows::DELETE_MEMORY, [&key]).map_err(db)?;
    if changed == 0 {
        return Err(Error::NotFound(id));
    }
    tx.commit().map_err(db)
}

pub(super) fn add_link(
    conn: &mut Connection,
    source: MemoryId,
    link: &Link,
    links_max: u32,
) -> Result<()> {
    let tx = begin(conn)?;
    let key = source.to_string();
    if !exists(&tx, &key)? {
        return Err(Error::NotFound(source));
    }
    if !exists(&tx, &link.target.to_string())? {
        return Err(Error::NotFound(link.target));
    }
    let existing: u32 = tx
        .query_row(
            "SELECT count(*) FROM memory_links WHERE source_id = ?1",
            [&key],
            |row| row.get(0),
        )
        .map_err(db)?;
    let already: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM memory_links WHERE source_id = ?1 AND target_id = ?2 AND link_type = ?3)",
            params![key, link.target.to_string(), link.link_type.as_str()],
            |row| row.get(0),
        )
        .map_err(db)?;
    if !already && existing >= links_max {
        return Err(Error::invalid(format!(
            "memory {source} already has {existing} links, the limit (memory_links_max)"
        )));
    }
    insert_link(&tx, &key, link, rows::to_ms(Utc::now()))?;
    tx.commit().map_err(db)
}

pub(super) fn add_links(
    conn: &mut Connection,
    links: &[(MemoryId, Link)],
    links_max: u32,
) -> Result<LinkOutcome> {
    let tx = begin(conn)?;
    let now_ms = rows::to_ms(Utc::now());
    let mut outcome = LinkOutcome::default();
    for (source, link) in links {
        let key = source.to_string();
        let (count, already): (u32, bool) = tx
            .prepare_cached(rows::LINK_STATE)
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![key, link.target.to_string(), link.link_type.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
            })
            .map_err(db)?;
        if !already && count >= links_max {
            outcome.over_limit += 1;
        } else if insert_link(&tx, &key, link, now_ms)? {
            outcome.linked += 1;
        } else {
            outcome.missing += 1;
        }
    }
    tx.commit().map_err(db)?;
    Ok(outcome)
}

/// Decodes the rows, filling in the links of each memory with one query per chunk of ids.
pub(super) fn attach_links(conn: &Connection, memories: Vec<MemoryRow>) -> Result<Vec<Memory>> {
    const CHUNK: usize = 500;
    let mut links: std::collections::HashMap<String, Vec<Link>> = std::collections::HashMap::new();
    for chunk in memories.chunks(CHUNK) {
        let mut stmt = conn
            .prepare_cached(&rows::links_of_sql(chunk.len()))
            .map_err(db)?;
        let ids = chunk.iter().map(|row| row.id.as_str());
        let mut raw = stmt.query(rusqlite::params_from_iter(ids)).map_err(db)?;
        while let Some(row) = raw.next().map_err(db)? {
            let source: String = row.get(0).map_err(db)?;
            let target: String = row.get(1).map_err(db)?;
            let kind: String = row.get(2).map_err(db)?;
            links
                .entry(source)
                .or_default()
                .push(rows::decode_link(&target, &kind)?);
        }
    }
    memories
        .into_iter()
        .map(|row| {
            let own = links.remove(&row.id).unwrap_or_default();
            row.into_memory(own)
        })
        .collect()
}

pub(super) fn list_memories(conn: &mut Connection, query: &ListQuery) -> Result<Vec<Memory>> {
    let (sql, params) = rows::list_sql(query);
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let found = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            read_memory_row(row, 0)
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    drop(stmt);
    attach_links(conn, found)
}

pub(super) fn keyword_search(
    conn: &mut Connection,
    query: &KeywordQuery,
) -> Result<Vec<KeywordHit>> {
    let terms = query_terms(&query.text);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut stats = Vec::with_capacity(terms.len());
    {
        let mut probe = conn.prepare_cached(keyword_plan::PROBE_SQL).map_err(db)?;
        for term in terms {
            let row = probe
                .query_row(
                    params![
                        keyword_plan::probe_expression(&term),
                        keyword_plan::FREQUENT_TERM_DOCS - 1
                    ],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()
                .map_err(db)?;
            stats.push(keyword_plan::TermStat::from_probe(term, row));
        }
    }
    let (sql, params) = keyword_plan::keyword_sql(query, &stats);
    let ranked = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params_from_iter(params), |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    let (sql, mut params) = keyword_plan::candidate_rows_sql(query);
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
        let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(&params))
            .map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let at = usize::try_from(row.get::<_, i64>(MEMORY_COLUMN_COUNT).map_err(db)?)
                .unwrap_or(usize::MAX);
            let score = chunk.get(at).map_or(0.0, |(_, score)| *score);
            found.push((taken + at, read_memory_row(row, 0).map_err(db)?, score));
        }
        taken = end;
    }
    found.sort_unstable_by_key(|(at, _, _)| *at);
    found.truncate(wanted);
    let (found, scores): (Vec<MemoryRow>, Vec<f64>) = found
        .into_iter()
        .map(|(_, row, score)| (row, score))
        .unzip();
    Ok(attach_links(conn, found)?
        .into_iter()
        .zip(scores)
        .map(|(memory, bm25)| KeywordHit { memory, bm25 })
        .collect())
}

pub(super) fn count_memories(conn: &mut Connection, include_archived: bool) -> Result<u64> {
    let sql = if include_archived {
        "SELECT count(*) FROM memories"
    } else {
        "SELECT count(*) FROM memories WHERE archived = 0"
    };
    conn.query_row(sql, [], |row| row.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db)
}

pub(super) fn integrity_check(conn: &mut Connection) -> Result<String> {
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(db)?;
    let lines = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(lines.join("\n"))
}

/// Memories whose vector is pending by `kind`, in id order after `after`.
pub(super) fn pending_embeddings(
    conn: &mut Connection,
    model_id: &str,
    kind: PendingKind,
    after: Option<MemoryId>,
    limit: u32,
) -> Result<Vec<PendingEmbedding>> {
    let mut stmt = conn.prepare_cached(rows::PENDING_EMBEDDINGS).map_err(db)?;
    let found = stmt
        .query_map(
            params![
                model_id,
                after.map(|id| id.to_string()),
                i64::from(limit),
                i64::from(kind.includes_stale())
            ],
            pending_row,
        )
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    pending_from_rows(found)
}

/// The memories among `ids` whose vector is pending by `kind`, in id order.
pub(super) fn pending_embeddings_among(
    conn: &mut Connection,
    model_id: &str,
    kind: PendingKind,
    ids: &[MemoryId],
) -> Result<Vec<PendingEmbedding>> {
    let mut stmt = conn
        .prepare_cached(rows::PENDING_EMBEDDINGS_AMONG)
        .map_err(db)?;
    let found = stmt
        .query_map(
            params![
                model_id,
                rows::ids_json(ids),
                i64::from(kind.includes_stale())
            ],
            pending_row,
        )
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    pending_from_rows(found)
}

type PendingRow = (String, String, Option<String>);

fn pending_row(row: &Row<'_>) -> rusqlite::Result<PendingRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn pending_from_rows(found: Vec<PendingRow>) -> Result<Vec<PendingEmbedding>> {
    found
        .into_iter()
        .map(|(id, content, summary)| {
            Ok(PendingEmbedding {
                id: id
                    .parse()
                    .map_err(|_| Error::Storage(format!("corrupt row for memory {id}: bad id")))?,
                text: rows::embedding_text(&content, summary.as_deref()),
            })
        })
        .collect()
}

/// Number of memories whose vector is pending by `kind`.
pub(super) fn count_pending_embeddings(
    conn: &mut Connection,
    model_id: &str,
    kind: PendingKind,
) -> Result<u64> {
    conn.prepare_cached(rows::COUNT_PENDING_EMBEDDINGS)
        .and_then(|mut stmt| {
            stmt.query_row(params![model_id, i64::from(kind.includes_stale())], |row| {
                row.get::<_, i64>(0)
            })
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(db)
}

/// Memories linked to or from `ids`, at most `per_memory_max` per given id.
pub(super) fn linked_memories(
    conn: &mut Connection,
    ids: &[MemoryId],
    per_memory_max: u32,
    include_archived: bool,
) -> Result<Vec<LinkedMemory>> {
    if ids.is_empty() || per_memory_max == 0 {
        return Ok(Vec::new());
    }
    let sql = rows::linked_memories_sql(ids.len(), include_archived);
    let mut params: Vec<SqlValue> = ids.iter().map(|id| id.to_string().into()).collect();
    params.push(i64::from(per_memory_max).into());
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let found = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            Ok((row.get::<_, String>(0)?, read_memory_row(row, 1)?))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    drop(stmt);
    let (from, found): (Vec<String>, Vec<MemoryRow>) = found.into_iter().unzip();
    let memories = attach_links(conn, found)?;
    from.into_iter()
        .zip(memories)
        .map(|(from, memory)| {
            Ok(LinkedMemory {
                from: from
                    .parse()
                    .map_err(|_| Error::Storage(format!("corrupt link from {from:?}")))?,
                memory,
            })
        })
        .collect()
}
