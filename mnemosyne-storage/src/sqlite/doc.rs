//! Context document persistence of the sqlite backend (SQL and decoding in [`crate::doc_rows`]).

use mnemosyne_core::{DocumentMeta, DocumentSave, Error, Namespace, Result, StoredDocument};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::doc_rows::{self, MetaRow};
use crate::rows::SqlValue;

use super::ops::{begin, db, is_unique_violation};

fn meta_row(row: &Row<'_>) -> rusqlite::Result<MetaRow> {
    let mut numbers = [0i64; 7];
    for (i, slot) in numbers.iter_mut().enumerate() {
        *slot = row.get(3 + i)?;
    }
    Ok(MetaRow {
        name: row.get(0)?,
        namespace: row.get(1)?,
        title: row.get(2)?,
        numbers,
    })
}

pub(super) fn create_document(
    conn: &mut Connection,
    meta: &DocumentMeta,
    snapshot: &[u8],
    state: &str,
    log: &str,
) -> Result<()> {
    let params = doc_rows::insert_params(meta, snapshot, state);
    let tx = begin(conn)?;
    match tx.execute(
        doc_rows::INSERT_DOCUMENT,
        rusqlite::params_from_iter(params),
    ) {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(Error::DocumentExists(meta.name.clone())),
        Err(e) => return Err(db(e)),
    }
    let (sql, params) = doc_rows::first_log_statement(&meta.name, log);
    tx.execute(sql, rusqlite::params_from_iter(params))
        .map_err(db)?;
    tx.commit().map_err(db)
}

pub(super) fn load_document(conn: &mut Connection, name: &str) -> Result<Option<StoredDocument>> {
    // One read transaction: the row and its chunks come from the same snapshot.
    let tx = conn.transaction().map_err(db)?;
    let found = tx
        .prepare_cached(&doc_rows::select_document())
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| {
                let count = doc_rows::DOCUMENT_META_COLUMN_COUNT;
                Ok((
                    meta_row(row)?,
                    row.get::<_, Vec<u8>>(count)?,
                    row.get::<_, String>(count + 1)?,
                ))
            })
            .optional()
        })
        .map_err(db)?;
    let Some((meta, snapshot, state)) = found else {
        return Ok(None);
    };
    let chunks = tx
        .prepare_cached(doc_rows::SELECT_CHUNKS)
        .and_then(|mut stmt| {
            stmt.query_map([name], |row| row.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    let undo_rows = tx
        .prepare_cached(doc_rows::SELECT_UNDO)
        .and_then(|mut stmt| {
            stmt.query_map([name], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get(1)?,
                    row.get::<_, i64>(2)?,
                    row.get(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    tx.commit().map_err(db)?;
    let undo = undo_rows
        .into_iter()
        .map(|(seq, actor, redo, step)| doc_rows::decode_undo(name, seq, actor, redo, step))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(StoredDocument {
        meta: doc_rows::decode_meta(meta)?,
        snapshot,
        chunks,
        state,
        undo,
    }))
}

pub(super) fn save_document(conn: &mut Connection, save: &DocumentSave) -> Result<()> {
    let params = doc_rows::update_params(save)?;
    let name = save.meta.name.as_str();
    let tx = begin(conn)?;
    let changed = tx
        .execute(
            doc_rows::UPDATE_DOCUMENT,
            rusqlite::params_from_iter(params),
        )
        .map_err(db)?;
    if changed == 0 {
        let exists = tx
            .query_row(doc_rows::DOCUMENT_EXISTS, [name], |_| Ok(()))
            .optional()
            .map_err(db)?
            .is_some();
        return Err(if exists {
            Error::DocumentConflict(name.to_owned())
        } else {
            Error::DocumentNotFound(name.to_owned())
        });
    }
    let (sql, params) = doc_rows::body_statement(name, &save.body);
    execute_cached(&tx, sql, params)?;
    if doc_rows::replaces_chunks(&save.body) {
        tx.execute(doc_rows::DELETE_CHUNKS, [name]).map_err(db)?;
    }
    for (sql, params) in doc_rows::undo_statements(save)
        .into_iter()
        .chain(doc_rows::log_statements(save))
    {
        execute_cached(&tx, sql, params)?;
    }
    tx.commit().map_err(db)
}

/// Runs a statement through the connection's statement cache (an edit
/// runs the same few statements every time).
fn execute_cached(conn: &Connection, sql: &str, params: Vec<SqlValue>) -> Result<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(params)))
        .map_err(db)
}

pub(super) fn document_log(conn: &mut Connection, name: &str, limit: u32) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(doc_rows::SELECT_LOG).map_err(db)?;
    stmt.query_map(rusqlite::params![name, i64::from(limit)], |row| row.get(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(db)
}

pub(super) fn list_documents(
    conn: &mut Connection,
    namespace: Option<&Namespace>,
    limit: u32,
    offset: u64,
) -> Result<Vec<DocumentMeta>> {
    let (sql, params) = doc_rows::list_documents_sql(namespace, limit, offset);
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), meta_row)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    rows.into_iter().map(doc_rows::decode_meta).collect()
}

pub(super) fn delete_document(conn: &mut Connection, name: &str) -> Result<bool> {
    let changed = conn
        .execute(doc_rows::DELETE_DOCUMENT, [name])
        .map_err(db)?;
    Ok(changed > 0)
}
