//! Vectors in the sqlite backend. The shared `memory_embeddings` table holds
//! every vector exactly (little-endian f32); a sqlite-vec `vec0` table per
//! dimension count holds two compact codes of each vector, the coarse index.
//!
//! # Index layout
//!
//! `memory_vectors_{dims}`, created in the writing transaction that stores
//! the first vector of that size (384 dimensions shown):
//!
//! ```sql
//! CREATE VIRTUAL TABLE memory_vectors_384 USING vec0 (
//!     model_id TEXT PARTITION KEY, -- each model's vectors in their own chunks
//!     sign     BIT[384],           -- 1 bit a dimension: set when positive
//!     levels   BIT[1536]           -- 4 bits a dimension: round(x / (0.4 rms)), +-7
//! );
//! ```
//!
//! Its rowid is `memories.seq`. Every write of a vector updates it in the
//! same transaction: the old row (if any) is deleted and a new one inserted
//! (sqlite-vec cannot update a bit vector in place; it frees a chunk of 1024
//! slots once all its rows are gone); deleting a memory deletes its row.
//! These are explicit statements, not triggers, so a writer without
//! sqlite-vec (the `sqlite3` shell, the libsql backend) can still delete
//! memories: the search checks every candidate against `memory_embeddings`,
//! so a row such a writer left behind is never returned.
//!
//! # Search
//!
//! 1. **Coarse**: every code of the query's model is scored against the
//!    query, reading vec0's chunk storage directly ([`read_chunks`]). The
//!    score is the dot product of the query (kept in floats) with the code;
//!    per byte of code a 256-entry table of partial dot products makes that
//!    one lookup a byte, and bytes where the query is zero are skipped.
//!    A sparse query (the `hash` embedder's: ~30 of 384 dimensions set) is
//!    scored with the 4-bit levels (~30 lookups a vector, 19 MB read for
//!    100k vectors); a dense one (neural embedders) with the sign bits (48
//!    lookups, 4.8 MB). Only the best candidates of the round are kept
//!    ([`BestKeys`]: at most twice as many entries), so a recall's memory
//!    does not grow with the number of stored vectors; a further round that
//!    needs more scans again.
//! 2. **Exact**: the best-scoring candidates of the query's model and size
//!    are reranked by cosine similarity of their stored f32 vectors (one
//!    `memory_embeddings` lookup each); then, best first and only as far as
//!    needed, their memories are checked against the filters (namespaces,
//!    tags, archived: the SQL filters of keyword search), so about `limit`
//!    memory rows are read rather than one per candidate; the best `limit`
//!    that pass are returned.
//!
//! The first round takes [`Code::candidates_first`] candidates: per hit 4
//! (levels) or 8 (sign bits), at least 500 or 1000 (so a model with that
//! many vectors or fewer is searched exhaustively and exactly), at most
//! [`VECTOR_CANDIDATES_FIRST_MAX`]. When the filters leave fewer than
//! `limit` of them and more vectors exist, each further round takes four
//! times as many, up to [`CANDIDATES_GROWTH_MAX`] times the first round (for
//! `limit` 10 with the levels: 8 000 candidates, ~20 ms at 100k memories
//! when a filter matches nothing). A filter that rejects all but fewer than
//! `limit` of that many best-scoring vectors returns fewer hits than asked.
//!
//! Why not vec0's own KNN (`sign MATCH ? AND k = ?`): for bit vectors it
//! only offers the symmetric Hamming distance, which ranks by how many bits
//! a stored vector has set when the query is sparse (0.10 recall@10 against
//! brute force on the workload with the `hash` embedder, where these codes
//! reach 0.98), and sqlite-vec 0.1.9 selects the top k with one linear pass
//! per result (O(rows x k): 130 ms for k = 1000 over 100k rows).

use std::collections::HashMap;

use mnemosyne_core::{Embedding, Error, Result, VectorHit, VectorQuery};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Sqlite, SqliteConn};
use crate::rows::{self, SqlValue};
use crate::sql::{SameModel, VectorIndex, conn::read_transaction, memories};

fn db(error: rusqlite::Error) -> Error {
    super::conn::db(error).into()
}

impl VectorIndex for Sqlite {
    type Conn = SqliteConn;

    fn store(
        conn: &mut SqliteConn,
        id: &str,
        embedding: &Embedding,
        same_model: SameModel,
    ) -> Result<bool> {
        store_vector(conn.raw(), id, embedding, same_model)
    }

