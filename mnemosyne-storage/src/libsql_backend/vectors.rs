//! Vectors in the libsql backend: libsql's native vector index (DiskANN).
//!
//! # Layout
//!
//! Every vector is stored exactly (little-endian f32) in the shared
//! `memory_embeddings` table with its model id. Beside it, one
//! nearest-neighbour index per dimension count `d`, created by the writer
//! the first time a `d`-dimensional vector is stored, in that same transaction:
//!
//! - `memory_vectors_d (memory_seq INTEGER PRIMARY KEY, embedding F8_BLOB(d))`:
//!   the vector quantised to one byte per dimension (the index only proposes
//!   candidates; ranking always uses the exact vector);
//! - `memory_vectors_d_ann`, a `libsql_vector_idx` (DiskANN, cosine metric,
//!   at most [`MAX_NEIGHBORS_MAX`] neighbours per node, search list
//!   [`SEARCH_LIST`]). Each node stores a copy of every neighbour's vector: one
//!   byte per dimension below [`NEIGHBORS_1BIT_DIMS_MIN`] dimensions, one
//!   bit from there on (else a 384-dimensional node would take ~16 KiB);
//! - triggers `memory_vectors_d_delete` and `memory_vectors_d_redim` on
//!   `memory_embeddings`: a vector deleted (a memory's delete cascades to it)
//!   or replaced by one of another size leaves the index in the same statement.
//!
//! Vectors of several models with the same size share one index; the model
//! is a filter (a memory has one vector, so one model, at a time). A zero
//! vector is stored but not indexed (it has no direction); only exact scans see it.
//!
//! # Search
//!
//! 1. The query's model must have vectors of the query's size; a model with
//!    vectors of another size is [`Error::InvalidInput`], a model without
//!    vectors (or a zero query vector, which has no direction) gives no hits.
//! 2. **Exact** when the model has at most [`exact_scan_rows_max`] vectors
//!    (2 000, fewer for wide vectors: at most [`EXACT_SCAN_FLOATS_MAX`]
//!    floats): every vector of the model passing the filters is compared.
//!    So small stores always return the true nearest neighbours.
//! 3. Otherwise **approximate**: `vector_top_k` proposes
//!    `clamp(limit * 8, 100, 200)` candidates, 200 when a namespace or tag
//!    filter applies. The index cannot give more: libsql's DiskANN returns at
//!    most about its search list ([`SEARCH_LIST`] = 200) rows whatever `k` asks.
//!    Candidates are filtered (model, namespaces, tags, archived) and ranked by
//!    exact cosine similarity from `memory_embeddings`.
//! 4. If filters leave fewer than `limit`, the hits are topped up by an exact
//!    scan of at most [`exact_scan_rows_max`] vectors passing the filters:
//!    exhaustive, so exact, when the filtered set is that small; otherwise
//!    the result holds the index's candidates plus that many scanned ones.

use mnemosyne_core::{Embedding, Error, Result, VectorHit, VectorQuery};

use super::{Libsql, LibsqlConn};
use crate::rows::{self, SqlValue};
use crate::sql::conn::Conn;
use crate::sql::{SameModel, VectorIndex, memories};

impl VectorIndex for Libsql {
    type Conn = LibsqlConn;

    fn store(
        conn: &mut LibsqlConn,
        id: &str,
        embedding: &Embedding,
        same_model: SameModel,
    ) -> Result<bool> {
        let Some((seq, stored_model)) = conn.query_first(
            "SELECT m.seq, e.model_id FROM memories m \
         LEFT JOIN memory_embeddings e ON e.memory_seq = m.seq WHERE m.id = ?1",
            &[text(id)],
            |row| Ok((row.int(0)?, row.opt_text(1)?)),
        )?
        else {
            return Ok(false);
        };
        if same_model == SameModel::Keep
            && stored_model.as_deref() == Some(embedding.model_id.as_str())
        {
            return Ok(false);
        }
        let dims = embedding.dims();
        ensure_index(conn, dims)?;
        let blob = rows::vector_to_blob(&embedding.vector);
        // A vector of another size leaves its old index by the redim trigger.
        conn.execute(
            rows::UPSERT_EMBEDDING,
            &[
                text(id),
                text(&embedding.model_id),
                SqlValue::Int(i64::try_from(dims).unwrap_or(i64::MAX)),
                SqlValue::Blob(blob.clone()),
            ],
        )?;
        let table = table(dims);
        conn.execute(
            &format!("DELETE FROM {table} WHERE memory_seq = ?1"),
            &[SqlValue::Int(seq)],
        )?;
        if embedding.vector.iter().any(|x| *x != 0.0) {
            conn.execute(
                &format!("INSERT INTO {table} (memory_seq, embedding) VALUES (?1, vector8(?2))"),
                &[SqlValue::Int(seq), SqlValue::Blob(blob)],
            )?;
        }
        Ok(true)
    }

