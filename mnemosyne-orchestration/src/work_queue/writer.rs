//! The writer task: commits queue transitions in order, many per transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mnemosyne_core::{Error, WorkItem, WorkItemId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::shared::{RELOAD_RETRY_MS, Shared, Status, WriteRequest, load_state};

/// Commits what waits, `batch_max` transitions at most per transaction,
/// until cancelled; then closes the queue and commits what was accepted
/// before it closed.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<WriteRequest>,
    batch_max: usize,
    token: CancellationToken,
) {
    let mut batch = Vec::with_capacity(batch_max);
    let mut prune_floor = shared
        .finished_stored_max
        .max(shared.finished_stored.load(Ordering::Relaxed));
    loop {
        let received = tokio::select! {
            biased;
            received = requests.recv_many(&mut batch, batch_max) => received,
            () = token.cancelled() => break,
        };
        if received == 0 {
            return;
        }
        if !commit(&shared, &mut batch, &mut prune_floor).await {
            reload(&shared, &mut requests, &token).await;
        }
    }
    shared.lock().status = Status::Closed;
    requests.close();
    while requests.recv_many(&mut batch, batch_max).await > 0 {
        commit(&shared, &mut batch, &mut prune_floor).await;
    }
}

/// Writes the newest snapshot of each item in `batch` in one transaction,
/// prunes finished items if they passed their limit, and answers every
/// waiting caller (so an answer finds the limit held); false when the commit
/// failed.
async fn commit(shared: &Shared, batch: &mut Vec<WriteRequest>, prune_floor: &mut u64) -> bool {
    let mut position: HashMap<WorkItemId, usize> = HashMap::new();
    let mut items: Vec<WorkItem> = Vec::new();
    for request in batch.iter_mut() {
        for item in request.items.drain(..) {
            match position.get(&item.id) {
                Some(&at) => items[at] = item,
                None => {
                    position.insert(item.id, items.len());
                    items.push(item);
                }
            }
        }
    }
    let result = shared.storage.save_work_items(&items).await;
    let ok = result.is_ok();
    if ok {
        let finished = items.iter().filter(|item| item.state.is_finished()).count();
        prune_if_due(shared, finished as u64, prune_floor).await;
    }
    let error = result.err();
    for request in batch.drain(..) {
        let answer = match &error {
            None => Ok(()),
            // A full disk is said as it is: the caller can tell the user what to free.
            Some(error) => Err(error.as_disk_full().unwrap_or_else(|| {
                Error::Storage(format!("work queue change not written: {error}"))
            })),
        };
        // The caller may have given up waiting; the change stands either way.
        let _ = request.done.send(answer);
    }
    if let Some(error) = error {
        tracing::error!(%error, "work queue commit failed; reloading from storage");
    }
    ok
}

/// Counts `finished` more stored items and, once the count is more than 1%
/// over `prune_floor`, deletes the oldest finished ones down to
/// `work_finished_stored_max`. The count is an upper bound (an item written
/// finished twice counts twice), so the stored items never pass the floor
/// and its 1% unnoticed. The floor is the limit, or what the last prune left
/// when active items' dependencies kept more: those would be found again by
/// a prune on every commit.
async fn prune_if_due(shared: &Shared, finished: u64, prune_floor: &mut u64) {
    let keep = shared.finished_stored_max;
    // Only this task changes the count; it is stored after the prune, so
    // the gauge never shows a count past the bound.
    let stored = shared.finished_stored.load(Ordering::Relaxed) + finished;
    if stored <= *prune_floor + keep / 100 {
        shared.finished_stored.store(stored, Ordering::Relaxed);
        return;
    }
    match shared.storage.prune_finished_work_items(keep).await {
        Ok(pruned) => {
            shared
                .finished_stored
                .store(pruned.finished_stored, Ordering::Relaxed);
            *prune_floor = keep.max(pruned.finished_stored);
            tracing::debug!(
                deleted = pruned.deleted,
                stored = pruned.finished_stored,
                "pruned finished work items"
            );
        }
        // The count stays over the limit, so the next commit tries again.
        Err(error) => {
            shared.finished_stored.store(stored, Ordering::Relaxed);
            tracing::warn!(%error, "cannot prune finished work items");
        }
    }
}

/// After a failed commit: refuses new transitions, fails those accepted but
/// not written, and reloads the state from storage (retrying until it works
/// or the queue is shut down).
async fn reload(
    shared: &Shared,
    requests: &mut mpsc::Receiver<WriteRequest>,
    token: &CancellationToken,
) {
    shared.lock().status = Status::Reloading;
    while let Ok(request) = requests.try_recv() {
        let _ = request.done.send(Err(Error::Storage(
            "work queue change not written: an earlier commit failed".into(),
        )));
    }
    loop {
        let rules = shared.lock().state.rules().clone();
        match load_state(&*shared.storage, rules).await {
            Ok(state) => {
                let mut inner = shared.lock();
                inner.state = state;
                inner.status = Status::Open;
                drop(inner);
                shared.reaper_wake.notify_one();
                tracing::info!("work queue reloaded from storage");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "cannot reload the work queue; retrying");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(RELOAD_RETRY_MS)) => {}
                }
            }
        }
    }
}
