//! Backend-neutral row shapes and SQL text shared by every backend.

use chrono::{DateTime, Utc};
use mnemosyne_core::{Error, Importance, Link, ListQuery, ListSort, Memory, MemoryId, Namespace};

/// Columns of a memory row, in the order [`MemoryRow`] reads them. The
/// access count is cast: an older build could leave a REAL there (see
/// [`RECORD_ACCESS`]), which would make the memory unreadable. Content and
/// summary are read as BLOBs: libsql's local driver reads TEXT through a
/// NUL-terminated C string, which would cut a text at its first NUL byte;
/// a BLOB comes back whole (and is checked to be UTF-8).
pub const MEMORY_COLUMNS: &str = "m.id, m.namespace, CAST(m.content AS BLOB), \
     CAST(m.summary AS BLOB), m.memory_type, m.importance, m.tags, m.created_at_ms, \
     m.updated_at_ms, m.accessed_at_ms, CAST(m.access_count AS INTEGER), m.archived";

/// Number of columns in [`MEMORY_COLUMNS`].
pub const MEMORY_COLUMN_COUNT: usize = 12;

/// Inserts a memory row; parameters in the order of [`memory_params`].
pub const INSERT_MEMORY: &str = "INSERT INTO memories (id, namespace, content, summary, memory_type, \
     importance, tags, created_at_ms, updated_at_ms, accessed_at_ms, access_count, archived) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Same as [`INSERT_MEMORY`] but an existing id is left alone (changes() = 0).
pub const INSERT_MEMORY_OR_IGNORE: &str = "INSERT OR IGNORE INTO memories (id, namespace, content, summary, memory_type, \
     importance, tags, created_at_ms, updated_at_ms, accessed_at_ms, access_count, archived) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Adds one tag row to the memory with id `?2`.
pub const INSERT_TAG: &str = "INSERT OR IGNORE INTO memory_tags (tag, memory_seq) SELECT ?1, seq FROM memories WHERE id = ?2";

/// Removes every tag of the memory with id `?1`.
pub const DELETE_TAGS: &str =
    "DELETE FROM memory_tags WHERE memory_seq = (SELECT seq FROM memories WHERE id = ?1)";

/// Adds a link `(source, target, type, created_at_ms)` if both ends exist; changes() says whether it did.
pub const INSERT_LINK: &str = "INSERT OR IGNORE INTO memory_links (source_id, target_id, link_type, created_at_ms) \
     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM memories WHERE id = ?1) \
     AND EXISTS (SELECT 1 FROM memories WHERE id = ?2)";

/// `(outgoing links of ?1, 1 if the link ?1 -> ?2 of type ?3 exists)`.
pub const LINK_STATE: &str = "SELECT (SELECT count(*) FROM memory_links WHERE source_id = ?1), \
     EXISTS (SELECT 1 FROM memory_links WHERE source_id = ?1 AND target_id = ?2 AND link_type = ?3)";

/// 1 when a memory with id `?1` exists.
pub const MEMORY_EXISTS: &str = "SELECT 1 FROM memories WHERE id = ?1";

/// The ids of the JSON array `?1` that name stored memories.
pub const STORED_AMONG: &str =
    "SELECT m.id FROM json_each(?1) j CROSS JOIN memories m ON m.id = j.value";

/// One memory by id.
pub fn select_memory_by_id() -> String {
    format!("SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.id = ?1")
}

/// Outgoing links of the memory with id `?1`.
pub const SELECT_LINKS: &str = "SELECT target_id, link_type FROM memory_links WHERE source_id = ?1 ORDER BY target_id, link_type";

/// Bumps the access counter of `?1` (up to the largest integer SQLite
/// stores: one more would turn the column into a REAL) and sets its access
/// time to `?2`.
pub const RECORD_ACCESS: &str = "UPDATE memories SET access_count = access_count + \
     (access_count < 9223372036854775807), accessed_at_ms = ?2 WHERE id = ?1";

