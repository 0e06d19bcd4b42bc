//! The open-file budget of `serve http`: every connection up to
//! `http_connections_max` holds a descriptor, and so does each database
//! connection. At start the soft limit is raised to the hard one; a
//! configuration that still cannot fit is refused before anything opens,
//! instead of failing `accept` (EMFILE) under load.

use mnemosyne_core::Limits;

/// Descriptors each database connection may hold (the database file, its
/// WAL, the shared-memory index).
pub const FDS_PER_DB_CONNECTION: u64 = 3;

/// Descriptors besides HTTP and database connections: stdio, the runtime's
/// epoll and wakers, the listener, the queue's lock file, the model files,
/// the one accept that a refused connection costs.
pub const FDS_MARGIN: u64 = 64;

/// Descriptors `serve http` needs with these limits.
pub fn fds_needed(limits: &Limits) -> u64 {
    // The pool's readers and its one writer.
    let db_connections = u64::from(limits.pool_readers_max) + 1;
    u64::from(limits.http_connections_max) + db_connections * FDS_PER_DB_CONNECTION + FDS_MARGIN
}

/// Why the budget does not fit, in one line.
pub fn refusal(limits: &Limits, soft: u64, hard: Option<u64>) -> Option<String> {
    let needed = fds_needed(limits);
    if needed <= soft {
        return None;
    }
    let hard = hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
    Some(format!(
        "the open-file limit is {soft} (hard limit {hard}) but serve http needs {needed}: \
         http_connections_max {} + {} database connections x {FDS_PER_DB_CONNECTION} \
         (pool_readers_max {} + the writer) + {FDS_MARGIN} for the process; \
         lower http_connections_max or raise the limit (ulimit -n)",
        limits.http_connections_max,
        u64::from(limits.pool_readers_max) + 1,
        limits.pool_readers_max,
    ))
}

/// Raises the soft open-file limit to the hard one, then checks the budget:
/// `Ok(soft limit now in force)`, or the refusal.
#[cfg(unix)]
pub fn raise_and_check(limits: &Limits) -> anyhow::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let mut soft = now.current.unwrap_or(u64::MAX);
    if now.current.is_some() && now.current != now.maximum {
        let raised = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = now.maximum.unwrap_or(u64::MAX),
            // macOS refuses an unlimited soft limit: keep the one there is.
            Err(error) => tracing::debug!(%error, "cannot raise the open-file soft limit"),
        }
    }
    match refusal(limits, soft, now.maximum) {
        None => Ok(soft),
        Some(line) => anyhow::bail!(line),
    }
}

/// No descriptor limit to raise off Unix.
#[cfg(not(unix))]
pub fn raise_and_check(_limits: &Limits) -> anyhow::Result<u64> {
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_and_its_refusal() {
        let limits = Limits::default();
        assert_eq!(fds_needed(&limits), 1_024 + 5 * 3 + 64);
        assert_eq!(refusal(&limits, 1_103, Some(4_096)), None);
        let line = refusal(&limits, 1_102, Some(1_102)).unwrap();
        assert!(
            line.starts_with(
                "the open-file limit is 1102 (hard limit 1102) but serve http needs 1103"
            ) && line.contains("http_connections_max 1024")
                && !line.contains('\n'),
            "{line}"
        );
        assert!(refusal(&limits, 1_000, None).unwrap().contains("unlimited"));
    }
}
