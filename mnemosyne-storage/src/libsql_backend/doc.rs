//! Context document persistence of the libsql backend (SQL and decoding in [`crate::doc_rows`]).

use libsql::{Connection, Row};
use mnemosyne_core::{DocumentMeta, DocumentSave, Error, Namespace, Result, StoredDocument};

use crate::doc_rows::{self, MetaRow};

use super::ops::{
    begin, col_blob, col_int, col_text, db, finish, is_unique_violation, query_all, query_first,
    text, values,
};

fn meta_row(row: &Row) -> Result<MetaRow> {
    let mut numbers = [0i64; 7];
    for (i, slot) in numbers.iter_mut().enumerate() {
        *slot = col_int(row, 3 + i as i32)?;
    }
    Ok(MetaRow {
        name: col_text(row, 0)?,
        namespace: col_text(row, 1)?,
        title: col_text(row, 2)?,
        numbers,
    })
}

pub(super) async fn create_document(
    conn: &Connection,
    meta: &DocumentMeta,
    snapshot: &[u8],
    state: &str,
    log: &str,
) -> Result<()> {
    let params = values(doc_rows::insert_params(meta, snapshot, state));
    begin(conn).await?;
    let outcome = async {
        match conn.execute(doc_rows::INSERT_DOCUMENT, params).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::DocumentExists(meta.name.clone()));
            }
            Err(e) => return Err(db(e)),
        }
        let (sql, params) = doc_rows::first_log_statement(&meta.name, log);
        conn.execute(sql, values(params)).await.map_err(db)?;
        Ok(())
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn load_document(conn: &Connection, name: &str) -> Result<Option<StoredDocument>> {
    // One read transaction: the row and its chunks come from the same snapshot.
    conn.execute("BEGIN", ()).await.map_err(db)?;
    let outcome = async {
        let count = doc_rows::DOCUMENT_META_COLUMN_COUNT as i32;
        let found = query_first(
            conn,
            &doc_rows::select_document(),
            vec![text(name)],
            |row| {
                Ok((
                    meta_row(row)?,
                    col_blob(row, count)?,
                    col_text(row, count + 1)?,
                ))
            },
        )
        .await?;
        let Some((meta, snapshot, state)) = found else {
            return Ok(None);
        };
        let chunks = query_all(conn, doc_rows::SELECT_CHUNKS, vec![text(name)], |row| {
            col_blob(row, 0)
        })
        .await?;
        let undo = query_all(conn, doc_rows::SELECT_UNDO, vec![text(name)], |row| {
            doc_rows::decode_undo(
                name,
                col_int(row, 0)?,
                col_text(row, 1)?,
                col_int(row, 2)?,
                col_text(row, 3)?,
            )
        })
        .await?;
        Ok(Some(StoredDocument {
            meta: doc_rows::decode_meta(meta)?,
            snapshot,
            chunks,
            state,
            undo,
        }))
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn save_document(conn: &Connection, save: &DocumentSave) -> Result<()> {
    let params = values(doc_rows::update_params(save)?);
    let name = save.meta.name.as_str();
    begin(conn).await?;
    let outcome = async {
        let changed = conn
            .execute(doc_rows::UPDATE_DOCUMENT, params)
            .await
            .map_err(db)?;
        if changed == 0 {
            let exists = query_first(
                conn,
                doc_rows::DOCUMENT_EXISTS,
                vec![text(name)],
                |_| Ok(()),
            )
            .await?
            .is_some();
            return Err(if exists {
                Error::DocumentConflict(name.to_owned())
            } else {
                Error::DocumentNotFound(name.to_owned())
            });
        }
        let (sql, params) = doc_rows::body_statement(name, &save.body);
        conn.execute(sql, values(params)).await.map_err(db)?;
        if doc_rows::replaces_chunks(&save.body) {
            conn.execute(doc_rows::DELETE_CHUNKS, vec![text(name)])
                .await
                .map_err(db)?;
        }
        for (sql, params) in doc_rows::undo_statements(save)
            .into_iter()
            .chain(doc_rows::log_statements(save))
        {
            conn.execute(sql, values(params)).await.map_err(db)?;
        }
        Ok(())
    }
    .await;
    finish(conn, outcome).await
}

pub(super) async fn document_log(conn: &Connection, name: &str, limit: u32) -> Result<Vec<String>> {
    query_all(
        conn,
        doc_rows::SELECT_LOG,
        vec![text(name), libsql::Value::Integer(limit.into())],
        |row| col_text(row, 0),
    )
    .await
}

pub(super) async fn list_documents(
    conn: &Connection,
    namespace: Option<&Namespace>,
    limit: u32,
    offset: u64,
) -> Result<Vec<DocumentMeta>> {
    let (sql, params) = doc_rows::list_documents_sql(namespace, limit, offset);
    let rows = query_all(conn, &sql, values(params), meta_row).await?;
    rows.into_iter().map(doc_rows::decode_meta).collect()
}

pub(super) async fn delete_document(conn: &Connection, name: &str) -> Result<bool> {
    begin(conn).await?;
    let outcome = async {
        let changed = conn
            .execute(doc_rows::DELETE_DOCUMENT, vec![text(name)])
            .await
            .map_err(db)?;
        Ok(changed > 0)
    }
    .await;
    finish(conn, outcome).await
}
