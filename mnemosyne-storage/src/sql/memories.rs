//! Memories, their tags and links, and the bookkeeping of their vectors,
//! written once for every backend over [`Conn`]. The vector index itself is
//! the backend's ([`VectorIndex`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mnemosyne_core::{
    BatchOutcome, Embedding, Error, KeywordHit, KeywordQuery, Link, LinkOutcome, LinkedMemory,
    ListQuery, Memory, MemoryId, MemoryPatch, OnConflict, PendingEmbedding, PendingKind, Result,
    VectorHit,
};

use super::conn::{Conn, Row, transaction};
use super::{SameModel, VectorIndex};
use crate::fts_query::query_terms;
use crate::keyword_plan;
use crate::rows::{self, MEMORY_COLUMN_COUNT, MemoryRow, SqlValue};

/// Ids of memories whose links are read in one statement.
const LINKS_CHUNK: usize = 500;

fn text(v: &str) -> SqlValue {
    SqlValue::Text(v.to_owned())
}

/// Reads [`rows::MEMORY_COLUMNS`] starting at column `first`.
pub fn read_memory_row(row: &dyn Row, first: usize) -> Result<MemoryRow> {
    Ok(MemoryRow {
        id: row.text(first)?,
        namespace: row.text(first + 1)?,
        content: row.text(first + 2)?,
        summary: row.opt_text(first + 3)?,
        memory_type: row.text(first + 4)?,
        importance: row.int(first + 5)?,
        tags: row.text(first + 6)?,
        created_at_ms: row.int(first + 7)?,
        updated_at_ms: row.int(first + 8)?,
        accessed_at_ms: row.int(first + 9)?,
        access_count: row.int(first + 10)?,
        archived: row.int(first + 11)?,
    })
}

fn exists(conn: &mut impl Conn, id: &str) -> Result<bool> {
    Ok(conn
        .query_first(rows::MEMORY_EXISTS, &[text(id)], |_| Ok(()))?
        .is_some())
}

fn insert_tags(conn: &mut impl Conn, memory: &Memory, id: &str) -> Result<()> {
    for tag in &memory.tags {
        conn.execute(rows::INSERT_TAG, &[text(tag), text(id)])?;
    }
    Ok(())
}

/// Inserts the link unless it exists; `Ok(false)` when an end is missing.
fn insert_link(conn: &mut impl Conn, source: &str, link: &Link, now_ms: i64) -> Result<bool> {
    let target = link.target.to_string();
    let params = [
        text(source),
        text(&target),
        text(link.link_type.as_str()),
        SqlValue::Int(now_ms),
    ];
    let changed = conn.execute(rows::INSERT_LINK, &params)?;
    Ok(changed == 1 || (exists(conn, source)? && exists(conn, &target)?))
}

/// Stores a memory with its tags, links and vector in one transaction.
pub fn insert_memory<V: VectorIndex>(
    conn: &mut V::Conn,
    memory: &Memory,
    embedding: Option<&Embedding>,
) -> Result<()> {
    transaction(conn, |conn| {
        let id = memory.id.to_string();
        match conn.execute(rows::INSERT_MEMORY, &rows::memory_params(memory)) {
            Err(e) if e.is_unique_violation() => return Err(Error::AlreadyExists(memory.id)),
            other => other?,
        };
        insert_tags(conn, memory, &id)?;
        let now_ms = rows::to_ms(memory.created_at);
        for link in &memory.links {
            if !insert_link(conn, &id, link, now_ms)? {
                return Err(Error::NotFound(link.target));
            }
        }
        if let Some(embedding) = embedding {
            V::store(conn, &id, embedding, SameModel::Replace)?;
        }
        Ok(())
    })
}

/// Stores many memories (without links) in one transaction.
pub fn insert_memories(
    conn: &mut impl Conn,
    memories: &[Memory],
    on_conflict: OnConflict,
) -> Result<BatchOutcome> {
    transaction(conn, |conn| {
        let mut outcome = BatchOutcome::default();
        for memory in memories {
            let changed =
                conn.execute(rows::INSERT_MEMORY_OR_IGNORE, &rows::memory_params(memory))?;
            if changed == 0 {
                if on_conflict == OnConflict::Fail {
                    return Err(Error::AlreadyExists(memory.id));
                }
                outcome.skipped += 1;
                continue;
            }
            insert_tags(conn, memory, &memory.id.to_string())?;
            outcome.inserted += 1;
        }
        Ok(outcome)
    })
}

