//! [`MiniLmEmbedder`]: all-MiniLM-L6-v2 run in-process (the default
//! embedder). The model and tokenizer files are compiled into the binary
//! (`model/`, pinned by sha256 in `build.rs`): no download, no server.
//!
//! Inference is CPU work of milliseconds to tens of milliseconds: it runs on
//! tokio's blocking threads, at most `embedding_inferences_max` at once,
//! never on the async runtime. The model loads on first use (a CLI command
//! that embeds nothing never pays for it) or at once with
//! [`MiniLmEmbedder::preload`] (a server, so that its first recall is fast).

mod assets;
mod fold;
mod model;
#[cfg(test)]
mod pinned;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use mnemosyne_core::{Embedder, Error, Limits, Result};
use tokio::sync::{OnceCell, Semaphore};

pub use assets::{MINILM_DIMS, MINILM_MODEL_ID};
pub use fold::{FoldError, fold_weight_dequantisation};
pub use model::{Embedded, MiniLmModel, RUN_PADDED_TOKENS_MAX, Tokenized, plan_runs};

/// The token the warm-up run of [`MiniLmEmbedder::preload`] repeats (`the`
/// in the model's vocabulary; any id below its 30 522 would do).
const WARM_UP_TOKEN_ID: u32 = 1_996;

/// What the embedder has done since it was made; read by the diagnostics.
#[derive(Debug, Default)]
pub struct MiniLmStats {
    texts_embedded: AtomicU64,
    texts_truncated: AtomicU64,
    load_ms: AtomicU64,
}

impl MiniLmStats {
    /// Texts embedded.
    pub fn texts_embedded(&self) -> u64 {
        self.texts_embedded.load(Ordering::Relaxed)
    }

    /// Texts longer than `embedding_tokens_max`, embedded from their first tokens.
    pub fn texts_truncated(&self) -> u64 {
        self.texts_truncated.load(Ordering::Relaxed)
    }

    /// Milliseconds the model took to load (0 until it is loaded).
    pub fn load_ms(&self) -> u64 {
        self.load_ms.load(Ordering::Relaxed)
    }
}

/// The local sentence embedder.
#[derive(Debug)]
pub struct MiniLmEmbedder {
    model: OnceCell<Arc<MiniLmModel>>,
    inferences: Arc<Semaphore>,
    inferences_max: usize,
    tokens_max: usize,
    stats: Arc<MiniLmStats>,
}

impl MiniLmEmbedder {
    /// An embedder with the token cap and inference limit of `limits`; the
    /// model is not loaded yet.
    pub fn new(limits: &Limits) -> Self {
        Self {
            model: OnceCell::new(),
            inferences: Arc::new(Semaphore::new(limits.embedding_inferences_max as usize)),
            inferences_max: limits.embedding_inferences_max as usize,
            tokens_max: limits.embedding_tokens_max as usize,
            stats: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<MiniLmStats> {
        self.stats.clone()
    }

    /// Loads the model now, if it is not loaded yet, then runs it once on
    /// each of `embedding_inferences_max` threads at the largest shape a run
    /// can have (one text of `embedding_tokens_max` tokens). The scratch
    /// memory of the largest run is then taken at start-up rather than the
    /// first time a long memory arrives, hours later, where a soak would
    /// read it as growth; and the first recall does not pay for it. A server
    /// calls this; a CLI command, which embeds a query or two, does not.
    pub async fn preload(&self) -> Result<()> {
        let model = self.model().await?;
        let longest: Vec<u32> = vec![WARM_UP_TOKEN_ID; self.tokens_max.max(1)];
        let mut runs = tokio::task::JoinSet::new();
        for _ in 0..self.inferences_max.max(1) {
            let permit = Arc::clone(&self.inferences)
                .acquire_owned()
                .await
                .map_err(|_| Error::Embedding("minilm: the embedder is closed".into()))?;
            let (model, longest) = (Arc::clone(&model), longest.clone());
            runs.spawn_blocking(move || {
                let _permit = permit;
                model.run(&[&longest]).map(|_| ())
            });
        }
        while let Some(finished) = runs.join_next().await {
            finished.map_err(|e| {
                Error::Embedding(format!("minilm: the inference thread failed: {e}"))
            })??;
        }
        Ok(())
    }

    async fn model(&self) -> Result<Arc<MiniLmModel>> {
        self.model
            .get_or_try_init(|| async {
                let tokens_max = self.tokens_max;
                let model = tokio::task::spawn_blocking(move || MiniLmModel::load(tokens_max))
                    .await
                    .map_err(|e| {
                        Error::Embedding(format!("minilm: the loading thread failed: {e}"))
                    })??;
                let load_ms = u64::try_from(model.load_time().as_millis()).unwrap_or(u64::MAX);
                self.stats.load_ms.store(load_ms, Ordering::Relaxed);
                tracing::debug!(load_ms, "minilm model loaded");
                Ok(Arc::new(model))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn model_id(&self) -> &str {
        MINILM_MODEL_ID
    }

    fn dims(&self) -> usize {
        MINILM_DIMS
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(position) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::invalid(format!(
                "text {position} of the batch is empty or only whitespace: nothing to embed"
            )));
        }
        let model = self.model().await?;
        let owned: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        let tokenizing = Arc::clone(&model);
        let Tokenized { ids, truncated } = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
            tokenizing.tokenize(&texts)
        })
        .await
        .map_err(|e| Error::Embedding(format!("minilm: the tokenising thread failed: {e}")))??;
        let ids = Arc::new(ids);
        let mut runs = plan_runs(&ids).into_iter();
        let mut vectors = vec![Vec::new(); texts.len()];
        // A batch's runs go to blocking threads one per inference permit, at
        // most `parallel` in flight: a query waiting for a permit waits for
        // one run (tens of milliseconds), not for the whole batch.
        let parallel = self.inferences_max.min(runs.len()).max(1);
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while in_flight.len() < parallel {
                let Some(run) = runs.next() else { break };
                let permit = Arc::clone(&self.inferences)
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Embedding("minilm: the embedder is closed".into()))?;
                let (model, ids) = (Arc::clone(&model), Arc::clone(&ids));
                in_flight.spawn_blocking(move || {
                    let _permit = permit;
                    let tokens: Vec<&[u32]> = run.iter().map(|&i| ids[i].as_slice()).collect();
                    model.run(&tokens).map(|run_vectors| (run, run_vectors))
                });
            }
            let Some(finished) = in_flight.join_next().await else {
                break;
            };
            let (run, run_vectors) = finished.map_err(|e| {
                Error::Embedding(format!("minilm: the inference thread failed: {e}"))
            })??;
            for (vector, i) in run_vectors.into_iter().zip(run) {
                vectors[i] = vector;
            }
        }
        let embedded = Embedded { vectors, truncated };
        self.stats
            .texts_embedded
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        if embedded.truncated > 0 {
            self.stats
                .texts_truncated
                .fetch_add(embedded.truncated as u64, Ordering::Relaxed);
            tracing::debug!(
                truncated = embedded.truncated,
                tokens_max = self.tokens_max,
                "texts longer than embedding_tokens_max were embedded from their first tokens"
            );
        }
        Ok(embedded.vectors)
    }
}
