//! The embedding cache: a moka cache in front of any [`Embedder`], weighed
//! in bytes and capped at `embedding_cache_bytes_max`.
//!
//! Keys are (hash of the model id, hash of the text), both 64-bit XXH3 with
//! a fixed seed; the text itself is not kept. Values are the vectors. Each
//! entry weighs its vector's bytes plus [`CACHE_ENTRY_OVERHEAD_BYTES`] for
//! the key, the value handle and moka's bookkeeping, so the cap bounds the
//! memory the cache really holds, not its entry count.
//!
//! Eviction is moka's TinyLFU (set explicitly): a text seen once (a new
//! memory) does not push out texts asked for often (repeated recall
//! queries). After each batch of inserts the cache runs its pending
//! maintenance, so the weight is back under the cap before `embed` returns;
//! while a call is inserting, the cache may hold at most that one batch
//! more.
//!
//! A cap of 0 turns caching off: every text goes to the inner embedder.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use mnemosyne_core::{Embedder, Error, Result};
use moka::policy::EvictionPolicy;

use crate::shared::{STABLE_SEED, plural, stable_hash};

/// Bytes added to each entry's weight besides its vector: the key (16), the
/// value's `Arc` pointer and counts (32) and moka's per-entry bookkeeping
/// (hash table slot, deque nodes, frequency and timestamps; about 100),
/// rounded up.
pub const CACHE_ENTRY_OVERHEAD_BYTES: u32 = 160;

const MODEL_SEED: u64 = STABLE_SEED ^ 0x10;
const TEXT_SEED: u64 = STABLE_SEED ^ 0x11;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    model: u64,
    text: u64,
}

/// An [`Embedder`] that remembers the vectors of `inner` in a byte-capped
/// moka cache; only the texts it has not seen reach `inner`, in one call,
/// each distinct text once. Its model id and dims are those of `inner`.
pub struct CachedEmbedder<E: ?Sized = dyn Embedder> {
    inner: Arc<E>,
    model: u64,
    capacity_bytes: u64,
    cache: moka::sync::Cache<CacheKey, Arc<[f32]>>,
}

impl<E: Embedder + ?Sized> CachedEmbedder<E> {
    /// Wraps `inner` in a cache of at most `capacity_bytes` bytes
    /// (`embedding_cache_bytes_max`; 0 turns caching off).
    pub fn new(inner: Arc<E>, capacity_bytes: u64) -> Self {
        let model = stable_hash(inner.model_id().as_bytes(), MODEL_SEED);
        let cache = moka::sync::Cache::builder()
            .name("embedding_cache")
            .max_capacity(capacity_bytes)
            .weigher(|_key: &CacheKey, vector: &Arc<[f32]>| entry_weight(vector.len()))
            .eviction_policy(EvictionPolicy::tiny_lfu())
            .build();
        Self {
            inner,
            model,
            capacity_bytes,
            cache,
        }
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &Arc<E> {
        &self.inner
    }

    /// The cap on [`CachedEmbedder::weighted_bytes`], in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Vectors held now (after running pending maintenance, so it is current).
    pub fn entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Weight of the vectors held now, in bytes (after running pending
    /// maintenance); never above [`CachedEmbedder::capacity_bytes`].
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Drops every cached vector.
    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    fn key(&self, text: &str) -> CacheKey {
        CacheKey {
            model: self.model,
            text: stable_hash(text.as_bytes(), TEXT_SEED),
        }
    }

    fn error(&self, what: fmt::Arguments<'_>) -> Error {
        Error::Embedding(format!("embedder {} {what}", self.inner.model_id()))
    }
}

/// Weight of one entry holding a vector of `dims` floats, in bytes.
fn entry_weight(dims: usize) -> u32 {
    let vector_bytes = dims.saturating_mul(std::mem::size_of::<f32>());
    u32::try_from(vector_bytes)
        .unwrap_or(u32::MAX)
        .saturating_add(CACHE_ENTRY_OVERHEAD_BYTES)
}

impl<E: ?Sized> fmt::Debug for CachedEmbedder<E>
where
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedEmbedder")
            .field("inner", &self.inner)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("entries", &self.cache.entry_count())
            .field("weighted_bytes", &self.cache.weighted_size())
            .finish()
    }
}