fn links_of(conn: &mut impl Conn, id: &str) -> Result<Vec<Link>> {
    conn.query_all(rows::SELECT_LINKS, &[text(id)], |row| {
        rows::decode_link(&row.text(0)?, &row.text(1)?)
    })
}

fn load_memory(conn: &mut impl Conn, id: &str) -> Result<Option<Memory>> {
    let sql = rows::select_memory_by_id();
    match conn.query_first(&sql, &[text(id)], |row| read_memory_row(row, 0))? {
        Some(row) => Ok(Some(row.into_memory(links_of(conn, id)?)?)),
        None => Ok(None),
    }
}

/// The memory with this id, archived or not.
pub fn get_memory(conn: &mut impl Conn, id: MemoryId) -> Result<Option<Memory>> {
    load_memory(conn, &id.to_string())
}

/// Bumps the access count and time of one memory.
pub fn record_access(conn: &mut impl Conn, id: MemoryId, at: DateTime<Utc>) -> Result<()> {
    let params = [text(&id.to_string()), SqlValue::Int(rows::to_ms(at))];
    if conn.execute(rows::RECORD_ACCESS, &params)? == 0 {
        Err(Error::NotFound(id))
    } else {
        Ok(())
    }
}

/// Applies a patch (and replaces the vector when one is given) in one transaction.
pub fn update_memory<V: VectorIndex>(
    conn: &mut V::Conn,
    id: MemoryId,
    patch: &MemoryPatch,
    now: DateTime<Utc>,
    embedding: Option<&Embedding>,
) -> Result<Memory> {
    transaction(conn, |conn| {
        let key = id.to_string();
        let mut memory = load_memory(conn, &key)?.ok_or(Error::NotFound(id))?;
        patch.apply_to(&mut memory, now);
        conn.execute(rows::UPDATE_MEMORY, &rows::memory_params(&memory))?;
        if patch.tags.is_some() {
            conn.execute(rows::DELETE_TAGS, &[text(&key)])?;
            insert_tags(conn, &memory, &key)?;
        }
        if let Some(embedding) = embedding {
            V::store(conn, &key, embedding, SameModel::Replace)?;
        }
        Ok(memory)
    })
}

/// Deletes a memory; tags, links and vector rows follow by cascade, index
/// rows by the backend's [`VectorIndex::unindex`].
pub fn delete_memory<V: VectorIndex>(conn: &mut V::Conn, id: MemoryId) -> Result<()> {
    // In a transaction so that the cascade runs with foreign keys on (the
    // libsql backend switches them on as it begins).
    transaction(conn, |conn| {
        let key = id.to_string();
        V::unindex(conn, &key)?;
        if conn.execute(rows::DELETE_MEMORY, &[text(&key)])? == 0 {
            Err(Error::NotFound(id))
        } else {
            Ok(())
        }
    })
}

/// Adds one link unless `source` has `links_max` links already.
pub fn add_link(conn: &mut impl Conn, source: MemoryId, link: &Link, links_max: u32) -> Result<()> {
    transaction(conn, |conn| {
        let key = source.to_string();
        if !exists(conn, &key)? {
            return Err(Error::NotFound(source));
        }
        if !exists(conn, &link.target.to_string())? {
            return Err(Error::NotFound(link.target));
        }
        let (existing, already) = link_state(conn, &key, link)?;
        if !already && existing >= i64::from(links_max) {
            return Err(Error::invalid(format!(
                "memory {source} already has {existing} links, the limit (memory_links_max)"
            )));
        }
        insert_link(conn, &key, link, rows::to_ms(Utc::now()))?;
        Ok(())
    })
}

/// `(outgoing links of source, whether this link exists)`.
fn link_state(conn: &mut impl Conn, source: &str, link: &Link) -> Result<(i64, bool)> {
    let params = [
        text(source),
        text(&link.target.to_string()),
        text(link.link_type.as_str()),
    ];
    conn.query_one(rows::LINK_STATE, &params, |row| {
        Ok((row.int(0)?, row.int(1)? != 0))
    })
}

