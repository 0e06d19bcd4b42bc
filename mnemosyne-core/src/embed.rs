use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Most dimensions a vector may have, stored or searched with: every
/// embedder is held to it, and the store refuses a longer vector.
pub const EMBEDDING_DIMS_MAX: usize = 16_384;

/// Checks a vector before it is stored or searched with: at least one and
/// at most [`EMBEDDING_DIMS_MAX`] dimensions, every value a finite number.
/// `what` names it in the one-line error.
pub fn check_vector(vector: &[f32], what: &str) -> Result<()> {
    if vector.is_empty() {
        return Err(Error::invalid(format!("{what} has no dimensions")));
    }
    if vector.len() > EMBEDDING_DIMS_MAX {
        return Err(Error::invalid(format!(
            "{what} has {} dimensions, at most {EMBEDDING_DIMS_MAX} are supported",
            vector.len()
        )));
    }
    if let Some(at) = vector.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "{what} holds a value that is not a finite number at position {at}"
        )));
    }
    Ok(())
}

/// Turns texts into vectors. Implementations live in `mnemosyne-embed`
/// (`hash`, offline and deterministic; `http`, any OpenAI-compatible endpoint).
#[async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// Names the model and its settings; a stored vector made by another
    /// model id is stale and `reindex` replaces it.
    fn model_id(&self) -> &str;

    /// Length of every vector this embedder returns.
    fn dims(&self) -> usize;

    /// One L2-normalised vector of [`Embedder::dims`] floats per text, in order.
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;

    /// Like [`Embedder::embed`], for texts whose vectors the store keeps
    /// (memories remembered, updated or reindexed). Each is embedded once and
    /// then read from the database, so a cache in front of the model passes
    /// these by and keeps its room for recall queries, which repeat.
    async fn embed_for_storage(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts).await
    }
}

/// A vector together with the model that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// [`Embedder::model_id`] of the embedder that made it.
    pub model_id: String,
    /// The vector (L2-normalised).
    pub vector: Vec<f32>,
}

impl Embedding {
    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.vector.len()
    }

    /// Checks the vector before it is stored: see [`check_vector`].
    pub fn check(&self) -> Result<()> {
        check_vector(&self.vector, "the embedding")
    }
}
