//! What every stress check returns, and the helpers the checks share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A check's verdict: `Ok(what it saw)` or `Err(why it failed)`.
pub type Outcome = Result<String, String>;

/// An error as a check's failure text.
pub fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

/// Samples `read` every millisecond until dropped; keeps the maximum.
pub fn sample_max(
    read: impl Fn() -> usize + Send + 'static,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let max = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&max);
    let sampler = tokio::spawn(async move {
        loop {
            seen.fetch_max(read(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    (max, sampler)
}
