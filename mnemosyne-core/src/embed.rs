use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Turns texts into vectors. Implementations live in `mnemosyne-storage`
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
}
