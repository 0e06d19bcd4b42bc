//! The bound on the dimensions of every embedder, checked by the config
//! and by each embedder that takes its dimensions from it.

/// Largest number of dimensions an embedder may be configured with.
pub const EMBEDDING_DIMS_MAX: usize = 16_384;