/// Rewrites every mutable column of `?1`; parameters in the order of [`memory_params`].
pub const UPDATE_MEMORY: &str = "UPDATE memories SET namespace = ?2, content = ?3, summary = ?4, memory_type = ?5, \
     importance = ?6, tags = ?7, updated_at_ms = ?9, archived = ?12 WHERE id = ?1";

/// Deletes the memory `?1` (tags, links and index entries follow by cascade and trigger).
pub const DELETE_MEMORY: &str = "DELETE FROM memories WHERE id = ?1";

/// A parameter value, converted by each backend to its own type.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// INTEGER.
    Int(i64),
    /// TEXT.
    Text(String),
    /// REAL.
    Real(f64),
    /// BLOB.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        value.map_or(Self::Null, Self::Text)
    }
}

/// Milliseconds since the Unix epoch.
pub fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(ms: i64, column: &str, id: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| corrupt(id, &format!("{column} {ms} is not a valid time")))
}

fn corrupt(id: &str, what: &str) -> Error {
    Error::Storage(format!("corrupt row for memory {id}: {what}"))
}

/// Tags as stored in the `tags` column: space-separated (tags hold no whitespace).
pub fn tags_text(tags: &[String]) -> String {
    tags.join(" ")
}

/// The twelve parameters of [`INSERT_MEMORY`] and [`UPDATE_MEMORY`].
pub fn memory_params(memory: &Memory) -> Vec<SqlValue> {
    vec![
        memory.id.to_string().into(),
        memory.namespace.to_string().into(),
        memory.content.clone().into(),
        memory.summary.clone().into(),
        memory.memory_type.as_str().into(),
        i64::from(memory.importance.get()).into(),
        tags_text(&memory.tags).into(),
        to_ms(memory.created_at).into(),
        to_ms(memory.updated_at).into(),
        to_ms(memory.accessed_at).into(),
        i64::try_from(memory.access_count)
            .unwrap_or(i64::MAX)
            .into(),
        i64::from(memory.archived).into(),
    ]
}

/// A memory row as read from any backend, before decoding.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    /// `id`.
    pub id: String,
    /// `namespace`.
    pub namespace: String,
    /// `content`.
    pub content: String,
    /// `summary`.
    pub summary: Option<String>,
    /// `memory_type`.
    pub memory_type: String,
    /// `importance`.
    pub importance: i64,
    /// `tags`.
    pub tags: String,
    /// `created_at_ms`.
    pub created_at_ms: i64,
    /// `updated_at_ms`.
    pub updated_at_ms: i64,
    /// `accessed_at_ms`.
    pub accessed_at_ms: i64,
    /// `access_count`.
    pub access_count: i64,
    /// `archived`.
    pub archived: i64,
}

impl MemoryRow {
    /// The domain memory; a row that breaks the schema's rules is a clear storage error.
    pub fn into_memory(self, links: Vec<Link>) -> Result<Memory, Error> {
        let id: MemoryId = self.id.parse().map_err(|_| corrupt(&self.id, "bad id"))?;
        let namespace: Namespace = self
            .namespace
            .parse()
            .map_err(|e: Error| corrupt(&self.id, &e.to_string()))?;
        let memory_type = self
            .memory_type
            .parse()
            .map_err(|e: Error| corrupt(&self.id, &e.to_string()))?;
        let importance =
            Importance::try_from(self.importance).map_err(|e| corrupt(&self.id, &e.to_string()))?;
        Ok(Memory {
            created_at: from_ms(self.created_at_ms, "created_at_ms", &self.id)?,
            updated_at: from_ms(self.updated_at_ms, "updated_at_ms", &self.id)?,
            accessed_at: from_ms(self.accessed_at_ms, "accessed_at_ms", &self.id)?,
            id,
            namespace,
            content: self.content,
            summary: self.summary,
            memory_type,
            importance,
            tags: self.tags.split_whitespace().map(str::to_owned).collect(),
            links,
            access_count: u64::try_from(self.access_count).unwrap_or(0),
            archived: self.archived != 0,
        })
    }
}

