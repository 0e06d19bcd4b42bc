//! Work item persistence of the libsql backend (SQL and decoding in [`crate::work_rows`]).

use libsql::{Connection, Row};
use mnemosyne_core::{Phase, Result, WorkItem, WorkItemId, WorkPrune, WorkState};

use crate::work_rows::{self, WORK_STATE_IDS_PER_QUERY};

use super::ops::{
    begin, col_int, col_text, db, finish, query_all, query_first, query_value, text, values,
};

/// Upserts every item in one transaction.
pub(super) async fn save_work_items(conn: &Connection, items: &[WorkItem]) -> Result<()> {
    begin(conn).await?;
    let outcome = async {
        for item in items {
            let params = work_rows::work_item_params(item)?;
            conn.execute(work_rows::UPSERT_WORK_ITEM, values(params))
                .await
                .map_err(db)?;
        }
        Ok(())
    }
    .await;
    finish(conn, outcome).await
}

/// Decodes a row `(id, body)`.
fn decode_item(row: &Row) -> Result<WorkItem> {
    work_rows::decode_work_item(&col_text(row, 0)?, &col_text(row, 1)?)
}

pub(super) async fn work_item(conn: &Connection, id: WorkItemId) -> Result<Option<WorkItem>> {
    query_first(
        conn,
        work_rows::SELECT_WORK_ITEM,
        vec![text(&id.to_string())],
        decode_item,
    )
    .await
}

pub(super) async fn active_work_items(conn: &Connection) -> Result<Vec<WorkItem>> {
    query_all(
        conn,
        work_rows::SELECT_ACTIVE_WORK_ITEMS,
        Vec::new(),
        decode_item,
    )
    .await
}

pub(super) async fn work_item_states(
    conn: &Connection,
    ids: &[WorkItemId],
) -> Result<Vec<(WorkItemId, WorkState)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(WORK_STATE_IDS_PER_QUERY) {
        let keys = chunk.iter().map(|id| text(&id.to_string())).collect();
        let found = query_all(
            conn,
            &work_rows::work_item_states_sql(chunk.len()),
            keys,
            |row| work_rows::decode_work_state(&col_text(row, 0)?, &col_text(row, 1)?),
        )
        .await?;
        out.extend(found);
    }
    Ok(out)
}

pub(super) async fn list_work_items(
    conn: &Connection,
    state: Option<WorkState>,
    phase: Option<Phase>,
    limit: u32,
    offset: u64,
) -> Result<Vec<WorkItem>> {
    let (sql, params) = work_rows::list_work_items_sql(state, phase, limit, offset);
    query_all(conn, &sql, values(params), decode_item).await
}

pub(super) async fn count_work_items_by_state(conn: &Connection) -> Result<Vec<(WorkState, u64)>> {
    let mut counts = query_all(
        conn,
        work_rows::COUNT_WORK_ITEMS_BY_STATE,
        Vec::new(),
        |row| work_rows::decode_state_count(&col_text(row, 0)?, col_int(row, 1)?),
    )
    .await?;
    work_rows::sort_state_counts(&mut counts);
    Ok(counts)
}

/// Deletes the finished items beyond the newest `keep`, in one transaction.
pub(super) async fn prune_finished_work_items(conn: &Connection, keep: u64) -> Result<WorkPrune> {
    begin(conn).await?;
    let outcome = async {
        let deleted = conn
            .execute(
                work_rows::PRUNE_FINISHED_WORK_ITEMS,
                vec![libsql::Value::Integer(work_rows::prune_keep_param(keep))],
            )
            .await
            .map_err(db)?;
        let finished_stored = query_value(
            conn,
            work_rows::COUNT_FINISHED_WORK_ITEMS,
            Vec::new(),
            |row| col_int(row, 0),
        )
        .await?;
        Ok(WorkPrune {
            deleted,
            finished_stored: u64::try_from(finished_stored).unwrap_or(0),
        })
    }
    .await;
    finish(conn, outcome).await
}