#[async_trait]
impl<E: Embedder + ?Sized> Embedder for CachedEmbedder<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dims(&self) -> usize {
        self.inner.dims()
    }

    async fn embed_for_storage(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed_for_storage(texts).await
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let keys: Vec<CacheKey> = texts.iter().map(|text| self.key(text)).collect();
        let mut found: Vec<Option<Arc<[f32]>>> = keys.iter().map(|k| self.cache.get(k)).collect();

        // Distinct missing texts, in order of first appearance.
        let mut miss_slot: HashMap<CacheKey, usize> = HashMap::new();
        let mut miss_texts: Vec<&str> = Vec::new();
        for ((key, text), hit) in keys.iter().zip(texts).zip(&found) {
            if hit.is_none() && !miss_slot.contains_key(key) {
                miss_slot.insert(*key, miss_texts.len());
                miss_texts.push(text);
            }
        }

        if !miss_texts.is_empty() {
            let vectors = self.inner.embed(&miss_texts).await?;
            if vectors.len() != miss_texts.len() {
                return Err(self.error(format_args!(
                    "returned {} {} for {} {}",
                    vectors.len(),
                    plural(vectors.len(), "vector", "vectors"),
                    miss_texts.len(),
                    plural(miss_texts.len(), "text", "texts"),
                )));
            }
            let dims = self.inner.dims();
            let mut fresh: Vec<Arc<[f32]>> = Vec::with_capacity(vectors.len());
            for vector in vectors {
                if vector.len() != dims {
                    return Err(self.error(format_args!(
                        "returned a vector of {} dimensions, expected {dims}",
                        vector.len()
                    )));
                }
                fresh.push(Arc::from(vector));
            }
            for (key, slot) in &miss_slot {
                self.cache.insert(*key, Arc::clone(&fresh[*slot]));
            }
            // Evict now, so the weight is under the cap when we return.
            self.cache.run_pending_tasks();
            for (key, hit) in keys.iter().zip(found.iter_mut()) {
                if hit.is_none() {
                    *hit = Some(Arc::clone(&fresh[miss_slot[key]]));
                }
            }
        }

        let vectors: Vec<Vec<f32>> = found
            .into_iter()
            .map(|vector| vector.map(|v| v.to_vec()).unwrap_or_default())
            .collect();
        debug_assert_eq!(vectors.len(), texts.len());
        debug_assert!(vectors.iter().all(|v| v.len() == self.inner.dims()));
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::HashEmbedder;

    /// Counts the calls and texts that reach it; embeds like the hash embedder.
    #[derive(Debug)]
    struct Counting {
        inner: HashEmbedder,
        calls: AtomicUsize,
        batches: Mutex<Vec<Vec<String>>>,
    }

    impl Counting {
        fn new(dims: usize) -> Arc<Self> {
            Arc::new(Self {
                inner: HashEmbedder::new(dims).unwrap(),
                calls: AtomicUsize::new(0),
                batches: Mutex::new(Vec::new()),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn last_batch(&self) -> Vec<String> {
            self.batches
                .lock()
                .unwrap()
                .last()
                .cloned()
                .unwrap_or_default()
        }
    }

    #[async_trait]
    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }

        fn dims(&self) -> usize {
            self.inner.dims()
        }

        async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.batches
                .lock()
                .unwrap()
                .push(texts.iter().map(|t| t.to_string()).collect());
            self.inner.embed(texts).await
        }
    }

    /// Returns a fixed, wrong answer.
    #[derive(Debug)]
    struct Broken {
        vectors: Vec<Vec<f32>>,
    }

    #[async_trait]
    impl Embedder for Broken {
        fn model_id(&self) -> &str {
            "broken"
        }

        fn dims(&self) -> usize {
            2
        }

        async fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            Ok(self.vectors.clone())
        }
    }

    #[test]
    fn weight_counts_vector_bytes_and_overhead() {
        assert_eq!(entry_weight(384), 384 * 4 + CACHE_ENTRY_OVERHEAD_BYTES);
        assert_eq!(entry_weight(usize::MAX), u32::MAX);
    }

    #[tokio::test]
    async fn texts_embedded_for_storage_pass_the_cache_by() {
        let inner = Counting::new(64);
        let cached = CachedEmbedder::new(inner.clone(), 1024 * 1024);
        cached.embed_for_storage(&["alpha", "beta"]).await.unwrap();
        cached.embed_for_storage(&["alpha"]).await.unwrap();
        assert_eq!(inner.calls(), 2);
        assert_eq!(cached.weighted_bytes(), 0);
        // A query of the same text is then a miss, and cached.
        cached.embed(&["alpha"]).await.unwrap();
        cached.embed(&["alpha"]).await.unwrap();
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test]
    async fn hits_do_not_call_the_inner_embedder() {
        let inner = Counting::new(64);
        let cached = CachedEmbedder::new(inner.clone(), 1024 * 1024);
        let first = cached.embed(&["alpha", "beta"]).await.unwrap();
        assert_eq!(inner.calls(), 1);
        let again = cached.embed(&["beta", "alpha"]).await.unwrap();
        assert_eq!(inner.calls(), 1, "all hits: no call");
        assert_eq!(again, vec![first[1].clone(), first[0].clone()]);
        assert_eq!(cached.entries(), 2);
        assert_eq!(cached.weighted_bytes(), 2 * u64::from(entry_weight(64)));

        // Mixed: only the miss goes to the inner embedder.
        let mixed = cached.embed(&["alpha", "gamma", "beta"]).await.unwrap();
        assert_eq!(inner.calls(), 2);
        assert_eq!(inner.last_batch(), vec!["gamma"]);
        assert_eq!(mixed[0], first[0]);
        assert_eq!(mixed[2], first[1]);
        assert_eq!(mixed[1], inner.inner.embed_text("gamma"));
        assert_eq!(cached.model_id(), inner.model_id());
        assert_eq!(cached.dims(), 64);

        assert!(cached.embed(&[]).await.unwrap().is_empty());
        assert_eq!(inner.calls(), 2, "nothing to embed: no call");
    }

    #[tokio::test]
    async fn duplicates_in_one_batch_are_embedded_once_in_order() {
        let inner = Counting::new(32);
        let cached = CachedEmbedder::new(inner.clone(), 1024 * 1024);
        let texts = ["b", "a", "b", "c", "a", "b"];
        let vectors = cached.embed(&texts).await.unwrap();
        assert_eq!(inner.calls(), 1);
        assert_eq!(inner.last_batch(), vec!["b", "a", "c"]);
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector, &inner.inner.embed_text(text), "{text}");
        }
        assert_eq!(cached.entries(), 3);
    }

    #[tokio::test]
    async fn weight_never_passes_the_cap_while_ten_times_it_flows_through() {
        let dims = 96;
        let per_entry = u64::from(entry_weight(dims));
        let cap = 50 * per_entry + per_entry / 2; // room for 50 entries
        let inner = Counting::new(dims);
        let cached = CachedEmbedder::new(inner.clone(), cap);

        let batch = 7;
        let total_entries = (10 * cap / per_entry) as usize + 1;
        let mut inserted_bytes = 0u64;
        let mut peak = 0u64;
        let mut n = 0usize;
        while n < total_entries {
            let texts: Vec<String> = (n..n + batch)
                .map(|i| format!("memory number {i}"))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = cached.embed(&refs).await.unwrap();
            assert_eq!(vectors.len(), batch);
            inserted_bytes += batch as u64 * per_entry;
            n += batch;
            // Read the raw moka gauge without running maintenance: embed
            // already evicted before returning.
            let weighed = cached.cache.weighted_size();
            assert!(
                weighed <= cap,
                "weighted {weighed} > cap {cap} after {n} texts"
            );
            assert_eq!(cached.weighted_bytes(), weighed, "nothing left pending");
            assert!(cached.entries() * per_entry <= cap);
            peak = peak.max(weighed);
        }
        assert!(inserted_bytes >= 10 * cap, "{inserted_bytes} < 10 x {cap}");
        assert!(peak > cap / 2, "the cache was used: peak {peak}");
        assert_eq!(inner.calls(), n.div_ceil(batch));
    }

    #[tokio::test]
    async fn a_cap_of_zero_turns_caching_off() {
        let inner = Counting::new(16);
        let cached = CachedEmbedder::new(inner.clone(), 0);
        cached.embed(&["a"]).await.unwrap();
        cached.embed(&["a"]).await.unwrap();
        assert_eq!(inner.calls(), 2);
        assert_eq!(cached.entries(), 0);
        assert_eq!(cached.weighted_bytes(), 0);
    }

    #[tokio::test]
    async fn model_is_part_of_the_key() {
        let a = CachedEmbedder::new(Arc::new(HashEmbedder::new(8).unwrap()), 1 << 20);
        let b = CachedEmbedder::new(Arc::new(HashEmbedder::new(16).unwrap()), 1 << 20);
        assert_ne!(a.key("x"), b.key("x"));
        assert_eq!(a.key("x"), a.key("x"));
        assert_ne!(a.key("x"), a.key("y"));
    }

    #[tokio::test]
    async fn clear_drops_everything() {
        let inner = Counting::new(16);
        let cached = CachedEmbedder::new(inner.clone(), 1 << 20);
        cached.embed(&["a", "b"]).await.unwrap();
        assert_eq!(cached.entries(), 2);
        cached.clear();
        assert_eq!(cached.entries(), 0);
        assert_eq!(cached.weighted_bytes(), 0);
        cached.embed(&["a"]).await.unwrap();
        assert_eq!(inner.calls(), 2);
    }

    #[tokio::test]
    async fn a_wrong_inner_answer_is_an_error_and_is_not_cached() {
        let short = CachedEmbedder::new(
            Arc::new(Broken {
                vectors: vec![vec![1.0, 0.0]],
            }),
            1 << 20,
        );
        let err = short.embed(&["a", "b"]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "embedding error: embedder broken returned 1 vector for 2 texts"
        );
        let wide = CachedEmbedder::new(
            Arc::new(Broken {
                vectors: vec![vec![1.0, 0.0, 0.0]],
            }),
            1 << 20,
        );
        let err = wide.embed(&["a"]).await.unwrap_err();
        assert!(
            err.to_string().contains("3 dimensions, expected 2"),
            "{err}"
        );
        assert_eq!(short.entries() + wide.entries(), 0);
    }

    #[tokio::test]
    async fn works_over_a_trait_object() {
        let inner: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(8).unwrap());
        let cached: CachedEmbedder = CachedEmbedder::new(inner, 1 << 20);
        let as_dyn: Arc<dyn Embedder> = Arc::new(cached);
        assert_eq!(as_dyn.embed(&["a"]).await.unwrap()[0].len(), 8);
        assert!(format!("{as_dyn:?}").contains("CachedEmbedder"));
    }
}