    fn unindex(conn: &mut SqliteConn, id: &str) -> Result<()> {
        let indexed: Option<(i64, i64)> = conn
            .raw()
            .prepare_cached(
                "SELECT e.memory_seq, e.dims FROM memories m \
                 JOIN memory_embeddings e ON e.memory_seq = m.seq WHERE m.id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(db)?;
        match indexed {
            Some((seq, dims)) => unindex(conn.raw(), seq, usize::try_from(dims).unwrap_or(0)),
            None => Ok(()),
        }
    }

    fn search(conn: &mut SqliteConn, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        // One read transaction: the candidates and the rows loaded after them
        // come from the same snapshot.
        read_transaction(conn, |conn| {
            let ranked = nearest(conn.raw(), query)?;
            memories::vector_hits(conn, ranked)
        })
    }
}

/// Most candidates of the first round.
pub const VECTOR_CANDIDATES_FIRST_MAX: u32 = 8_000;

/// When filters leave fewer than `limit` candidates, each further round
/// takes four times as many, up to this many times the first round.
pub const CANDIDATES_GROWTH_MAX: usize = 16;

/// Largest level of the 4-bit code: a dimension is coded as an integer in
/// `-LEVEL_MAX..=LEVEL_MAX`.
const LEVEL_MAX: f32 = 7.0;

/// Step of the 4-bit code, relative to the vector's root mean square
/// component, so the levels span +-2.8 rms.
const LEVEL_STEP_RMS: f32 = 0.4;

/// Longest bit vector sqlite-vec stores (`SQLITE_VEC_VEC0_MAX_DIMENSIONS`):
/// the sign bits cover the first 8192 dimensions, the levels the first
/// 2048 (the exact rerank always uses every dimension).
const INDEX_BITS_MAX: usize = 8_192;

/// Bound of a coarse score's magnitude (well inside `i32`).
const TABLE_SUM_MAX: f32 = 1.0e9;

/// A query scored with the levels when it is non-zero in at most this
/// fraction (1 / n) of their bytes.
const SPARSE_FRACTION: usize = 4;

/// One of the two codes of each vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    /// Bit `i` (bit `i % 8` of byte `i / 8`) set when dimension `i` is positive.
    Sign,
    /// Dimension `i` as the level `round(x / (LEVEL_STEP_RMS * rms))`
    /// clamped to +-[`LEVEL_MAX`], a two's complement nibble: the low
    /// nibble of byte `i / 2` for even `i`, the high one for odd `i`.
    Levels,
}

impl Code {
    /// Dimensions per byte.
    fn per_byte(self) -> usize {
        match self {
            Self::Sign => 8,
            Self::Levels => 2,
        }
    }

    /// Dimensions coded of a `dims`-dimensional vector.
    fn coded_dims(self, dims: usize) -> usize {
        dims.min(INDEX_BITS_MAX / (8 / self.per_byte()))
    }

    /// Bytes of code of a `dims`-dimensional vector (padding bits are zero).
    fn width(self, dims: usize) -> usize {
        self.coded_dims(dims).div_ceil(self.per_byte())
    }

    /// vec0's shadow table holding this column's chunks.
    fn chunk_table(self, table: &str) -> String {
        match self {
            Self::Sign => format!("{table}_vector_chunks00"),
            Self::Levels => format!("{table}_vector_chunks01"),
        }
    }

    /// Candidates of the first round for `limit` hits.
    fn candidates_first(self, limit: u32) -> usize {
        let (per_hit, least) = match self {
            Self::Sign => (8, 1_000),
            Self::Levels => (4, 500),
        };
        limit
            .saturating_mul(per_hit)
            .clamp(least, VECTOR_CANDIDATES_FIRST_MAX) as usize
    }

    /// The code of `vector`.
    fn encode(self, vector: &[f32]) -> Vec<u8> {
        let dims = vector.len();
        let mut out = vec![0u8; self.width(dims)];
        let coded = &vector[..self.coded_dims(dims)];
        match self {
            Self::Sign => {
                for (i, x) in coded.iter().enumerate() {
                    if *x > 0.0 {
                        out[i / 8] |= 1 << (i % 8);
                    }
                }
            }
            Self::Levels => {
                let squares: f32 = vector.iter().map(|x| x * x).sum();
                let rms = (squares / dims.max(1) as f32).sqrt();
                if rms == 0.0 || !rms.is_finite() {
                    return out;
                }
                let step = LEVEL_STEP_RMS * rms;
                for (i, x) in coded.iter().enumerate() {
                    let level = (x / step).round().clamp(-LEVEL_MAX, LEVEL_MAX) as i8;
                    out[i / 2] |= ((level as u8) & 0x0f) << (4 * (i % 2));
                }
            }
        }
        out
    }

    /// The value byte `value` of this code stands for in dimension `bit`
    /// (0-based within the byte).
    fn value(self, value: u8, within: usize) -> f32 {
        match self {
            Self::Sign => f32::from((value >> within) & 1),
            Self::Levels => level((value >> (4 * within)) & 0x0f),
        }
    }

    /// Largest value a dimension's code stands for.
    fn value_max(self) -> f32 {
        match self {
            Self::Sign => 1.0,
            Self::Levels => LEVEL_MAX,
        }
    }

    /// The coarse score of a code is its dot product with the query: per
    /// byte of code where the query is not zero, the byte's position and
    /// the partial dot product for each of the 256 byte values, in integers
    /// (summed with one-cycle adds that need no ordering; scaled so that no
    /// sum can overflow).
    fn tables(self, query: &[f32]) -> Vec<(usize, [i32; 256])> {
        let per_byte = self.per_byte();
        let coded = &query[..self.coded_dims(query.len())];
        let total: f32 = coded.iter().map(|q| q.abs() * self.value_max()).sum();
        let scale = if total > 0.0 && total.is_finite() {
            TABLE_SUM_MAX / total
        } else {
            0.0
        };
        coded
            .chunks(per_byte)
            .enumerate()
            .filter(|(_, part)| part.iter().any(|x| *x != 0.0))
            .map(|(byte, part)| {
                let mut table = [0i32; 256];
                for (value, entry) in table.iter_mut().enumerate() {
                    let dot: f32 = part
                        .iter()
                        .enumerate()
                        .map(|(within, q)| q * self.value(value as u8, within))
                        .sum();
                    *entry = (dot * scale).round() as i32;
                }
                (byte, table)
            })
            .collect()
    }
}

