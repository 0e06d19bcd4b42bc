//! Context document persistence over [`Conn`] (SQL and decoding in [`crate::doc_rows`]).

use mnemosyne_core::{DocumentMeta, DocumentSave, Error, Namespace, Result, StoredDocument};

use super::conn::{Conn, Row, read_transaction, transaction};
use crate::doc_rows::{self, MetaRow};
use crate::rows::SqlValue;

fn text(v: &str) -> SqlValue {
    SqlValue::Text(v.to_owned())
}

fn meta_row(row: &dyn Row) -> Result<MetaRow> {
    let mut numbers = [0i64; 7];
    for (i, slot) in numbers.iter_mut().enumerate() {
        *slot = row.int(3 + i)?;
    }
    Ok(MetaRow {
        name: row.text(0)?,
        namespace: row.text(1)?,
        title: row.text(2)?,
        numbers,
    })
}

/// Stores a new document with the first record of its log.
pub fn create_document(
    conn: &mut impl Conn,
    meta: &DocumentMeta,
    snapshot: &[u8],
    state: &str,
    log: &str,
) -> Result<()> {
    let params = doc_rows::insert_params(meta, snapshot, state);
    transaction(conn, |conn| {
        match conn.execute(doc_rows::INSERT_DOCUMENT, &params) {
            Err(e) if e.is_unique_violation() => {
                return Err(Error::DocumentExists(meta.name.clone()));
            }
            other => other?,
        };
        let (sql, params) = doc_rows::first_log_statement(&meta.name, log);
        conn.execute(sql, &params)?;
        Ok(())
    })
}

/// The document with this name, read from one snapshot.
pub fn load_document(conn: &mut impl Conn, name: &str) -> Result<Option<StoredDocument>> {
    read_transaction(conn, |conn| {
        let count = doc_rows::DOCUMENT_META_COLUMN_COUNT;
        let found = conn.query_first(&doc_rows::select_document(), &[text(name)], |row| {
            Ok((meta_row(row)?, row.blob(count)?, row.text(count + 1)?))
        })?;
        let Some((meta, snapshot, state)) = found else {
            return Ok(None);
        };
        let chunks = conn.query_all(doc_rows::SELECT_CHUNKS, &[text(name)], |row| row.blob(0))?;
        let undo = conn.query_all(doc_rows::SELECT_UNDO, &[text(name)], |row| {
            doc_rows::decode_undo(name, row.int(0)?, row.text(1)?, row.int(2)?, row.text(3)?)
        })?;
        Ok(Some(StoredDocument {
            meta: doc_rows::decode_meta(meta)?,
            snapshot,
            chunks,
            state,
            undo,
        }))
    })
}

/// Saves a document if its stored revision is still the expected one.
pub fn save_document(conn: &mut impl Conn, save: &DocumentSave) -> Result<()> {
    let params = doc_rows::update_params(save)?;
    let name = save.meta.name.as_str();
    transaction(conn, |conn| {
        if conn.execute(doc_rows::UPDATE_DOCUMENT, &params)? == 0 {
            let exists = conn
                .query_first(doc_rows::DOCUMENT_EXISTS, &[text(name)], |_| Ok(()))?
                .is_some();
            return Err(if exists {
                Error::DocumentConflict(name.to_owned())
            } else {
                Error::DocumentNotFound(name.to_owned())
            });
        }
        let (sql, params) = doc_rows::body_statement(name, &save.body);
        conn.execute(sql, &params)?;
        if doc_rows::replaces_chunks(&save.body) {
            conn.execute(doc_rows::DELETE_CHUNKS, &[text(name)])?;
        }
        for (sql, params) in doc_rows::undo_statements(save)
            .into_iter()
            .chain(doc_rows::log_statements(save))
        {
            conn.execute(sql, &params)?;
        }
        Ok(())
    })
}

/// The newest `limit` log records of a document, newest first.
pub fn document_log(conn: &mut impl Conn, name: &str, limit: u32) -> Result<Vec<String>> {
    let params = [text(name), SqlValue::Int(limit.into())];
    conn.query_all(doc_rows::SELECT_LOG, &params, |row| row.text(0))
}

/// A page of document metadata, by name.
pub fn list_documents(
    conn: &mut impl Conn,
    namespace: Option<&Namespace>,
    limit: u32,
    offset: u64,
) -> Result<Vec<DocumentMeta>> {
    let (sql, params) = doc_rows::list_documents_sql(namespace, limit, offset);
    let rows = conn.query_all(&sql, &params, meta_row)?;
    rows.into_iter().map(doc_rows::decode_meta).collect()
}

/// Deletes a document, its chunks and its log; false when it did not exist.
pub fn delete_document(conn: &mut impl Conn, name: &str) -> Result<bool> {
    transaction(conn, |conn| {
        Ok(conn.execute(doc_rows::DELETE_DOCUMENT, &[text(name)])? > 0)
    })
}
