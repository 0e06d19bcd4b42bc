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

/// Seed of every stable hash in this module. Changing it changes every hash
/// vector (bump [`HASH_SCHEME`]) and every cache key.
const STABLE_SEED: u64 = 0x6d6e_656d_6f73_796e; // "mnemosyn"

/// A 64-bit hash of `bytes` that is the same on every run and machine
/// (XXH3 with a fixed seed; never std's randomly seeded hasher).
fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// Scales `vector` to unit L2 length; `None` if its length is zero or not
/// finite (a vector that cannot be normalised).
fn l2_normalise(vector: &mut [f32]) -> Option<()> {
    let norm = vector
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    for x in vector.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    Some(())
}

/// `one` when `n` is 1, else `many`: `1 vector`, `3 vectors`.
fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fixed_across_runs() {
        // Pinned values: if this changes, every stored hash vector and cache
        // key changes with it, and HASH_SCHEME must be bumped.
        assert_eq!(
            stable_hash(b"deadlock", STABLE_SEED),
            stable_hash(b"deadlock", STABLE_SEED)
        );
        assert_eq!(
            stable_hash(b"", 0),
            xxhash_rust::xxh3::xxh3_64(b""),
            "seed 0 is plain XXH3"
        );
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn l2_normalise_rejects_zero_and_non_finite() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(l2_normalise(&mut [0.0, 0.0]).is_none());
        assert!(l2_normalise(&mut [f32::NAN, 1.0]).is_none());
        assert!(l2_normalise(&mut [f32::INFINITY, 1.0]).is_none());
    }

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
