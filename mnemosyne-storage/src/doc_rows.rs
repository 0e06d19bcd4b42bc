//! SQL text and row decoding for context documents, shared by every backend.
//!
//! The CRDT bytes and the state text are opaque here: storage checks only
//! the metadata columns. A save is a compare-and-set on `revision`.

use chrono::DateTime;
use mnemosyne_core::{
    DocumentBody, DocumentMeta, DocumentSave, Error, Namespace, Result, UndoChange, UndoRow,
};

use crate::rows::{SqlValue, to_ms};

/// Metadata columns, in the order [`decode_meta`] reads them.
pub const DOCUMENT_META_COLUMNS: &str = "name, namespace, title, epoch, revision, \
     ops_since_compaction, text_bytes, created_at_ms, updated_at_ms, compacted_at_ms";

/// Number of columns in [`DOCUMENT_META_COLUMNS`].
pub const DOCUMENT_META_COLUMN_COUNT: usize = 10;

/// Inserts a document; parameters: [`meta_params`], then snapshot (`?11`) and state (`?12`).
pub const INSERT_DOCUMENT: &str = "INSERT INTO documents (name, namespace, title, epoch, revision, \
     ops_since_compaction, text_bytes, created_at_ms, updated_at_ms, compacted_at_ms, snapshot, state) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Metadata, then `snapshot`, then `state` of the document named `?1`.
pub fn select_document() -> String {
    format!("SELECT {DOCUMENT_META_COLUMNS}, snapshot, state FROM documents WHERE name = ?1")
}

/// Chunks of the document named `?1`, oldest first.
pub const SELECT_CHUNKS: &str = "SELECT bytes FROM document_chunks WHERE name = ?1 ORDER BY seq";

/// Rewrites the metadata and state of `?1` if its revision is still `?12`;
/// parameters: [`meta_params`], state (`?11`), expected revision (`?12`).
/// `changes() == 0` means the revision moved or the document is gone.
pub const UPDATE_DOCUMENT: &str = "UPDATE documents SET namespace = ?2, title = ?3, epoch = ?4, \
     revision = ?5, ops_since_compaction = ?6, text_bytes = ?7, created_at_ms = ?8, \
     updated_at_ms = ?9, compacted_at_ms = ?10, state = ?11 WHERE name = ?1 AND revision = ?12";

/// Replaces the snapshot of `?1` with `?2` (compaction).
pub const REPLACE_SNAPSHOT: &str = "UPDATE documents SET snapshot = ?2 WHERE name = ?1";

/// Drops every chunk of `?1`.
pub const DELETE_CHUNKS: &str = "DELETE FROM document_chunks WHERE name = ?1";

/// Appends chunk `?2` after the last one of `?1`.
pub const APPEND_CHUNK: &str = "INSERT INTO document_chunks (name, seq, bytes) \
     SELECT ?1, coalesce(max(seq), 0) + 1, ?2 FROM document_chunks WHERE name = ?1";

/// Appends log record `?2` after the last one of `?1`.
pub const APPEND_LOG: &str = "INSERT INTO document_log (name, seq, record) \
     SELECT ?1, coalesce(max(seq), 0) + 1, ?2 FROM document_log WHERE name = ?1";

/// Keeps only the newest `?2` log records of `?1`.
pub const PRUNE_LOG: &str = "DELETE FROM document_log WHERE name = ?1 \
     AND seq <= (SELECT max(seq) FROM document_log WHERE name = ?1) - ?2";

/// The newest `?2` log records of `?1`, newest first.
pub const SELECT_LOG: &str =
    "SELECT record FROM document_log WHERE name = ?1 ORDER BY seq DESC LIMIT ?2";

/// `(seq, actor, redo, step)` of the undo steps of `?1`, by seq.
pub const SELECT_UNDO: &str =
    "SELECT seq, actor, redo, step FROM document_undo WHERE name = ?1 ORDER BY seq";

/// Adds undo step `(?2 seq, ?3 actor, ?4 redo, ?5 step)` to `?1`.
pub const INSERT_UNDO: &str =
    "INSERT INTO document_undo (name, seq, actor, redo, step) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Removes undo step `?2` of `?1`.
pub const DELETE_UNDO: &str = "DELETE FROM document_undo WHERE name = ?1 AND seq = ?2";

/// 1 when a document named `?1` exists.
pub const DOCUMENT_EXISTS: &str = "SELECT 1 FROM documents WHERE name = ?1";

/// Deletes the document `?1` (its chunks follow by cascade).
pub const DELETE_DOCUMENT: &str = "DELETE FROM documents WHERE name = ?1";