/// Decodes one link row `(target_id, link_type)`.
pub fn decode_link(target_id: &str, link_type: &str) -> Result<Link, Error> {
    Ok(Link {
        target: target_id
            .parse()
            .map_err(|_| Error::Storage(format!("corrupt link to {target_id:?}")))?,
        link_type: link_type
            .parse()
            .map_err(|e: Error| Error::Storage(format!("corrupt link: {e}")))?,
    })
}

/// Appends the archived, importance, namespace and tag filters on alias `m`.
pub fn push_filters(
    sql: &mut String,
    params: &mut Vec<SqlValue>,
    namespaces: &[Namespace],
    tags: &[String],
    include_archived: bool,
    min_importance: Option<Importance>,
) {
    if !include_archived {
        sql.push_str(" AND m.archived = 0");
    }
    if let Some(min) = min_importance {
        params.push(i64::from(min.get()).into());
        sql.push_str(&format!(" AND m.importance >= ?{}", params.len()));
    }
    if !namespaces.is_empty() {
        sql.push_str(" AND m.namespace IN (");
        for (i, namespace) in namespaces.iter().enumerate() {
            params.push(namespace.to_string().into());
            sql.push_str(&format!(
                "{}?{}",
                if i == 0 { "" } else { ", " },
                params.len()
            ));
        }
        sql.push(')');
    }
    for tag in tags {
        params.push(tag.clone().into());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM memory_tags t WHERE t.tag = ?{} AND t.memory_seq = m.seq)",
            params.len()
        ));
    }
}

/// SQL and parameters for a page of memories.
pub fn list_sql(query: &ListQuery) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {MEMORY_COLUMNS} FROM memories m WHERE 1 = 1");
    let mut params = Vec::new();
    let namespaces: Vec<Namespace> = query.namespace.iter().cloned().collect();
    push_filters(
        &mut sql,
        &mut params,
        &namespaces,
        &query.tags,
        query.include_archived,
        query.min_importance,
    );
    if let (ListSort::Id, Some(after)) = (query.sort, query.after) {
        params.push(after.to_string().into());
        sql.push_str(&format!(" AND m.id > ?{}", params.len()));
    }
    sql.push_str(match query.sort {
        ListSort::Recent => " ORDER BY m.updated_at_ms DESC, m.seq DESC",
        ListSort::Importance => " ORDER BY m.importance DESC, m.updated_at_ms DESC, m.seq DESC",
        ListSort::Id => " ORDER BY m.id",
    });
    params.push(i64::from(query.limit).into());
    sql.push_str(&format!(" LIMIT ?{}", params.len()));
    params.push(i64::try_from(query.offset).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" OFFSET ?{}", params.len()));
    (sql, params)
}

/// SQL selecting the outgoing links of several memories: `(source_id, target_id, link_type)`.
pub fn links_of_sql(count: usize) -> String {
    let placeholders: Vec<String> = (1..=count).map(|i| format!("?{i}")).collect();
    format!(
        "SELECT source_id, target_id, link_type FROM memory_links WHERE source_id IN ({}) \
         ORDER BY source_id, target_id, link_type",
        placeholders.join(", ")
    )
}

/// Stores or replaces the vector of the memory with id `?1`:
/// `(id, model_id, dims, vector blob)`; changes() = 0 when the memory is gone.
pub const UPSERT_EMBEDDING: &str = "INSERT INTO memory_embeddings (memory_seq, model_id, dims, vector) \
     SELECT seq, ?2, ?3, ?4 FROM memories WHERE id = ?1 \
     ON CONFLICT (memory_seq) DO UPDATE SET model_id = excluded.model_id, dims = excluded.dims, \
     vector = excluded.vector";

/// Memories whose vector is missing (or, when `?4` is 1, made by another
/// model than `?1`), in id order after `?2` (NULL: from the start), at most
/// `?3`: `(id, content, summary)`.
pub const PENDING_EMBEDDINGS: &str = "SELECT m.id, CAST(m.content AS BLOB), CAST(m.summary AS BLOB) FROM memories m \
     LEFT JOIN memory_embeddings e ON e.memory_seq = m.seq \
     WHERE (e.memory_seq IS NULL OR (?4 = 1 AND e.model_id <> ?1)) AND (?2 IS NULL OR m.id > ?2) \
     ORDER BY m.id LIMIT ?3";