/// Adds many links in one transaction, counting those left out.
pub fn add_links(
    conn: &mut impl Conn,
    links: &[(MemoryId, Link)],
    links_max: u32,
) -> Result<LinkOutcome> {
    transaction(conn, |conn| {
        let now_ms = rows::to_ms(Utc::now());
        let mut outcome = LinkOutcome::default();
        for (source, link) in links {
            let key = source.to_string();
            let (count, already) = link_state(conn, &key, link)?;
            if !already && count >= i64::from(links_max) {
                outcome.over_limit += 1;
            } else if insert_link(conn, &key, link, now_ms)? {
                outcome.linked += 1;
            } else {
                outcome.missing += 1;
            }
        }
        Ok(outcome)
    })
}

/// Decodes the rows, filling in the links of each memory with one query per
/// chunk of ids. A memory may come more than once (linked from several
/// given ones): each copy gets its links.
pub fn attach_links(conn: &mut impl Conn, memories: Vec<MemoryRow>) -> Result<Vec<Memory>> {
    let mut links: HashMap<String, Vec<Link>> = HashMap::new();
    for chunk in memories.chunks(LINKS_CHUNK) {
        let ids: Vec<SqlValue> = chunk.iter().map(|row| text(&row.id)).collect();
        conn.for_each_row(&rows::links_of_sql(chunk.len()), &ids, &mut |row| {
            let link = rows::decode_link(&row.text(1)?, &row.text(2)?)?;
            links.entry(row.text(0)?).or_default().push(link);
            Ok(())
        })?;
    }
    memories
        .into_iter()
        .map(|row| {
            let own = links.get(&row.id).cloned().unwrap_or_default();
            row.into_memory(own)
        })
        .collect()
}

/// The memories of a query over [`rows::MEMORY_COLUMNS`], with their links.
pub fn load_memories(conn: &mut impl Conn, sql: &str, params: &[SqlValue]) -> Result<Vec<Memory>> {
    let found = conn.query_all(sql, params, |row| read_memory_row(row, 0))?;
    attach_links(conn, found)
}

/// A page of memories.
pub fn list_memories(conn: &mut impl Conn, query: &ListQuery) -> Result<Vec<Memory>> {
    let (sql, params) = rows::list_sql(query);
    load_memories(conn, &sql, &params)
}