    /// Nothing to do: the delete cascades to `memory_embeddings`, whose
    /// triggers remove the index rows.
    fn unindex(_: &mut LibsqlConn, _: &str) -> Result<()> {
        Ok(())
    }

    fn search(conn: &mut LibsqlConn, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        let ranked = nearest(conn, query)?;
        memories::vector_hits(conn, ranked)
    }
}

fn text(v: &str) -> SqlValue {
    SqlValue::Text(v.to_owned())
}

/// The index's search list (`search_l`): how many candidates DiskANN keeps
/// while walking its graph, and so about the most rows one search returns.
pub(super) const SEARCH_LIST: i64 = 200;

/// Most neighbours per node (`max_neighbors`). libsql's default, 3 (√d + 1),
/// is 60 for 384 dimensions; 40 made inserts 40% and searches 30% faster on
/// random 384-dimensional data for the same recall.
pub(super) const MAX_NEIGHBORS_MAX: usize = 40;

/// From this many dimensions on, the copies of neighbours' vectors in each
/// node are compressed to one bit per dimension (`compress_neighbors=float1bit`).
/// One bit costs recall on hard data (uniformly random vectors: recall@10 of
/// the candidates 0.8 instead of 0.99 at 5 000 vectors of 64 to 384
/// dimensions, 0.49 instead of 0.70 at 20 000 of 384), and below ~256
/// dimensions a node is small either way. At 384 dimensions one byte made
/// the index 3.7 times larger (350 MB per 20 000 vectors) and inserts 3.5
/// times slower.
pub(super) const NEIGHBORS_1BIT_DIMS_MIN: usize = 256;

/// Fewest candidates asked from the index.
pub(super) const ANN_CANDIDATES_MIN: i64 = 100;

/// Candidates asked from the index per hit wanted, without namespace or tag filters.
pub(super) const ANN_CANDIDATES_PER_HIT: i64 = 8;

/// Most vectors an exact scan compares.
pub(super) const EXACT_SCAN_ROWS_MAX: i64 = 2_000;

/// Most floats an exact scan compares (vectors times dimensions).
pub(super) const EXACT_SCAN_FLOATS_MAX: i64 = 1 << 20;

/// Most vectors of `dims` an exact scan compares: [`EXACT_SCAN_ROWS_MAX`],
/// fewer when that many would exceed [`EXACT_SCAN_FLOATS_MAX`] floats.
pub(super) fn exact_scan_rows_max(dims: usize) -> i64 {
    let dims = i64::try_from(dims.max(1)).unwrap_or(i64::MAX);
    (EXACT_SCAN_FLOATS_MAX / dims).clamp(1, EXACT_SCAN_ROWS_MAX)
}

/// Candidates asked from the index for `limit` hits.
pub(super) fn ann_candidates(limit: u32, filtered: bool) -> i64 {
    if filtered {
        return SEARCH_LIST;
    }
    (i64::from(limit) * ANN_CANDIDATES_PER_HIT).clamp(ANN_CANDIDATES_MIN, SEARCH_LIST)
}

fn table(dims: usize) -> String {
    format!("memory_vectors_{dims}")
}

fn index_name(dims: usize) -> String {
    format!("memory_vectors_{dims}_ann")
}

/// Neighbours per node for `dims`: libsql's default capped at [`MAX_NEIGHBORS_MAX`].
fn max_neighbors(dims: usize) -> usize {
    (3 * (dims.isqrt() + 1)).min(MAX_NEIGHBORS_MAX)
}

/// The table, index and triggers of the index for `dims`; the last
/// statement creates the object [`ensure_index`] looks for.
fn index_ddl(dims: usize) -> String {
    let table = table(dims);
    let index = index_name(dims);
    let neighbors = max_neighbors(dims);
    let compress = if dims >= NEIGHBORS_1BIT_DIMS_MIN {
        "'compress_neighbors=float1bit', "
    } else {
        ""
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
           memory_seq INTEGER PRIMARY KEY, embedding F8_BLOB({dims}) NOT NULL);\
         CREATE INDEX IF NOT EXISTS {index} ON {table} (libsql_vector_idx(embedding, \
           'metric=cosine', {compress}'max_neighbors={neighbors}', 'search_l={SEARCH_LIST}'));\
         CREATE TRIGGER IF NOT EXISTS {table}_delete AFTER DELETE ON memory_embeddings \
           WHEN old.dims = {dims} BEGIN DELETE FROM {table} WHERE memory_seq = old.memory_seq; END;\
         CREATE TRIGGER IF NOT EXISTS {table}_redim AFTER UPDATE OF dims ON memory_embeddings \
           WHEN old.dims = {dims} AND new.dims <> {dims} \
           BEGIN DELETE FROM {table} WHERE memory_seq = old.memory_seq; END;"
    )
}