/// The memories among the ids of the JSON array `?2` whose vector is missing
/// (or, when `?3` is 1, made by another model than `?1`), in id order:
/// `(id, content, summary)`.
pub const PENDING_EMBEDDINGS_AMONG: &str = "SELECT m.id, CAST(m.content AS BLOB), CAST(m.summary AS BLOB) \
     FROM json_each(?2) j CROSS JOIN memories m ON m.id = j.value \
     LEFT JOIN memory_embeddings e ON e.memory_seq = m.seq \
     WHERE e.memory_seq IS NULL OR (?3 = 1 AND e.model_id <> ?1) \
     ORDER BY m.id";

/// Number of memories whose vector is missing (or, when `?2` is 1, made by
/// another model than `?1`): the memories less the vectors that count.
/// Every vector belongs to a stored memory (`ON DELETE CASCADE`, foreign
/// keys on in every connection), so the difference is exact, and both
/// counts read only an index: about 2 ms at 100k memories, against 80 ms
/// for a join that looks up every memory's vector (the worker recounts
/// when it goes idle).
pub const COUNT_PENDING_EMBEDDINGS: &str = "SELECT (SELECT count(*) FROM memories) \
     - (SELECT count(*) FROM memory_embeddings WHERE ?2 = 0 OR model_id = ?1)";

/// A JSON array of the ids, for `json_each`.
pub fn ids_json(ids: &[MemoryId]) -> String {
    serde_json::to_string(&ids.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

/// The text a memory's vector is made from: its content, then its summary.
pub fn embedding_text(content: &str, summary: Option<&str>) -> String {
    match summary {
        Some(summary) if !summary.is_empty() => format!("{content}\n{summary}"),
        _ => content.to_owned(),
    }
}

/// Little-endian f32 bytes, as stored in `memory_embeddings.vector`.
pub fn vector_to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector stored as little-endian f32 bytes.
pub fn blob_to_vector(blob: &[u8]) -> Result<Vec<f32>, Error> {
    if !blob.len().is_multiple_of(4) {
        return Err(Error::Storage(format!(
            "corrupt vector of {} bytes",
            blob.len()
        )));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Cosine similarity of two vectors of equal length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut norm_a, mut norm_b) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    f64::from(dot) / (f64::from(norm_a).sqrt() * f64::from(norm_b).sqrt())
}

/// SQL for memories linked to or from `count` given ids (bound first, as
/// `?1..?count`), at most `?count+1` per given id, highest importance first;
/// rows are `from_id` then the memory columns. Given ids linked to each other
/// are returned too (each gets a share of the other's score).
pub fn linked_memories_sql(count: usize, include_archived: bool) -> String {
    let ids: Vec<String> = (1..=count).map(|i| format!("?{i}")).collect();
    let ids = ids.join(", ");
    let per_memory = count + 1;
    let archived = if include_archived {
        ""
    } else {
        " AND m.archived = 0"
    };
    format!(
        "SELECT from_id, {MEMORY_COLUMNS} FROM (\
           SELECT l.from_id, l.other_id, ROW_NUMBER() OVER (PARTITION BY l.from_id \
             ORDER BY o.importance DESC, o.updated_at_ms DESC, o.seq DESC) AS n \
           FROM (SELECT source_id AS from_id, target_id AS other_id FROM memory_links WHERE source_id IN ({ids}) \
                 UNION SELECT target_id, source_id FROM memory_links WHERE target_id IN ({ids})) l \
           JOIN memories o ON o.id = l.other_id \
           WHERE 1 = 1{} \
         ) x JOIN memories m ON m.id = x.other_id WHERE x.n <= ?{per_memory} \
         ORDER BY from_id, x.n",
        archived.replace("m.", "o.")
    )
}
