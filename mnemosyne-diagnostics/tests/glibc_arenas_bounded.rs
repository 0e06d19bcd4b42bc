//! `allocator_arenas_max` holds: threads share the configured arenas.
#![cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]

mod arenas;

use mnemosyne_diagnostics::AllocatorStats;

#[test]
fn threads_share_the_configured_arenas() {
    assert_eq!(AllocatorStats::configure_arenas(2), Ok(true));
    let count = arenas::arenas_with_threads_alive(8);
    assert!(
        (1..=2).contains(&count),
        "{count} arenas for 8 threads with allocator_arenas_max 2"
    );
    let refused = AllocatorStats::configure_arenas(0).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the allocator refused M_ARENA_MAX: 0 is not a count from 1"
    );
}