/// The ten metadata parameters, in the order of [`DOCUMENT_META_COLUMNS`].
pub fn meta_params(meta: &DocumentMeta) -> Vec<SqlValue> {
    vec![
        meta.name.clone().into(),
        meta.namespace.to_string().into(),
        meta.title.clone().into(),
        int(meta.epoch).into(),
        int(meta.revision).into(),
        int(meta.ops_since_compaction).into(),
        int(meta.text_bytes).into(),
        to_ms(meta.created_at).into(),
        to_ms(meta.updated_at).into(),
        to_ms(meta.compacted_at).into(),
    ]
}

/// Parameters of [`INSERT_DOCUMENT`].
pub fn insert_params(meta: &DocumentMeta, snapshot: &[u8], state: &str) -> Vec<SqlValue> {
    let mut params = meta_params(meta);
    params.push(SqlValue::Blob(snapshot.to_vec()));
    params.push(state.into());
    params
}

/// Parameters of [`UPDATE_DOCUMENT`]; refuses a save whose new revision is
/// not the next one (a caller bug that would break the compare-and-set).
pub fn update_params(save: &DocumentSave) -> Result<Vec<SqlValue>> {
    if save.meta.revision != save.expected_revision.wrapping_add(1) {
        return Err(Error::invalid(format!(
            "save of document {} must set revision {} (read {}), not {}",
            save.meta.name,
            save.expected_revision.wrapping_add(1),
            save.expected_revision,
            save.meta.revision
        )));
    }
    let mut params = meta_params(&save.meta);
    params.push(save.state.clone().into());
    params.push(int(save.expected_revision).into());
    Ok(params)
}

/// The statement and parameters writing `body` for document `name`, run
/// after [`UPDATE_DOCUMENT`] succeeded: an append, or a snapshot
/// replacement followed by [`DELETE_CHUNKS`] (see [`replaces_chunks`]).
pub fn body_statement(name: &str, body: &DocumentBody) -> (&'static str, Vec<SqlValue>) {
    match body {
        DocumentBody::Append(bytes) => (
            APPEND_CHUNK,
            vec![name.into(), SqlValue::Blob(bytes.clone())],
        ),
        DocumentBody::Replace(bytes) => (
            REPLACE_SNAPSHOT,
            vec![name.into(), SqlValue::Blob(bytes.clone())],
        ),
    }
}

/// The statements appending `save.log` and pruning the log (none without a record).
pub fn log_statements(save: &DocumentSave) -> Vec<(&'static str, Vec<SqlValue>)> {
    let Some(record) = &save.log else {
        return Vec::new();
    };
    let name = save.meta.name.as_str();
    vec![
        (APPEND_LOG, vec![name.into(), record.as_str().into()]),
        (
            PRUNE_LOG,
            vec![name.into(), i64::from(save.log_keep).into()],
        ),
    ]
}

/// The statements applying `save.undo`, in order.
pub fn undo_statements(save: &DocumentSave) -> Vec<(&'static str, Vec<SqlValue>)> {
    let name = save.meta.name.as_str();
    save.undo
        .iter()
        .map(|change| match change {
            UndoChange::Insert(row) => (
                INSERT_UNDO,
                vec![
                    name.into(),
                    int(row.seq).into(),
                    row.actor.as_str().into(),
                    i64::from(row.redo).into(),
                    row.step.as_str().into(),
                ],
            ),
            UndoChange::Delete(seq) => (DELETE_UNDO, vec![name.into(), int(*seq).into()]),
        })
        .collect()
}

/// Decodes a row `(seq, actor, redo, step)` of [`SELECT_UNDO`].
pub fn decode_undo(
    name: &str,
    seq: i64,
    actor: String,
    redo: i64,
    step: String,
) -> Result<UndoRow> {
    Ok(UndoRow {
        seq: count(name, "undo seq", seq)?,
        actor,
        redo: redo != 0,
        step,
    })
}

/// The statement appending the first log record of a new document.
pub fn first_log_statement(name: &str, record: &str) -> (&'static str, Vec<SqlValue>) {
    (APPEND_LOG, vec![name.into(), record.into()])
}

/// True when `body` drops the existing chunks.
pub fn replaces_chunks(body: &DocumentBody) -> bool {
    matches!(body, DocumentBody::Replace(_))
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(name: &str, what: &str) -> Error {
    Error::Storage(format!("corrupt row for document {name}: {what}"))
}

fn count(name: &str, column: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(name, &format!("{column} is negative ({value})")))
}

