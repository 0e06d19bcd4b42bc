//! Pool gauges from deadpool's status, shared by both backends.

use deadpool::Status;
use mnemosyne_core::PoolStatus;

/// The [`PoolStatus`] of a reader pool and a single-connection writer pool.
pub fn from_pools(readers: Status, writer: Status) -> PoolStatus {
    PoolStatus {
        readers_max: readers.max_size,
        readers_open: readers.size,
        readers_idle: readers.available,
        readers_waiting: readers.waiting,
        writer_in_use: writer.size - writer.available,
        writer_waiting: writer.waiting,
    }
}