/// The level a 4-bit two's complement nibble codes.
fn level(nibble: u8) -> f32 {
    f32::from(((nibble << 4) as i8) >> 4)
}

/// Name of the vec0 table for vectors of `dims` dimensions.
fn table_name(dims: usize) -> String {
    format!("memory_vectors_{dims}")
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")
        .and_then(|mut stmt| stmt.exists([name]))
        .map_err(db)
}

/// Creates the vec0 table for `dims` unless it exists (inside the caller's transaction).
fn ensure_table(conn: &Connection, dims: usize) -> Result<String> {
    let name = table_name(dims);
    if !table_exists(conn, &name)? {
        conn.execute_batch(&format!(
            "CREATE VIRTUAL TABLE {name} USING vec0 \
             (model_id TEXT PARTITION KEY, sign BIT[{}], levels BIT[{}])",
            Code::Sign.width(dims) * 8,
            Code::Levels.width(dims) * 8,
        ))
        .map_err(|e| Error::Storage(format!("cannot create the vector index {name}: {e}")))?;
    }
    Ok(name)
}

/// Removes the index row `seq` of a `dims`-dimensional vector, if any.
fn unindex(conn: &Connection, seq: i64, dims: usize) -> Result<()> {
    let name = table_name(dims);
    if table_exists(conn, &name)? {
        conn.prepare_cached(&format!("DELETE FROM {name} WHERE rowid = ?1"))
            .and_then(|mut stmt| stmt.execute([seq]))
            .map_err(db)?;
    }
    Ok(())
}

/// The vector stored for a memory: its size and model.
struct Stored {
    dims: usize,
    model_id: String,
}

/// Seq of the memory `id` and its stored vector, if any.
fn current_vector(conn: &Connection, id: &str) -> Result<Option<(i64, Option<Stored>)>> {
    let row = conn
        .prepare_cached(
            "SELECT m.seq, e.dims, e.model_id FROM memories m \
             LEFT JOIN memory_embeddings e ON e.memory_seq = m.seq WHERE m.id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(db)?;
    Ok(row.map(|(seq, dims, model_id)| {
        let stored = dims.zip(model_id).map(|(dims, model_id)| Stored {
            dims: usize::try_from(dims).unwrap_or(0),
            model_id,
        });
        (seq, stored)
    }))
}

/// Stores (or replaces) the vector of memory `id` and its index row, inside
/// the caller's transaction; `Ok(false)` when the memory does not exist, or
/// when it has a vector of this model and `same_model` keeps it.
fn store_vector(
    conn: &Connection,
    id: &str,
    embedding: &Embedding,
    same_model: SameModel,
) -> Result<bool> {
    let dims = embedding.dims();
    let Some((seq, stored)) = current_vector(conn, id)? else {
        return Ok(false);
    };
    if same_model == SameModel::Keep
        && stored
            .as_ref()
            .is_some_and(|s| s.model_id == embedding.model_id)
    {
        return Ok(false);
    }
    let old_dims = stored.map(|s| s.dims);
    conn.prepare_cached(rows::UPSERT_EMBEDDING)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                embedding.model_id,
                dims as i64,
                rows::vector_to_blob(&embedding.vector)
            ])
        })
        .map_err(db)?;
    if let Some(old_dims) = old_dims {
        unindex(conn, seq, old_dims)?;
    }
    if old_dims != Some(dims) {
        // A row a writer without sqlite-vec left behind for a deleted memory
        // whose seq SQLite has since reused.
        unindex(conn, seq, dims)?;
    }
    let name = ensure_table(conn, dims)?;
    conn.prepare_cached(&format!(
        "INSERT INTO {name} (rowid, model_id, sign, levels) VALUES (?1, ?2, vec_bit(?3), vec_bit(?4))"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            seq,
            embedding.model_id,
            Code::Sign.encode(&embedding.vector),
            Code::Levels.encode(&embedding.vector),
        ])
    })
    .map_err(db)?;
    Ok(true)
}

/// Size of the query model's vectors: `None` when it has none, else the
/// query's own size when the model has vectors of it, else one it has.
fn model_dims(conn: &Connection, model_id: &str, dims: usize) -> Result<Option<usize>> {
    let any: Option<i64> = conn
        .prepare_cached("SELECT dims FROM memory_embeddings WHERE model_id = ?1 LIMIT 1")
        .and_then(|mut stmt| stmt.query_row([model_id], |row| row.get(0)).optional())
        .map_err(db)?;
    let Some(any) = any else { return Ok(None) };
    let any = usize::try_from(any).unwrap_or(0);
    if any == dims {
        return Ok(Some(dims));
    }
    // Unusual: the model has vectors of several sizes.
    let has_query_size: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM memory_embeddings WHERE model_id = ?1 AND dims = ?2)",
        )
        .and_then(|mut stmt| stmt.query_row(params![model_id, dims as i64], |row| row.get(0)))
        .map_err(db)?;
    Ok(Some(if has_query_size { dims } else { any }))
}

