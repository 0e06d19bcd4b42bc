//! Work item persistence over [`Conn`] (SQL and decoding in [`crate::work_rows`]).

use mnemosyne_core::{MemoryId, Phase, Result, WorkItem, WorkItemId, WorkPrune, WorkState};

use super::conn::{Conn, Row, transaction};
use crate::rows::{self, SqlValue};
use crate::work_rows::{self, WORK_STATE_IDS_PER_QUERY};

/// Upserts every item in one transaction.
pub fn save_work_items(conn: &mut impl Conn, items: &[WorkItem]) -> Result<()> {
    transaction(conn, |conn| {
        for item in items {
            conn.execute(
                work_rows::UPSERT_WORK_ITEM,
                &work_rows::work_item_params(item)?,
            )?;
        }
        Ok(())
    })
}

/// Decodes a row `(id, body)`.
fn decode_item(row: &dyn Row) -> Result<WorkItem> {
    work_rows::decode_work_item(&row.text(0)?, &row.text(1)?)
}

/// The work item with this id, in any state.
pub fn work_item(conn: &mut impl Conn, id: WorkItemId) -> Result<Option<WorkItem>> {
    let params = [SqlValue::Text(id.to_string())];
    conn.query_first(work_rows::SELECT_WORK_ITEM, &params, decode_item)
}

/// Every active work item, oldest first.
pub fn active_work_items(conn: &mut impl Conn) -> Result<Vec<WorkItem>> {
    conn.query_all(work_rows::SELECT_ACTIVE_WORK_ITEMS, &[], decode_item)
}

/// The state of each known id among `ids`.
pub fn work_item_states(
    conn: &mut impl Conn,
    ids: &[WorkItemId],
) -> Result<Vec<(WorkItemId, WorkState)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(WORK_STATE_IDS_PER_QUERY) {
        let keys: Vec<SqlValue> = chunk
            .iter()
            .map(|id| SqlValue::Text(id.to_string()))
            .collect();
        let sql = work_rows::work_item_states_sql(chunk.len());
        out.extend(conn.query_all(&sql, &keys, |row| {
            work_rows::decode_work_state(&row.text(0)?, &row.text(1)?)
        })?);
    }
    Ok(out)
}

/// The ids among `ids` that name no stored memory, in the given order.
pub fn missing_memories(conn: &mut impl Conn, ids: &[MemoryId]) -> Result<Vec<MemoryId>> {
    let params = [SqlValue::Text(rows::ids_json(ids))];
    let found: std::collections::HashSet<String> = conn
        .query_all(rows::STORED_AMONG, &params, |row| row.text(0))?
        .into_iter()
        .collect();
    Ok(ids
        .iter()
        .filter(|id| !found.contains(&id.to_string()))
        .copied()
        .collect())
}

/// A page of work items, newest first.
pub fn list_work_items(
    conn: &mut impl Conn,
    state: Option<WorkState>,
    phase: Option<Phase>,
    limit: u32,
    offset: u64,
) -> Result<Vec<WorkItem>> {
    let (sql, params) = work_rows::list_work_items_sql(state, phase, limit, offset);
    conn.query_all(&sql, &params, decode_item)
}

/// Number of stored work items per state.
pub fn count_work_items_by_state(conn: &mut impl Conn) -> Result<Vec<(WorkState, u64)>> {
    let mut counts = conn.query_all(work_rows::COUNT_WORK_ITEMS_BY_STATE, &[], |row| {
        work_rows::decode_state_count(&row.text(0)?, row.int(1)?)
    })?;
    work_rows::sort_state_counts(&mut counts);
    Ok(counts)
}

/// Deletes the finished items beyond the newest `keep`, in one transaction.
pub fn prune_finished_work_items(conn: &mut impl Conn, keep: u64) -> Result<WorkPrune> {
    transaction(conn, |conn| {
        let deleted = conn.execute(
            work_rows::PRUNE_FINISHED_WORK_ITEMS,
            &[SqlValue::Int(work_rows::prune_keep_param(keep))],
        )?;
        let finished_stored =
            conn.query_one(work_rows::COUNT_FINISHED_WORK_ITEMS, &[], |row| row.int(0))?;
        Ok(WorkPrune {
            deleted,
            finished_stored: u64::try_from(finished_stored).unwrap_or(0),
        })
    })
}
