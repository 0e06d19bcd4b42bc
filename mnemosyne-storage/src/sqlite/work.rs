//! Work item persistence of the sqlite backend (SQL and decoding in [`crate::work_rows`]).

use mnemosyne_core::{Phase, Result, WorkItem, WorkItemId, WorkPrune, WorkState};
use rusqlite::{Connection, OptionalExtension};

use crate::work_rows::{self, WORK_STATE_IDS_PER_QUERY};

use super::ops::{begin, db};

/// Upserts every item in one transaction.
pub(super) fn save_work_items(conn: &mut Connection, items: &[WorkItem]) -> Result<()> {
    let tx = begin(conn)?;
    {
        let mut upsert = tx.prepare_cached(work_rows::UPSERT_WORK_ITEM).map_err(db)?;
        for item in items {
            let params = work_rows::work_item_params(item)?;
            upsert
                .execute(rusqlite::params_from_iter(params))
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

fn decode_all(raw: Vec<(String, String)>) -> Result<Vec<WorkItem>> {
    raw.iter()
        .map(|(id, body)| work_rows::decode_work_item(id, body))
        .collect()
}

fn id_and_body(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String)> {
    Ok((row.get(0)?, row.get(1)?))
}

pub(super) fn work_item(conn: &mut Connection, id: WorkItemId) -> Result<Option<WorkItem>> {
    let raw = conn
        .prepare_cached(work_rows::SELECT_WORK_ITEM)
        .and_then(|mut stmt| stmt.query_row([id.to_string()], id_and_body).optional())
        .map_err(db)?;
    raw.map(|(id, body)| work_rows::decode_work_item(&id, &body))
        .transpose()
}

pub(super) fn active_work_items(conn: &mut Connection) -> Result<Vec<WorkItem>> {
    let mut stmt = conn
        .prepare_cached(work_rows::SELECT_ACTIVE_WORK_ITEMS)
        .map_err(db)?;
    let raw = stmt
        .query_map([], id_and_body)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    decode_all(raw)
}

pub(super) fn work_item_states(
    conn: &mut Connection,
    ids: &[WorkItemId],
) -> Result<Vec<(WorkItemId, WorkState)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(WORK_STATE_IDS_PER_QUERY) {
        let mut stmt = conn
            .prepare_cached(&work_rows::work_item_states_sql(chunk.len()))
            .map_err(db)?;
        let keys = chunk.iter().map(|id| id.to_string());
        let raw = stmt
            .query_map(rusqlite::params_from_iter(keys), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        for (id, state) in raw {
            out.push(work_rows::decode_work_state(&id, &state)?);
        }
    }
    Ok(out)
}

pub(super) fn list_work_items(
    conn: &mut Connection,
    state: Option<WorkState>,
    phase: Option<Phase>,
    limit: u32,
    offset: u64,
) -> Result<Vec<WorkItem>> {
    let (sql, params) = work_rows::list_work_items_sql(state, phase, limit, offset);
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let raw = stmt
        .query_map(rusqlite::params_from_iter(params), id_and_body)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    decode_all(raw)
}

pub(super) fn count_work_items_by_state(conn: &mut Connection) -> Result<Vec<(WorkState, u64)>> {
    let mut stmt = conn
        .prepare_cached(work_rows::COUNT_WORK_ITEMS_BY_STATE)
        .map_err(db)?;
    let raw = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    let mut counts = raw
        .iter()
        .map(|(state, count)| work_rows::decode_state_count(state, *count))
        .collect::<Result<Vec<_>>>()?;
    work_rows::sort_state_counts(&mut counts);
    Ok(counts)
}

/// Deletes the finished items beyond the newest `keep`, in one transaction.
pub(super) fn prune_finished_work_items(conn: &mut Connection, keep: u64) -> Result<WorkPrune> {
    let tx = begin(conn)?;
    let deleted = tx
        .execute(
            work_rows::PRUNE_FINISHED_WORK_ITEMS,
            [work_rows::prune_keep_param(keep)],
        )
        .map_err(db)?;
    let finished_stored: i64 = tx
        .query_row(work_rows::COUNT_FINISHED_WORK_ITEMS, [], |row| row.get(0))
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(WorkPrune {
        deleted: deleted as u64,
        finished_stored: u64::try_from(finished_stored).unwrap_or(0),
    })
}
