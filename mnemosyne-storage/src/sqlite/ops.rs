//! The SQL work of the sqlite backend, run on a pooled connection.

use chrono::{DateTime, Utc};
use mnemosyne_core::{
    BatchOutcome, Error, KeywordHit, KeywordQuery, Link, LinkOutcome, ListQuery, Memory, MemoryId,
    MemoryPatch, OnConflict, Result,
};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{
    Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior, params,
};

use crate::fts_query::query_terms;
use crate::keyword_plan;
use crate::rows::{self, MEMORY_COLUMN_COUNT, MemoryRow, SqlValue};
use crate::schema;

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(v.as_str().into()),
            SqlValue::Null => ToSqlOutput::Owned(Value::Null),
        })
    }
}

fn db(error: rusqlite::Error) -> Error {
    Error::Storage(format!("sqlite: {error}"))
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

pub(super) fn user_version(conn: &mut Connection) -> Result<u32> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let found = user_version(conn)?;
    let pending = schema::pending_migrations(found)?;
    for offset in 0..pending.len() {
        let index = found as usize + offset;
        let tx = begin(conn)?;
        tx.execute_batch(&schema::migration_script(index))
            .map_err(|e| {
                Error::Storage(format!("migration to version {} failed: {e}", index + 1))
            })?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

fn read_memory_row(row: &Row<'_>) -> rusqlite::Result<MemoryRow> {
    Ok(MemoryRow {
        id: row.get(0)?,
        namespace: row.get(1)?,
        content: row.get(2)?,
        summary: row.get(3)?,
        memory_type: row.get(4)?,
        importance: row.get(5)?,
        tags: row.get(6)?,
        created_at_ms: row.get(7)?,
        updated_at_ms: row.get(8)?,
        accessed_at_ms: row.get(9)?,
        access_count: row.get(10)?,
        archived: row.get(11)?,
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

pub(super) fn insert_memory(conn: &mut Connection, memory: &Memory) -> Result<()> {
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
        .and_then(|mut stmt| stmt.query_row([id], read_memory_row).optional())
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
    tx.commit().map_err(db)?;
    Ok(memory)
}

pub(super) fn delete_memory(conn: &mut Connection, id: MemoryId) -> Result<()> {
    let changed = conn
        .execute(rows::DELETE_MEMORY, [id.to_string()])
        .map_err(db)?;
    if changed == 0 {
        Err(Error::NotFound(id))
    } else {
        Ok(())
    }
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

pub(super) fn add_links(conn: &mut Connection, links: &[(MemoryId, Link)]) -> Result<LinkOutcome> {
    let tx = begin(conn)?;
    let now_ms = rows::to_ms(Utc::now());
    let mut outcome = LinkOutcome::default();
    for (source, link) in links {
        if insert_link(&tx, &source.to_string(), link, now_ms)? {
            outcome.linked += 1;
        } else {
            outcome.missing += 1;
        }
    }
    tx.commit().map_err(db)?;
    Ok(outcome)
}

/// Fills in the links of each memory with one query per chunk of ids.
fn attach_links(
    conn: &Connection,
    memories: Vec<(MemoryRow, Option<f64>)>,
) -> Result<Vec<(Memory, Option<f64>)>> {
    const CHUNK: usize = 500;
    let mut links: std::collections::HashMap<String, Vec<Link>> = std::collections::HashMap::new();
    for chunk in memories.chunks(CHUNK) {
        let mut stmt = conn
            .prepare_cached(&rows::links_of_sql(chunk.len()))
            .map_err(db)?;
        let ids = chunk.iter().map(|(row, _)| row.id.as_str());
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
        .map(|(row, score)| {
            let own = links.remove(&row.id).unwrap_or_default();
            Ok((row.into_memory(own)?, score))
        })
        .collect()
}

pub(super) fn list_memories(conn: &mut Connection, query: &ListQuery) -> Result<Vec<Memory>> {
    let (sql, params) = rows::list_sql(query);
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let found = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            Ok((read_memory_row(row)?, None))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    drop(stmt);
    Ok(attach_links(conn, found)?
        .into_iter()
        .map(|(memory, _)| memory)
        .collect())
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
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let found = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            Ok((
                read_memory_row(row)?,
                Some(row.get::<_, f64>(MEMORY_COLUMN_COUNT)?),
            ))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    drop(stmt);
    Ok(attach_links(conn, found)?
        .into_iter()
        .map(|(memory, score)| KeywordHit {
            memory,
            bm25: score.unwrap_or_default(),
        })
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