/// Keyword search: a probe per query term picks the plan
/// ([`keyword_plan`]), then the ranked seqs are read in growing chunks
/// until `limit` memories pass the filters.
pub fn keyword_search(conn: &mut impl Conn, query: &KeywordQuery) -> Result<Vec<KeywordHit>> {
    let terms = query_terms(&query.text);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let mut stats = Vec::with_capacity(terms.len());
    for term in terms {
        let params = [
            SqlValue::Text(keyword_plan::probe_expression(&term)),
            SqlValue::Int(keyword_plan::FREQUENT_TERM_DOCS - 1),
        ];
        let row = conn.query_first(keyword_plan::PROBE_SQL, &params, |row| {
            Ok((row.int(0)?, row.int(1)?))
        })?;
        stats.push(keyword_plan::TermStat::from_probe(term, row));
    }
    let (sql, params) = keyword_plan::keyword_sql(query, &stats);
    let ranked = conn.query_all(&sql, &params, |row| Ok((row.int(0)?, row.real(1)?)))?;
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
        conn.for_each_row(&sql, &params, &mut |row| {
            let at = usize::try_from(row.int(MEMORY_COLUMN_COUNT)?).unwrap_or(usize::MAX);
            let score = chunk.get(at).map_or(0.0, |(_, score)| *score);
            found.push((taken + at, read_memory_row(row, 0)?, score));
            Ok(())
        })?;
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

/// Number of memories, archived ones too or not.
pub fn count_memories(conn: &mut impl Conn, include_archived: bool) -> Result<u64> {
    let sql = if include_archived {
        "SELECT count(*) FROM memories"
    } else {
        "SELECT count(*) FROM memories WHERE archived = 0"
    };
    let count = conn.query_one(sql, &[], |row| row.int(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Stores many vectors in one transaction; returns how many were stored.
pub fn set_embeddings<V: VectorIndex>(
    conn: &mut V::Conn,
    items: &[(MemoryId, Embedding)],
    same_model: SameModel,
) -> Result<u64> {
    transaction(conn, |conn| {
        let mut stored = 0;
        for (id, embedding) in items {
            if V::store(conn, &id.to_string(), embedding, same_model)? {
                stored += 1;
            }
        }
        Ok(stored)
    })
}

fn pending_row(row: &dyn Row) -> Result<PendingEmbedding> {
    let id = row.text(0)?;
    let content = row.text(1)?;
    let summary = row.opt_text(2)?;
    Ok(PendingEmbedding {
        id: id
            .parse()
            .map_err(|_| Error::Storage(format!("corrupt row for memory {id}: bad id")))?,
        text: rows::embedding_text(&content, summary.as_deref()),
    })
}

fn stale_flag(kind: PendingKind) -> SqlValue {
    SqlValue::Int(i64::from(kind.includes_stale()))
}

/// Memories whose vector is pending by `kind`, in id order after `after`.
pub fn pending_embeddings(
    conn: &mut impl Conn,
    model_id: &str,
    kind: PendingKind,
    after: Option<MemoryId>,
    limit: u32,
) -> Result<Vec<PendingEmbedding>> {
    let params = [
        text(model_id),
        after.map_or(SqlValue::Null, |id| SqlValue::Text(id.to_string())),
        SqlValue::Int(i64::from(limit)),
        stale_flag(kind),
    ];
    conn.query_all(rows::PENDING_EMBEDDINGS, &params, pending_row)
}

/// The memories among `ids` whose vector is pending by `kind`, in id order.
pub fn pending_embeddings_among(
    conn: &mut impl Conn,
    model_id: &str,
    kind: PendingKind,
    ids: &[MemoryId],
) -> Result<Vec<PendingEmbedding>> {
    let params = [text(model_id), text(&rows::ids_json(ids)), stale_flag(kind)];
    conn.query_all(rows::PENDING_EMBEDDINGS_AMONG, &params, pending_row)
}

/// Number of memories whose vector is pending by `kind`.
pub fn count_pending_embeddings(
    conn: &mut impl Conn,
    model_id: &str,
    kind: PendingKind,
) -> Result<u64> {
    let params = [text(model_id), stale_flag(kind)];
    let count = conn.query_one(rows::COUNT_PENDING_EMBEDDINGS, &params, |row| row.int(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Memories linked to or from `ids`, at most `per_memory_max` per given id.
pub fn linked_memories(
    conn: &mut impl Conn,
    ids: &[MemoryId],
    per_memory_max: u32,
    include_archived: bool,
) -> Result<Vec<LinkedMemory>> {
    let sql = rows::linked_memories_sql(ids.len(), include_archived);
    let mut params: Vec<SqlValue> = ids
        .iter()
        .map(|id| SqlValue::Text(id.to_string()))
        .collect();
    params.push(SqlValue::Int(i64::from(per_memory_max)));
    let found = conn.query_all(&sql, &params, |row| {
        Ok((row.text(0)?, read_memory_row(row, 1)?))
    })?;
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

/// The memories of ranked `(seq, similarity)` candidates, in rank order,
/// with their links; a memory deleted meanwhile is left out.
pub fn vector_hits(conn: &mut impl Conn, ranked: Vec<(i64, f64)>) -> Result<Vec<VectorHit>> {
    let mut found: HashMap<i64, MemoryRow> = HashMap::with_capacity(ranked.len());
    for chunk in ranked.chunks(LINKS_CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT m.seq, {} FROM memories m WHERE m.seq IN ({})",
            rows::MEMORY_COLUMNS,
            placeholders.join(", ")
        );
        let params: Vec<SqlValue> = chunk.iter().map(|(seq, _)| SqlValue::Int(*seq)).collect();
        conn.for_each_row(&sql, &params, &mut |row| {
            found.insert(row.int(0)?, read_memory_row(row, 1)?);
            Ok(())
        })?;
    }
    let (rows, similarities): (Vec<MemoryRow>, Vec<f64>) = ranked
        .into_iter()
        .filter_map(|(seq, similarity)| found.remove(&seq).map(|row| (row, similarity)))
        .unzip();
    Ok(attach_links(conn, rows)?
        .into_iter()
        .zip(similarities)
        .map(|(memory, similarity)| VectorHit { memory, similarity })
        .collect())
}
