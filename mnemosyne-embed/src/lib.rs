//! Embedders for Mnemosyne (they depend on `mnemosyne-core` only): the
//! local sentence model [`MiniLmEmbedder`] (the default), the offline
//! [`HashEmbedder`], the OpenAI-compatible [`HttpEmbedder`], and the
//! byte-capped [`CachedEmbedder`] that wraps any of them.
//!
//! [`build_embedder`] turns the `[embedder]` table of the config file
//! ([`EmbedderConfig`]) and the [`Limits`] into a ready, cached embedder.
//! Nothing here depends on a storage backend.

pub mod cache;
pub mod config;
pub mod hash;
pub mod http;
pub mod minilm;
mod shared;

use std::sync::Arc;

pub use cache::{CACHE_ENTRY_OVERHEAD_BYTES, CachedEmbedder};
pub use config::{DEFAULT_API_KEY_ENV, EmbedderConfig};
pub use hash::{HASH_DEFAULT_DIMS, HASH_SCHEME, HashEmbedder};
pub use http::{HttpEmbedder, HttpEmbedderOptions};
pub use minilm::{
    MINILM_DIMS, MINILM_MODEL_ID, MiniLmEmbedder, MiniLmModel, MiniLmStats, RUN_PADDED_TOKENS_MAX,
    Tokenized, plan_runs,
};
pub use mnemosyne_core::EMBEDDING_DIMS_MAX;
use mnemosyne_core::{Embedder, Limits, Result};

/// Builds the embedder `config` describes, wrapped in a [`CachedEmbedder`]
/// of `limits.embedding_cache_bytes_max` bytes.
///
/// For `http`, the API key is read here from the environment variable the
/// config names (see [`EmbedderConfig::Http`]).
pub fn build_embedder(config: &EmbedderConfig, limits: &Limits) -> Result<Arc<dyn Embedder>> {
    Ok(build_cached_embedder(config, limits)?)
}

/// Like [`build_embedder`], but keeps the concrete [`CachedEmbedder`] type so
/// that diagnostics can read [`CachedEmbedder::entries`] and
/// [`CachedEmbedder::weighted_bytes`]. It coerces to `Arc<dyn Embedder>`.
pub fn build_cached_embedder(
    config: &EmbedderConfig,
    limits: &Limits,
) -> Result<Arc<CachedEmbedder>> {
    Ok(build_embedder_parts(config, limits)?.cache)
}

/// A built embedder: the cache in front of it, and the local model when
/// that is the one in use (for [`MiniLmEmbedder::preload`] and its stats).
#[derive(Debug, Clone)]
pub struct EmbedderParts {
    /// The embedder to use, behind its byte-capped cache.
    pub cache: Arc<CachedEmbedder>,
    /// The local model, when `config` is `minilm`.
    pub minilm: Option<Arc<MiniLmEmbedder>>,
}

/// Builds the embedder `config` describes and hands back its parts.
pub fn build_embedder_parts(config: &EmbedderConfig, limits: &Limits) -> Result<EmbedderParts> {
    let (inner, minilm) = match config {
        EmbedderConfig::Minilm {} => {
            let minilm = Arc::new(MiniLmEmbedder::new(limits));
            (minilm.clone() as Arc<dyn Embedder>, Some(minilm))
        }
        other => (
            build_uncached(other, limits, |name| std::env::var(name).ok())?,
            None,
        ),
    };
    Ok(EmbedderParts {
        cache: Arc::new(CachedEmbedder::new(inner, limits.embedding_cache_bytes_max)),
        minilm,
    })
}

/// The embedder `config` describes, without a cache; `env` looks up
/// environment variables (a parameter so that tests need not set any).
fn build_uncached(
    config: &EmbedderConfig,
    limits: &Limits,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Embedder>> {
    config.validate()?;
    match config {
        EmbedderConfig::Minilm {} => Ok(Arc::new(MiniLmEmbedder::new(limits))),
        EmbedderConfig::Hash { dims } => Ok(Arc::new(HashEmbedder::new(*dims)?)),
        EmbedderConfig::Http {
            base_url,
            model,
            dims,
            api_key_env,
        } => {
            let mut options = HttpEmbedderOptions::new(base_url, model, *dims, limits);
            options.api_key = config::resolve_api_key(api_key_env.as_deref(), env)?;
            Ok(Arc::new(HttpEmbedder::new(options)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_embedder_wraps_the_configured_embedder_in_the_cache() {
        let limits = Limits::default();
        let embedder = build_cached_embedder(&EmbedderConfig::default(), &limits).unwrap();
        assert_eq!(
            embedder.model_id(),
            MINILM_MODEL_ID,
            "minilm is the default"
        );
        assert_eq!(embedder.dims(), 384);
        let hash = EmbedderConfig::Hash { dims: 384 };
        let embedder = build_cached_embedder(&hash, &limits).unwrap();
        assert_eq!(embedder.model_id(), "hash-v1-384");
        assert_eq!(embedder.dims(), 384);
        assert_eq!(embedder.capacity_bytes(), limits.embedding_cache_bytes_max);

        let http = EmbedderConfig::Http {
            base_url: "http://127.0.0.1:11434".into(),
            model: "nomic-embed-text".into(),
            dims: 768,
            api_key_env: None,
        };
        let embedder = build_uncached(&http, &limits, |_| None).unwrap();
        assert_eq!(embedder.model_id(), "http:nomic-embed-text@768");
        assert_eq!(embedder.dims(), 768);
    }

    #[test]
    fn build_embedder_refuses_an_api_key_variable_that_is_not_set() {
        let http = EmbedderConfig::Http {
            base_url: "https://api.example.invalid".into(),
            model: "text-embedding-3-small".into(),
            dims: 1536,
            api_key_env: Some("MY_EMBEDDING_KEY".into()),
        };
        let err = build_uncached(&http, &Limits::default(), |_| None).unwrap_err();
        assert!(err.to_string().contains("MY_EMBEDDING_KEY"), "{err}");
        build_uncached(&http, &Limits::default(), |name| {
            (name == "MY_EMBEDDING_KEY").then(|| "sk-test".to_owned())
        })
        .unwrap();
    }
}