/// The coarse ranking of one query: the best `ranked.len()` of the model's
/// `total` vectors, best first. Only the best are kept, so a recall holds
/// memory for its candidates, not for every stored vector.
struct Coarse {
    /// `(key, seq)` ascending: ascending key = descending score.
    ranked: Vec<(u32, i64)>,
    total: usize,
}

/// The `keep` lowest of a stream of `(key, seq)`, in O(keep) memory: the
/// buffer is cut back to the best `keep` whenever it holds twice as many,
/// and an item worse than the worst kept after a cut is not pushed.
struct BestKeys {
    keep: usize,
    items: Vec<(u32, i64)>,
    worst_kept: Option<(u32, i64)>,
    seen: usize,
}

impl BestKeys {
    fn new(keep: usize) -> Self {
        let keep = keep.max(1);
        Self {
            keep,
            items: Vec::with_capacity(keep.saturating_mul(2).min(1 << 16)),
            worst_kept: None,
            seen: 0,
        }
    }

    fn push(&mut self, item: (u32, i64)) {
        self.seen += 1;
        if self.worst_kept.is_some_and(|worst| item > worst) {
            return;
        }
        self.items.push(item);
        if self.items.len() >= self.keep.saturating_mul(2) {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.items.len() > self.keep {
            self.items.select_nth_unstable(self.keep - 1);
            self.items.truncate(self.keep);
        }
        self.worst_kept = self.items.iter().max().copied();
    }

    fn finish(mut self) -> Coarse {
        self.cut();
        self.items.sort_unstable();
        Coarse {
            ranked: self.items,
            total: self.seen,
        }
    }
}

/// Maps a score to a key that sorts ascending when scores sort descending.
fn descending_key(score: i32) -> u32 {
    !((score as u32) ^ 0x8000_0000)
}

/// Visits `(rowid, code)` of every live row of the model's partition,
/// reading vec0's flat chunk storage directly (`{table}_chunks`: validity
/// bitmap and rowids of each chunk's slots; `{table}_vector_chunksNN`: the
/// slots' packed codes of column NN), the layout of sqlite-vec 0.1.x.
/// `Ok(false)` when the storage does not have that layout.
fn read_chunks(
    conn: &Connection,
    table: &str,
    model_id: &str,
    code: Code,
    dims: usize,
    mut visit: impl FnMut(i64, &[u8]),
) -> Result<bool> {
    let sql = format!(
        "SELECT c.validity, c.rowids, v.vectors FROM \"{table}_chunks\" c \
         CROSS JOIN \"{}\" v ON v.rowid = c.chunk_id WHERE c.partition00 = ?1",
        code.chunk_table(table)
    );
    let Ok(mut stmt) = conn.prepare_cached(&sql) else {
        return Ok(false);
    };
    let width = code.width(dims);
    let mut rows = stmt.query([model_id]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let blob = |i: usize| -> Result<&[u8]> {
            row.get_ref(i)
                .map_err(db)?
                .as_blob()
                .map_err(|e| Error::Storage(format!("corrupt vector index {table}: {e}")))
        };
        let (validity, rowids, codes) = (blob(0)?, blob(1)?, blob(2)?);
        let slots = (validity.len() * 8)
            .min(rowids.len() / 8)
            .min(codes.len() / width);
        for slot in 0..slots {
            if (validity[slot / 8] >> (slot % 8)) & 1 == 0 {
                continue;
            }
            let mut rowid = [0u8; 8];
            rowid.copy_from_slice(&rowids[slot * 8..slot * 8 + 8]);
            visit(
                i64::from_ne_bytes(rowid),
                &codes[slot * width..(slot + 1) * width],
            );
        }
    }
    Ok(true)
}

/// The code a query is scored with, and its tables.
fn plan(query: &[f32]) -> (Code, Vec<(usize, [i32; 256])>) {
    let coded = &query[..Code::Levels.coded_dims(query.len())];
    let touched = coded
        .chunks(Code::Levels.per_byte())
        .filter(|part| part.iter().any(|x| *x != 0.0))
        .count();
    let code = if touched * SPARSE_FRACTION <= Code::Levels.width(query.len()) {
        Code::Levels
    } else {
        Code::Sign
    };
    (code, code.tables(query))
}

/// Scores every vector of the model against the query and keeps the best
/// `keep`; `Ok(None)` when the vec0 storage is not laid out as expected.
fn scan_chunks(conn: &Connection, scan: &Scan<'_>, keep: usize) -> Result<Option<Coarse>> {
    let mut best = BestKeys::new(keep);
    let known = read_chunks(
        conn,
        scan.table,
        scan.model_id,
        scan.code,
        scan.dims,
        |rowid, bytes| {
            let mut score = 0i32;
            for (at, table) in &scan.tables {
                score += table[usize::from(bytes[*at])];
            }
            best.push((descending_key(score), rowid));
        },
    )?;
    Ok(known.then(|| best.finish()))
}

/// What a coarse scan reads and scores with.
struct Scan<'a> {
    table: &'a str,
    model_id: &'a str,
    code: Code,
    tables: Vec<(usize, [i32; 256])>,
    dims: usize,
}

