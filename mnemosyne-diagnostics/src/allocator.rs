//! Allocator figures from jemalloc (feature `jemalloc`). They mean something
//! only when the binary made jemalloc its global allocator.

use serde::{Deserialize, Serialize};

/// jemalloc's own account of the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorStats {
    /// Bytes allocated by the application.
    pub allocated_bytes: u64,
    /// Bytes in physically resident pages mapped by the allocator.
    pub resident_bytes: u64,
}

impl AllocatorStats {
    /// Fresh figures, or `None` without the `jemalloc` feature.
    pub fn sample() -> Option<Self> {
        imp::sample()
    }
}

#[cfg(feature = "jemalloc")]
mod imp {
    use tikv_jemalloc_ctl::{epoch, stats};

    use super::AllocatorStats;

    pub fn sample() -> Option<AllocatorStats> {
        // The statistics are cached until the epoch advances.
        epoch::advance().ok()?;
        Some(AllocatorStats {
            allocated_bytes: stats::allocated::read().ok()? as u64,
            resident_bytes: stats::resident::read().ok()? as u64,
        })
    }
}

#[cfg(not(feature = "jemalloc"))]
mod imp {
    use super::AllocatorStats;

    pub fn sample() -> Option<AllocatorStats> {
        None
    }
}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    #[test]
    fn sees_a_large_allocation() {
        let before = AllocatorStats::sample().unwrap();
        let block = vec![7u8; 16 << 20];
        let during = AllocatorStats::sample().unwrap();
        assert!(
            during.allocated_bytes >= before.allocated_bytes + (15 << 20),
            "{before:?} -> {during:?}"
        );
        assert!(during.resident_bytes >= during.allocated_bytes / 2);
        drop(block);
        // Process-wide figures and tests run in parallel: judge the drop
        // with room for what other tests allocate meanwhile.
        let after = AllocatorStats::sample().unwrap();
        assert!(
            after.allocated_bytes + (8 << 20) < during.allocated_bytes,
            "{during:?} -> {after:?}"
        );
    }
}