/// Creates the index for `dims` unless it exists. Runs in the writer's transaction.
fn ensure_index(conn: &mut LibsqlConn, dims: usize) -> Result<()> {
    let last = format!("{}_redim", table(dims));
    let exists = conn
        .query_first(
            "SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
            &[SqlValue::Text(last)],
            |_| Ok(()),
        )?
        .is_some();
    if !exists {
        conn.execute_batch(&index_ddl(dims)).map_err(|e| {
            Error::Storage(format!(
                "libsql: cannot create the vector index for {dims} dimensions: {e}"
            ))
        })?;
    }
    Ok(())
}

fn index_exists(conn: &mut LibsqlConn, dims: usize) -> Result<bool> {
    Ok(conn
        .query_first(
            "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1",
            &[SqlValue::Text(index_name(dims))],
            |_| Ok(()),
        )?
        .is_some())
}

/// A candidate: the memory's `seq` and its exact cosine similarity to the query.
type Scored = (i64, f64);

/// Reads `(seq, vector blob)` rows and scores them against the query.
fn score_rows(
    conn: &mut LibsqlConn,
    sql: &str,
    params: &[SqlValue],
    query: &[f32],
) -> Result<Vec<Scored>> {
    conn.query_all(sql, params, |row| {
        let seq = row.int(0)?;
        let blob = row.blob(1)?;
        let vector = rows::blob_to_vector(&blob)?;
        if vector.len() != query.len() {
            return Err(Error::Storage(format!(
                "libsql: vector of memory seq {seq} has {} dimensions, its row says {}",
                vector.len(),
                query.len()
            )));
        }
        Ok((seq, rows::cosine(&vector, query)))
    })
}

/// The filter SQL on aliases `e` (memory_embeddings) and `m` (memories),
/// with the model and size as `?first`, `?first+1`.
fn filters(query: &VectorQuery, dims: usize, params: &mut Vec<SqlValue>) -> String {
    params.push(query.model_id.clone().into());
    let mut sql = format!(" AND e.model_id = ?{}", params.len());
    params.push(i64::try_from(dims).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" AND e.dims = ?{}", params.len()));
    rows::push_filters(
        &mut sql,
        params,
        &query.namespaces,
        &query.tags,
        query.include_archived,
        query.min_importance,
    );
    sql
}

/// Exact scan: every vector of the query's model and size passing the
/// filters, at most `cap` + 1 of them when capped. Uncapped scans walk the
/// model's vectors (the caller knows there are few); capped ones walk the
/// memories a namespace or tag filter selects when there is one, so that a
/// small filtered set among many vectors is read whole, not searched for.
fn exact_scan(conn: &mut LibsqlConn, query: &VectorQuery, cap: Option<i64>) -> Result<Vec<Scored>> {
    let mut params = Vec::new();
    let from_memories = cap.is_some() && (!query.namespaces.is_empty() || !query.tags.is_empty());
    let mut sql = String::from(if from_memories {
        "SELECT e.memory_seq, e.vector FROM memories m \
         CROSS JOIN memory_embeddings e ON e.memory_seq = m.seq WHERE 1 = 1"
    } else {
        "SELECT e.memory_seq, e.vector FROM memory_embeddings e \
         CROSS JOIN memories m ON m.seq = e.memory_seq WHERE 1 = 1"
    });
    sql.push_str(&filters(query, query.vector.len(), &mut params));
    if let Some(tag) = query.tags.first() {
        // Lets the planner walk the tag's rows instead of the model's.
        params.push(tag.clone().into());
        sql.push_str(&format!(
            " AND m.seq IN (SELECT memory_seq FROM memory_tags WHERE tag = ?{})",
            params.len()
        ));
    }
    if let Some(cap) = cap {
        params.push(cap.saturating_add(1).into());
        sql.push_str(&format!(" LIMIT ?{}", params.len()));
    }
    score_rows(conn, &sql, &params, &query.vector)
}

/// Approximate: the index's `k` candidates, filtered.
fn ann_scan(conn: &mut LibsqlConn, query: &VectorQuery, k: i64) -> Result<Vec<Scored>> {
    let dims = query.vector.len();
    let mut params = vec![SqlValue::Int(k)];
    // The vector goes in as ?2, once the filters have their numbers.
    params.push(SqlValue::Null);
    // CROSS JOIN keeps the join order: the index's rows first, each looked up.
    let mut sql = format!(
        "SELECT e.memory_seq, e.vector FROM vector_top_k('{}', vector8(?2), ?1) v \
         CROSS JOIN memory_embeddings e ON e.memory_seq = v.id \
         CROSS JOIN memories m ON m.seq = v.id WHERE 1 = 1",
        index_name(dims)
    );
    sql.push_str(&filters(query, dims, &mut params));
    params[1] = SqlValue::Blob(rows::vector_to_blob(&query.vector));
    score_rows(conn, &sql, &params, &query.vector)
}