/// Every vector of the model, unranked: the exact fallback when the vec0
/// storage is missing or not laid out as [`read_chunks`] expects.
fn every_vector(conn: &Connection, model_id: &str, dims: usize) -> Result<Coarse> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT memory_seq FROM memory_embeddings WHERE model_id = ?1 AND dims = ?2",
        )
        .map_err(db)?;
    let ranked: Vec<(u32, i64)> = stmt
        .query_map(params![model_id, dims as i64], |row| Ok((0, row.get(0)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(Coarse {
        total: ranked.len(),
        ranked,
    })
}

/// SQL of the exact vectors of the candidates (`?1`, a JSON array of
/// seqs) made by the query's model (`?2`) with its size (`?3`): rows `(seq, vector)`.
const EXACT_SQL: &str = "SELECT j.value, e.vector FROM json_each(?1) j \
     CROSS JOIN memory_embeddings e ON e.memory_seq = j.value \
     WHERE e.model_id = ?2 AND e.dims = ?3";

/// SQL keeping the seqs (`?1`, a JSON array) of memories that exist and
/// pass the query's filters: rows `seq`.
fn filter_sql(query: &VectorQuery) -> (String, Vec<SqlValue>) {
    let mut params: Vec<SqlValue> = vec![SqlValue::Null];
    let mut sql = String::from(
        "SELECT m.seq FROM json_each(?1) j CROSS JOIN memories m ON m.seq = j.value WHERE 1 = 1",
    );
    rows::push_filters(
        &mut sql,
        &mut params,
        &query.namespaces,
        &query.tags,
        query.include_archived,
        query.min_importance,
    );
    (sql, params)
}

/// `[seq,seq,...]` for `json_each`; in seq order the row lookups walk each
/// b-tree forwards.
fn seqs_json(seqs: impl Iterator<Item = i64>) -> String {
    let mut seqs: Vec<i64> = seqs.collect();
    seqs.sort_unstable();
    let mut json = String::with_capacity(seqs.len() * 8 + 2);
    json.push('[');
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&seq.to_string());
    }
    json.push(']');
    json
}

/// Scores the candidates by exact cosine similarity (filters not applied).
fn rerank(
    conn: &Connection,
    candidates: &[(u32, i64)],
    query: &VectorQuery,
    scored: &mut Vec<(i64, f64)>,
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(EXACT_SQL).map_err(db)?;
    let json = seqs_json(candidates.iter().map(|(_, seq)| *seq));
    let dims = query.vector.len();
    let mut rows = stmt
        .query(params![json, query.model_id, dims as i64])
        .map_err(db)?;
    let mut vector: Vec<f32> = Vec::with_capacity(dims);
    while let Some(row) = rows.next().map_err(db)? {
        let seq: i64 = row.get(0).map_err(db)?;
        let blob = row
            .get_ref(1)
            .map_err(db)?
            .as_blob()
            .map_err(|e| Error::Storage(format!("corrupt vector of row {seq}: {e}")))?;
        if blob.len() != dims * 4 {
            continue;
        }
        vector.clear();
        vector.extend(
            blob.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        scored.push((seq, rows::cosine(&query.vector, &vector)));
    }
    Ok(())
}

/// The best `limit` of the scored candidates (best first) whose memories
/// pass the filters. Filters are checked best first, only as far as
/// needed: about `limit` memory rows read, not one per candidate.
/// `checked` remembers verdicts across rounds.
fn best_passing(
    conn: &Connection,
    (sql, params): &mut (String, Vec<SqlValue>),
    scored: &mut [(i64, f64)],
    limit: usize,
    checked: &mut HashMap<i64, bool>,
) -> Result<Vec<(i64, f64)>> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    loop {
        let mut best = Vec::with_capacity(limit);
        let mut unknown = Vec::new();
        for &(seq, similarity) in scored.iter() {
            match checked.get(&seq) {
                Some(true) if unknown.is_empty() => best.push((seq, similarity)),
                Some(_) => {}
                None => unknown.push(seq),
            }
            if best.len() + unknown.len() >= limit {
                break;
            }
        }
        if unknown.is_empty() {
            return Ok(best);
        }
        params[0] = SqlValue::Text(seqs_json(unknown.iter().copied()));
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let passing = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |row| {
                row.get::<_, i64>(0)
            })
            .map_err(db)?
            .collect::<rusqlite::Result<std::collections::HashSet<i64>>>()
            .map_err(db)?;
        for seq in unknown {
            checked.insert(seq, passing.contains(&seq));
        }
    }
}

