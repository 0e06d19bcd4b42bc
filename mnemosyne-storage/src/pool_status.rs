//! Pool gauges from deadpool's status, shared by both backends.

use deadpool::Status;
use mnemosyne_core::PoolStatus;

/// The [`PoolStatus`] of a reader pool and a single-connection writer pool,
/// with SQLite's heap (`heap_bytes` now, against `heap_bytes_max`).
pub fn from_pools(
    readers: Status,
    writer: Status,
    heap_bytes: u64,
    heap_bytes_max: u64,
) -> PoolStatus {
    PoolStatus {
        readers_max: readers.max_size,
        readers_open: readers.size,
        readers_idle: readers.available,
        readers_waiting: readers.waiting,
        writer_in_use: writer.size - writer.available,
        writer_waiting: writer.waiting,
        sqlite_heap_bytes: heap_bytes,
        sqlite_heap_bytes_max: heap_bytes_max,
    }
}