/// A metadata row as read from [`DOCUMENT_META_COLUMNS`], before checks.
#[derive(Clone, Debug)]
pub struct MetaRow {
    /// `name`.
    pub name: String,
    /// `namespace`.
    pub namespace: String,
    /// `title`.
    pub title: String,
    /// `epoch`, `revision`, `ops_since_compaction`, `text_bytes`,
    /// `created_at_ms`, `updated_at_ms`, `compacted_at_ms`.
    pub numbers: [i64; 7],
}

/// Checks and converts a metadata row.
pub fn decode_meta(row: MetaRow) -> Result<DocumentMeta> {
    let name = row.name;
    let namespace: Namespace = row
        .namespace
        .parse()
        .map_err(|e: Error| corrupt(&name, &e.to_string()))?;
    let [
        epoch,
        revision,
        ops,
        text_bytes,
        created,
        updated,
        compacted,
    ] = row.numbers;
    let time = |ms: i64, column: &str| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| corrupt(&name, &format!("{column} {ms} is not a valid time")))
    };
    Ok(DocumentMeta {
        epoch: count(&name, "epoch", epoch)?,
        revision: count(&name, "revision", revision)?,
        ops_since_compaction: count(&name, "ops_since_compaction", ops)?,
        text_bytes: count(&name, "text_bytes", text_bytes)?,
        created_at: time(created, "created_at_ms")?,
        updated_at: time(updated, "updated_at_ms")?,
        compacted_at: time(compacted, "compacted_at_ms")?,
        namespace,
        title: row.title,
        name,
    })
}

/// SQL and parameters for a page of metadata, by name.
pub fn list_documents_sql(
    namespace: Option<&Namespace>,
    limit: u32,
    offset: u64,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {DOCUMENT_META_COLUMNS} FROM documents");
    let mut params: Vec<SqlValue> = Vec::new();
    if let Some(namespace) = namespace {
        params.push(namespace.to_string().into());
        sql.push_str(" WHERE namespace = ?1");
    }
    params.push(i64::from(limit).into());
    sql.push_str(&format!(" ORDER BY name LIMIT ?{}", params.len()));
    params.push(int(offset).into());
    sql.push_str(&format!(" OFFSET ?{}", params.len()));
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> DocumentMeta {
        let now = mnemosyne_core::timestamp_now();
        DocumentMeta {
            name: "plan".into(),
            namespace: "project:atlas".parse().unwrap(),
            title: "The plan".into(),
            epoch: 2,
            revision: 7,
            ops_since_compaction: 3,
            text_bytes: 10,
            created_at: now,
            updated_at: now,
            compacted_at: now,
        }
    }

    fn row(meta: &DocumentMeta) -> MetaRow {
        let params = meta_params(meta);
        let numbers: Vec<i64> = params[3..]
            .iter()
            .map(|p| match p {
                SqlValue::Int(v) => *v,
                other => panic!("not an int: {other:?}"),
            })
            .collect();
        MetaRow {
            name: meta.name.clone(),
            namespace: meta.namespace.to_string(),
            title: meta.title.clone(),
            numbers: numbers.try_into().unwrap(),
        }
    }

    #[test]
    fn meta_round_trips_and_bad_rows_are_errors() {
        let meta = meta();
        assert_eq!(decode_meta(row(&meta)).unwrap(), meta);
        let mut bad = row(&meta);
        bad.numbers[0] = -1;
        let err = decode_meta(bad).unwrap_err();
        assert!(err.to_string().contains("epoch is negative"), "{err}");
        let mut bad = row(&meta);
        bad.namespace = "nowhere:".into();
        assert!(decode_meta(bad).is_err());
    }

    #[test]
    fn a_save_must_take_the_next_revision() {
        let mut save = DocumentSave {
            meta: meta(),
            expected_revision: 6,
            body: DocumentBody::Append(vec![1]),
            state: "{}".into(),
            undo: vec![UndoChange::Delete(3)],
            log: Some("{}".into()),
            log_keep: 10,
        };
        assert_eq!(log_statements(&save).len(), 2);
        assert_eq!(undo_statements(&save)[0].0, DELETE_UNDO);
        assert_eq!(update_params(&save).unwrap().len(), 12);
        save.expected_revision = 7;
        assert!(update_params(&save).is_err());
    }

    #[test]
    fn list_sql_binds_the_namespace_first() {
        let (sql, params) = list_documents_sql(None, 5, 0);
        assert!(sql.ends_with("LIMIT ?1 OFFSET ?2"), "{sql}");
        assert_eq!(params.len(), 2);
        let ns: Namespace = "global".parse().unwrap();
        let (sql, params) = list_documents_sql(Some(&ns), 5, 10);
        assert!(
            sql.contains("namespace = ?1") && sql.ends_with("OFFSET ?3"),
            "{sql}"
        );
        assert_eq!(params[2], SqlValue::Int(10));
    }
}