/// The best `query.limit` `(seq, similarity)` of the query's model that
/// pass its filters, best first. Runs inside the caller's read transaction.
fn nearest(tx: &Connection, query: &VectorQuery) -> Result<Vec<(i64, f64)>> {
    let dims = query.vector.len();
    match model_dims(tx, &query.model_id, dims)? {
        None => return Ok(Vec::new()),
        Some(stored) if stored != dims => {
            return Err(Error::invalid(format!(
                "query vector has {dims} dimensions, the model's vectors have {stored}"
            )));
        }
        Some(_) => {}
    }
    let table = table_name(dims);
    let (code, tables) = plan(&query.vector);
    let scan = Scan {
        table: &table,
        model_id: &query.model_id,
        code,
        tables,
        dims,
    };
    let mut first = code.candidates_first(query.limit);
    let scanned = if table_exists(tx, &table)? {
        scan_chunks(tx, &scan, first)?
    } else {
        None
    };
    let mut coarse = match scanned {
        Some(coarse) => coarse,
        None => {
            tracing::warn!(
                table,
                "vector index missing or not laid out as sqlite-vec 0.1 does: \
                 comparing every vector of the model"
            );
            let every = every_vector(tx, &query.model_id, dims)?;
            first = every.total.max(1);
            every
        }
    };
    let limit = query.limit as usize;
    let most = first.saturating_mul(CANDIDATES_GROWTH_MAX);
    let mut filter = filter_sql(query);
    let mut scored: Vec<(i64, f64)> = Vec::new();
    let mut checked: HashMap<i64, bool> = HashMap::new();
    let (mut taken, mut round) = (0, first);
    let best = loop {
        if round > coarse.ranked.len() && coarse.ranked.len() < coarse.total {
            // A further round wants more than the scan kept: scan again
            // (same snapshot, so the ones taken come first again).
            if let Some(wider) = scan_chunks(tx, &scan, round)? {
                coarse = wider;
            }
        }
        let end = round.min(coarse.ranked.len());
        let candidates = &coarse.ranked[taken.min(end)..end];
        rerank(tx, candidates, query, &mut scored)?;
        taken = end;
        let best = best_passing(tx, &mut filter, &mut scored, limit, &mut checked)?;
        if best.len() >= limit || taken >= coarse.total || round >= most {
            break best;
        }
        round = round.saturating_mul(4).min(most);
    };
    Ok(best)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mnemosyne_core::{Limits, MemoryId, MemoryPatch, MemoryStorage, NewMemory, StorageAdmin};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::{Location, SqliteStorage};

    fn levels_of(code: &[u8]) -> Vec<f32> {
        code.iter()
            .flat_map(|b| [level(b & 0x0f), level(b >> 4)])
            .collect()
    }

    #[test]
    fn sign_bits_pad_to_whole_bytes() {
        assert_eq!(Code::Sign.encode(&[1.0, -1.0, 0.5]), [0b101]);
        assert_eq!(Code::Sign.encode(&[0.1; 16]), [0xff, 0xff]);
        assert_eq!(Code::Sign.encode(&[1.0; 10_000]).len(), INDEX_BITS_MAX / 8);
        assert_eq!(Code::Sign.width(2), 1);
    }

    #[test]
    fn levels_are_nibbles_of_rms_steps() {
        // rms 0.82, step 0.33.
        let code = Code::Levels.encode(&[1.0, -1.0, 1.0, -1.0, 0.0, 0.2]);
        assert_eq!(levels_of(&code), [3.0, -3.0, 3.0, -3.0, 0.0, 1.0]);
        // Outliers clamp to +-7 (rms 2.5, step 1).
        let mut outlier = [0.0; 16];
        outlier[0] = 10.0;
        assert_eq!(levels_of(&Code::Levels.encode(&outlier))[0], 7.0);
        assert_eq!(
            Code::Levels.encode(&[1.0, 1.0, 1.0])[1] >> 4,
            0,
            "odd length pads"
        );
        assert_eq!(Code::Levels.encode(&[0.0; 4]), [0, 0]);
        assert_eq!(
            Code::Levels.encode(&[1.0; 10_000]).len(),
            INDEX_BITS_MAX / 8
        );
        assert_eq!(Code::Levels.width(385), 193);
        for nibble in 0..16u8 {
            let expected = if nibble < 8 {
                nibble as f32
            } else {
                nibble as f32 - 16.0
            };
            assert_eq!(level(nibble), expected);
        }
    }

    #[test]
    fn tables_dot_the_query_with_the_code_and_skip_zero_bytes() {
        let query = [0.5, -1.0, 0.0, 0.0, 2.0];
        let tables = Code::Levels.tables(&query);
        let positions: Vec<usize> = tables.iter().map(|(at, _)| *at).collect();
        assert_eq!(positions, [0, 2], "the query is zero over byte 1");
        // Scale: 1e9 / (7 * 3.5).
        let unit = 1.0e9 / 24.5;
        let close =
            |got: i32, want: f64| (f64::from(got) - want * unit).abs() <= 1e-6 * want.abs() * unit;
        // Byte 0 = levels (2, -3): 0.5 * 2 + -1 * -3.
        assert!(close(tables[0].1[0xd2], 4.0));
        // Byte 2: only its low nibble is inside the query.
        assert!(close(tables[1].1[0x71], 2.0));
        let tables = Code::Sign.tables(&[0.5, -1.0, 2.0, 0.25, 0.0, 0.0, 0.0, 0.0, 3.0]);
        let unit = 1.0e9 / 6.75;
        let close =
            |got: i32, want: f64| (f64::from(got) - want * unit).abs() <= 1e-6 * want.abs() * unit;
        assert!(close(tables[0].1[0b0000_0101], 2.5));
        assert!(close(tables[0].1[0b0000_1111], 1.75));
        assert!(close(tables[1].1[1], 3.0));
        // No sum of one entry per table can overflow.
        let most: i64 = tables
            .iter()
            .map(|(_, t)| i64::from(*t.iter().max().unwrap()))
            .sum();
        assert!(most < i64::from(i32::MAX) / 2);
    }

    #[test]
    fn sparse_queries_use_the_levels() {
        let mut sparse = vec![0.0; 384];
        for i in (0..384).step_by(16) {
            sparse[i] = 1.0;
        }
        assert_eq!(plan(&sparse).0, Code::Levels);
        assert_eq!(plan(&[0.3; 384]).0, Code::Sign);
    }

    #[test]
    fn candidates_scale_with_the_limit_within_bounds() {
        assert_eq!(Code::Sign.candidates_first(10), 1_000);
        assert_eq!(Code::Sign.candidates_first(200), 1_600);
        assert_eq!(Code::Levels.candidates_first(10), 500);
        assert_eq!(Code::Levels.candidates_first(200), 800);
        assert_eq!(Code::Sign.candidates_first(1_000), 8_000);
    }

    #[test]
    fn keys_order_scores_descending() {
        let scores = [3, 0, -2, i32::MIN, i32::MAX, -1, 7];
        let mut by_key = scores.to_vec();
        by_key.sort_by_key(|s| descending_key(*s));
        let mut by_score = scores.to_vec();
        by_score.sort_by(|a, b| b.cmp(a));
        assert_eq!(by_key, by_score);
    }

    #[test]
    fn best_keys_are_the_lowest_in_order_within_twice_keep() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let all: Vec<(u32, i64)> = (0..5_000).map(|i| (rng.random_range(0..50), i)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        for keep in [1, 7, 100, 4_999, 5_000, 6_000] {
            let mut best = BestKeys::new(keep);
            let mut buffer_max = 0;
            for item in &all {
                best.push(*item);
                buffer_max = buffer_max.max(best.items.len());
            }
            assert!(
                buffer_max < 2 * keep,
                "keep {keep}: buffer held {buffer_max}"
            );
            let coarse = best.finish();
            assert_eq!(coarse.total, 5_000);
            assert_eq!(coarse.ranked, sorted[..keep.min(5_000)], "keep {keep}");
        }
    }

    fn unit(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn embedding(model: &str, vector: Vec<f32>) -> Embedding {
        Embedding {
            model_id: model.into(),
            vector,
        }
    }

    type IndexRow = (String, i64, Vec<u8>, Vec<u8>);

    /// The index rows as vec0 itself returns them, sorted.
    fn vec0_rows(path: &Path, dims: usize) -> Vec<IndexRow> {
        let conn = Connection::open(path).unwrap();
        let table = table_name(dims);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT model_id, rowid, sign, levels FROM {table}"
            ))
            .unwrap();
        let mut rows: Vec<IndexRow> = stmt
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows.sort();
        rows
    }

    /// The same rows through [`read_chunks`].
    fn chunk_rows(path: &Path, dims: usize, models: &[&str]) -> Vec<IndexRow> {
        let conn = Connection::open(path).unwrap();
        let mut rows = Vec::new();
        for model in models {
            let mut sign = HashMap::new();
            let mut levels = HashMap::new();
            for (code, into) in [(Code::Sign, &mut sign), (Code::Levels, &mut levels)] {
                let known = read_chunks(
                    &conn,
                    &table_name(dims),
                    model,
                    code,
                    dims,
                    |rowid, bytes| {
                        into.insert(rowid, bytes.to_vec());
                    },
                )
                .unwrap();
                assert!(
                    known,
                    "sqlite-vec's chunk layout changed: read_chunks must follow it"
                );
            }
            for (rowid, sign) in sign {
                rows.push((
                    (*model).to_owned(),
                    rowid,
                    sign,
                    levels.remove(&rowid).unwrap(),
                ));
            }
            assert!(levels.is_empty());
        }
        rows.sort();
        rows
    }

    /// Index rows follow inserts, updates, re-embeds with another model or
    /// size, and deletes; reading the chunks directly sees exactly what
    /// vec0 itself sees (this pins the storage layout read_chunks relies on).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_rows_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.db");
        let limits = Limits::default();
        let storage = SqliteStorage::open(&Location::File(path.clone()), &limits)
            .await
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut ids = Vec::new();
        for i in 0..2_100 {
            let memory = NewMemory::new(format!("memory {i}"))
                .into_memory(&limits, chrono::Utc::now())
                .unwrap();
            let model = if i % 3 == 0 { "b" } else { "a" };
            storage
                .insert_memory(&memory, Some(&embedding(model, unit(&mut rng, 13))))
                .await
                .unwrap();
            ids.push(memory.id);
        }
        let check = |expected: usize| {
            let rows = vec0_rows(&path, 13);
            assert_eq!(rows.len(), expected);
            assert_eq!(rows, chunk_rows(&path, 13, &["a", "b"]));
        };
        check(2_100);
        for id in &ids[..700] {
            storage.delete_memory(*id).await.unwrap();
        }
        check(1_400);
        let patch = MemoryPatch {
            content: Some("changed".into()),
            ..MemoryPatch::default()
        };
        let moved = embedding("b", unit(&mut rng, 13));
        storage
            .update_memory(ids[700], &patch, chrono::Utc::now(), Some(&moved))
            .await
            .unwrap();
        storage
            .set_embeddings(&[(ids[701], embedding("a", unit(&mut rng, 13)))])
            .await
            .unwrap();
        check(1_400);
        let row = vec0_rows(&path, 13)
            .into_iter()
            .find(|row| row.0 == "b" && row.3 == Code::Levels.encode(&moved.vector));
        assert!(row.is_some(), "the update re-indexed the new vector");
        storage
            .set_embeddings(&[(ids[702], embedding("wide", unit(&mut rng, 20)))])
            .await
            .unwrap();
        check(1_399);
        assert_eq!(vec0_rows(&path, 20).len(), 1);
        storage.delete_memory(ids[702]).await.unwrap();
        assert!(vec0_rows(&path, 20).is_empty());
        storage.close().await;
    }

    /// A memory deleted by a writer without sqlite-vec leaves its index row
    /// behind; it is never returned, and a memory that reuses its seq can
    /// still be indexed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_left_by_other_writers_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.db");
        let limits = Limits::default();
        let storage = SqliteStorage::open(&Location::File(path.clone()), &limits)
            .await
            .unwrap();
        let new = |text: &str| {
            NewMemory::new(text)
                .into_memory(&limits, chrono::Utc::now())
                .unwrap()
        };
        let query = |vector: Vec<f32>| VectorQuery {
            vector,
            model_id: "m".into(),
            namespaces: Vec::new(),
            tags: Vec::new(),
            limit: 10,
            include_archived: false,
            min_importance: None,
        };
        let kept = new("kept");
        storage
            .insert_memory(&kept, Some(&embedding("m", vec![1.0, 0.0, 0.0])))
            .await
            .unwrap();
        let gone = new("gone");
        storage
            .insert_memory(&gone, Some(&embedding("m", vec![0.0, 1.0, 0.0])))
            .await
            .unwrap();
        // Plain SQL, as the sqlite3 shell would: the vec0 row stays.
        Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM memories WHERE id = ?1", [gone.id.to_string()])
            .unwrap();
        assert_eq!(vec0_rows(&path, 3).len(), 2);
        let hits = storage
            .vector_search(&query(vec![0.0, 1.0, 0.0]))
            .await
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.memory.id).collect::<Vec<_>>(),
            [kept.id]
        );
        // The next memory takes the deleted one's seq.
        let reuse = new("reuses the seq");
        storage
            .insert_memory(&reuse, Some(&embedding("m", vec![0.0, 0.0, 1.0])))
            .await
            .unwrap();
        assert_eq!(vec0_rows(&path, 3).len(), 2);
        let hits = storage
            .vector_search(&query(vec![0.0, 0.0, 1.0]))
            .await
            .unwrap();
        assert_eq!(hits[0].memory.id, reuse.id);
        assert!((hits[0].similarity - 1.0).abs() < 1e-6);
        storage.close().await;
    }

    /// Dense and sparse queries over more vectors than one round takes:
    /// the coarse codes keep the true nearest neighbours among the candidates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_codes_find_the_nearest_beyond_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.db");
        let limits = Limits::default();
        let storage = SqliteStorage::open(&Location::File(path), &limits)
            .await
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let dims = 64;
        let mut stored = Vec::new();
        let mut batch = Vec::new();
        for i in 0..5_000 {
            let memory = NewMemory::new(format!("memory {i}"))
                .into_memory(&limits, chrono::Utc::now())
                .unwrap();
            let vector = unit(&mut rng, dims);
            batch.push(memory.clone());
            stored.push((memory.id, vector));
        }
        storage
            .insert_memories(&batch, mnemosyne_core::OnConflict::Fail)
            .await
            .unwrap();
        let items: Vec<(MemoryId, Embedding)> = stored
            .iter()
            .map(|(id, v)| (*id, embedding("m", v.clone())))
            .collect();
        assert_eq!(storage.set_embeddings(&items).await.unwrap(), 5_000);
        for sparse in [false, true] {
            let (mut found, mut wanted) = (0, 0);
            for _ in 0..20 {
                let mut query = unit(&mut rng, dims);
                if sparse {
                    for (i, x) in query.iter_mut().enumerate() {
                        if !i.is_multiple_of(8) {
                            *x = 0.0;
                        }
                    }
                }
                assert_eq!(plan(&query).0 == Code::Levels, sparse);
                let mut expected: Vec<(MemoryId, f64)> = stored
                    .iter()
                    .map(|(id, v)| (*id, rows::cosine(v, &query)))
                    .collect();
                expected.sort_by(|a, b| b.1.total_cmp(&a.1));
                let hits = storage
                    .vector_search(&VectorQuery {
                        vector: query,
                        model_id: "m".into(),
                        namespaces: Vec::new(),
                        tags: Vec::new(),
                        limit: 10,
                        include_archived: false,
                        min_importance: None,
                    })
                    .await
                    .unwrap();
                assert_eq!(hits.len(), 10);
                assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
                let want: Vec<MemoryId> = expected[..10].iter().map(|e| e.0).collect();
                found += hits.iter().filter(|h| want.contains(&h.memory.id)).count();
                wanted += 10;
            }
            let recall = found as f64 / wanted as f64;
            assert!(recall >= 0.9, "recall@10 {recall} (sparse: {sparse})");
        }
        storage.close().await;
    }
}