/// Best first (ties: older memory first), each memory once, at most `limit`.
fn rank(mut scored: Vec<Scored>, limit: u32) -> Vec<Scored> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut seen = std::collections::HashSet::new();
    scored.retain(|(seq, _)| seen.insert(*seq));
    scored.truncate(limit as usize);
    scored
}

/// The best `query.limit` `(seq, similarity)` of the query's model that
/// pass its filters, best first.
fn nearest(conn: &mut LibsqlConn, query: &VectorQuery) -> Result<Vec<Scored>> {
    let dims = query.vector.len();
    // A zero vector has no direction: nothing is near it.
    if query.limit == 0 || query.vector.iter().all(|x| *x == 0.0) {
        return Ok(Vec::new());
    }
    // One row tells the model's size in the common case (one size per model).
    let model_dims = conn.query_first(
        "SELECT dims FROM memory_embeddings WHERE model_id = ?1 LIMIT 1",
        &[text(&query.model_id)],
        |row| row.int(0),
    )?;
    let Some(model_dims) = model_dims else {
        return Ok(Vec::new());
    };
    let dims_i64 = i64::try_from(dims).unwrap_or(i64::MAX);
    if model_dims != dims_i64 {
        let any_of_size = conn.query_first(
            "SELECT 1 FROM memory_embeddings WHERE model_id = ?1 AND dims = ?2 LIMIT 1",
            &[text(&query.model_id), SqlValue::Int(dims_i64)],
            |_| Ok(()),
        )?;
        if any_of_size.is_none() {
            return Err(Error::invalid(format!(
                "query vector has {dims} dimensions, the model's vectors have {model_dims}"
            )));
        }
    }
    let cap = exact_scan_rows_max(dims);
    let model_vectors = conn.query_one(
        "SELECT count(*) FROM (SELECT 1 FROM memory_embeddings WHERE model_id = ?1 LIMIT ?2)",
        &[text(&query.model_id), SqlValue::Int(cap + 1)],
        |row| row.int(0),
    )?;
    let ranked = if model_vectors <= cap {
        rank(exact_scan(conn, query, None)?, query.limit)
    } else if !index_exists(conn, dims)? {
        // Vectors written by a build without this index (another backend).
        tracing::warn!(
            dims,
            "libsql: no vector index for {dims} dimensions; comparing every vector"
        );
        rank(exact_scan(conn, query, None)?, query.limit)
    } else {
        let filtered = !query.namespaces.is_empty()
            || !query.tags.is_empty()
            || query.min_importance.is_some();
        let k = ann_candidates(query.limit, filtered);
        let mut candidates = ann_scan(conn, query, k)?;
        // The index's rows are distinct memories.
        if candidates.len() < query.limit as usize {
            candidates.extend(exact_scan(conn, query, Some(cap))?);
        }
        rank(candidates, query.limit)
    };
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_scans_are_bounded_by_rows_and_floats() {
        assert_eq!(exact_scan_rows_max(32), EXACT_SCAN_ROWS_MAX);
        assert_eq!(exact_scan_rows_max(384), EXACT_SCAN_ROWS_MAX);
        assert_eq!(exact_scan_rows_max(1_536), 682);
        assert_eq!(exact_scan_rows_max(65_536), 16);
    }

    #[test]
    fn candidates_scale_with_the_limit_up_to_the_search_list() {
        assert_eq!(ann_candidates(5, false), ANN_CANDIDATES_MIN);
        assert_eq!(ann_candidates(20, false), 160);
        assert_eq!(ann_candidates(100, false), SEARCH_LIST);
        assert_eq!(ann_candidates(5, true), SEARCH_LIST);
    }

    #[test]
    fn neighbours_follow_libsql_default_within_the_cap() {
        assert_eq!(max_neighbors(8), 9);
        assert_eq!(max_neighbors(32), 18);
        assert_eq!(max_neighbors(384), MAX_NEIGHBORS_MAX);
    }

    #[test]
    fn ranking_is_best_first_and_bounded() {
        let ranked = rank(vec![(1, 0.5), (2, 0.9), (3, 0.5), (2, 0.9), (4, -1.0)], 3);
        assert_eq!(ranked, [(2, 0.9), (1, 0.5), (3, 0.5)]);
    }
}
