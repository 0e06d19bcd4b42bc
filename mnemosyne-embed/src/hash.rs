//! The `hash` embedder: offline, deterministic, lexical.
//!
//! Signed feature hashing ("the hashing trick") of three kinds of features of
//! the lower-cased text into a vector of `dims` floats, then L2
//! normalisation. Honest about what it is: two texts are near when they share
//! words, word pairs and spelling, not when they mean the same thing.
//!
//! # Features and weights
//!
//! | feature | example for `fix deadlock` | weight of each |
//! |---|---|---|
//! | word unigram | `fix`, `deadlock` | [`WORD_WEIGHT`] = 1.0 |
//! | word bigram | `fix deadlock` | [`BIGRAM_WEIGHT`] = 0.5 |
//! | character 3-, 4- and 5-grams of each word padded as `<word>` | `<de`, `dea`, ..., `ock>`, `<dea`, ..., `lock>` | [`CHAR_NGRAMS_WEIGHT`] / sqrt(n-grams of that word) |
//!
//! The character n-grams of one word share one budget: together they have an
//! L2 mass of [`CHAR_NGRAMS_WEIGHT`] = 1.25, a little more than the word
//! itself, whatever the word's length, so long words do not drown short ones.
//! A typo changes the word unigram completely but keeps most of the n-grams.
//! The unigram and n-grams of a few English function words ([`STOPWORDS`])
//! are scaled by [`STOPWORD_FACTOR`] = 0.25, so that sharing `the` does not
//! make two texts alike; bigrams keep their full weight.
//!
//! Measured at 384 dims: a one-letter typo or transposition of a word
//! (`deadlock` / `deadlcok`, `connection` / `conection`) has cosine 0.23 at
//! worst, 0.34 on average; unrelated words have mean |cosine| 0.03 (root mean
//! square 0.05, worst 0.22: hash collisions, the price of 384 dims). A
//! sentence with one typo stays at 0.8; `fix the deadlock in the writer
//! pool` / `deadlock fix for writer pool` is 0.88, against 0.07 for an
//! unrelated sentence.
//!
//! Each feature is hashed with XXH3 and a fixed seed per kind; the high bits
//! pick the dimension (multiply-shift) and the lowest bit the sign, so
//! collisions cancel out on average instead of piling up.
//!
//! # Words
//!
//! A word is a maximal run of alphanumeric characters (Unicode), so
//! `snake_case`, `foo::bar` and `a-b` split into their parts. A text with no
//! alphanumeric character at all (`->`, `???`) uses its whitespace-separated
//! runs of symbols as words instead, so symbol-only texts still differ.
//!
//! # Text with nothing to embed
//!
//! An empty or whitespace-only text (or, with odds of about 2^-64, one whose
//! features all cancel out) has no direction; a zero vector would break
//! cosine similarity. It gets a documented fixed unit vector instead: +1.0 in
//! the dimension of the reserved feature [`EMPTY_FEATURE`], 0 elsewhere. All
//! such texts are identical to each other and nearly orthogonal to any real
//! text. This never fails a batch (a reindex of many rows) because one row
//! happens to be blank.

use async_trait::async_trait;
use mnemosyne_core::{Embedder, Error, Result};

use crate::shared::{STABLE_SEED, l2_normalise, stable_hash};
use mnemosyne_core::EMBEDDING_DIMS_MAX;

/// Dimensions of the default hash embedder.
pub const HASH_DEFAULT_DIMS: usize = 384;

/// Name and version of the feature scheme, the prefix of
/// [`HashEmbedder::model_id`]. Bump it whenever a change (features, weights,
/// tokenisation, hash or seed) would change any vector, so that stored
/// vectors are detected as stale.
pub const HASH_SCHEME: &str = "hash-v1";

/// Weight of one word unigram.
pub const WORD_WEIGHT: f32 = 1.0;

/// Weight of one word bigram (two consecutive words).
pub const BIGRAM_WEIGHT: f32 = 0.5;

/// Total L2 mass of the character n-grams of one word, shared equally among
/// them.
pub const CHAR_NGRAMS_WEIGHT: f32 = 1.25;

/// Factor applied to the unigram and character n-grams of a
/// [`STOPWORDS`] word, so that `the` and `of` do not make unrelated texts
/// look alike.
pub const STOPWORD_FACTOR: f32 = 0.25;

/// The most frequent English function words (sorted); see
/// [`STOPWORD_FACTOR`]. Bigrams that contain them keep their full weight.
pub const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have",
    "if", "in", "into", "is", "it", "its", "of", "on", "or", "so", "that", "the", "then", "there",
    "these", "this", "to", "was", "we", "were", "when", "which", "will", "with",
];

/// Shortest character n-gram.
pub const CHAR_NGRAM_MIN: usize = 3;

/// Longest character n-gram.
pub const CHAR_NGRAM_MAX: usize = 5;

/// Reserved feature whose dimension carries the fixed vector of a text with
/// nothing to embed.
pub const EMPTY_FEATURE: &str = "\u{0}empty";

const WORD_SEED: u64 = STABLE_SEED ^ 0x01;
const BIGRAM_SEED: u64 = STABLE_SEED ^ 0x02;
const CHAR_SEED: u64 = STABLE_SEED ^ 0x03;
const EMPTY_SEED: u64 = STABLE_SEED ^ 0x04;

/// The default embedder: signed feature hashing of words, word pairs and
/// character n-grams (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct HashEmbedder {
    dims: usize,
    model_id: String,
}

impl HashEmbedder {
    /// A hash embedder of `dims` dimensions (1 to [`EMBEDDING_DIMS_MAX`]).
    pub fn new(dims: usize) -> Result<Self> {
        if dims == 0 || dims > EMBEDDING_DIMS_MAX {
            return Err(Error::invalid(format!(
                "hash embedder dims {dims} out of range: must be 1 to {EMBEDDING_DIMS_MAX}"
            )));
        }
        Ok(Self {
            dims,
            model_id: format!("{HASH_SCHEME}-{dims}"),
        })
    }

    /// The L2-normalised vector of one text (synchronous; the trait's
    /// [`Embedder::embed`] calls this for each text).
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dims];
        let lower = text.to_lowercase();
        let mut words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            words = lower.split_whitespace().collect();
        }

        let mut padded = String::new();
        let mut boundaries: Vec<usize> = Vec::new();
        let mut previous_word_hash: Option<u64> = None;
        for word in &words {
            let factor = if STOPWORDS.binary_search(word).is_ok() {
                STOPWORD_FACTOR
            } else {
                1.0
            };
            let word_hash = stable_hash(word.as_bytes(), WORD_SEED);
            self.add(&mut vector, word_hash, factor * WORD_WEIGHT);
            if let Some(previous) = previous_word_hash {
                // The pair hash is derived from both word hashes, so no
                // "w1 w2" string is built.
                let pair_hash = stable_hash(&word_hash.to_le_bytes(), BIGRAM_SEED ^ previous);
                self.add(&mut vector, pair_hash, BIGRAM_WEIGHT);
            }
            previous_word_hash = Some(word_hash);
            self.add_char_ngrams(&mut vector, word, factor, &mut padded, &mut boundaries);
        }

        if l2_normalise(&mut vector).is_none() {
            vector.fill(0.0);
            let index = self.index(stable_hash(EMPTY_FEATURE.as_bytes(), EMPTY_SEED));
            vector[index] = 1.0;
        }
        vector
    }

    /// Adds the character n-grams of `<word>`, sharing [`CHAR_NGRAMS_WEIGHT`].
    fn add_char_ngrams(
        &self,
        vector: &mut [f32],
        word: &str,
        factor: f32,
        padded: &mut String,
        boundaries: &mut Vec<usize>,
    ) {
        padded.clear();
        padded.push('<');
        padded.push_str(word);
        padded.push('>');
        boundaries.clear();
        boundaries.extend(padded.char_indices().map(|(i, _)| i));
        boundaries.push(padded.len());
        let chars = boundaries.len() - 1;

        let count: usize = (CHAR_NGRAM_MIN..=CHAR_NGRAM_MAX)
            .map(|n| (chars + 1).saturating_sub(n))
            .sum();
        if count == 0 {
            return;
        }
        let weight = factor * CHAR_NGRAMS_WEIGHT / (count as f32).sqrt();
        for n in CHAR_NGRAM_MIN..=CHAR_NGRAM_MAX {
            for start in 0..(chars + 1).saturating_sub(n) {
                let gram = &padded[boundaries[start]..boundaries[start + n]];
                self.add(vector, stable_hash(gram.as_bytes(), CHAR_SEED), weight);
            }
        }
    }

    /// Adds `weight` with the hash's sign to the hash's dimension.
    fn add(&self, vector: &mut [f32], hash: u64, weight: f32) {
        let sign = if hash & 1 == 0 { 1.0 } else { -1.0 };
        vector[self.index(hash)] += sign * weight;
    }

    /// Dimension of a hash: its high bits scaled into `0..dims`.
    fn index(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.dims as u128) >> 64) as usize
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self {
            dims: HASH_DEFAULT_DIMS,
            model_id: format!("{HASH_SCHEME}-{HASH_DEFAULT_DIMS}"),
        }
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|text| self.embed_text(text)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn sim(e: &HashEmbedder, a: &str, b: &str) -> f32 {
        cosine(&e.embed_text(a), &e.embed_text(b))
    }

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn model_id_names_scheme_and_dims() {
        assert_eq!(HashEmbedder::default().model_id(), "hash-v1-384");
        assert_eq!(HashEmbedder::new(128).unwrap().model_id(), "hash-v1-128");
        assert_eq!(HashEmbedder::new(128).unwrap().dims(), 128);
    }

    #[test]
    fn dims_out_of_range_are_refused() {
        let err = HashEmbedder::new(0).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("dims 0"), "{err}");
        assert!(HashEmbedder::new(EMBEDDING_DIMS_MAX + 1).is_err());
        HashEmbedder::new(EMBEDDING_DIMS_MAX).unwrap();
    }

    #[test]
    fn vectors_are_deterministic_and_pinned() {
        let e = HashEmbedder::default();
        let a = e.embed_text("Fix the deadlock in the writer pool");
        let b = HashEmbedder::default().embed_text("Fix the deadlock in the writer pool");
        assert_eq!(a, b);
        // Pinned across runs, machines and versions of the hash crate: if
        // this fails, the scheme changed and HASH_SCHEME must be bumped.
        let v = e.embed_text("deadlock");
        let nonzero: Vec<(usize, f32)> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, x)| (i, *x))
            .take(3)
            .collect();
        let pinned = [(39, 0.181_249_86), (44, -0.181_249_86), (68, 0.181_249_86)];
        for ((i, x), (pi, px)) in nonzero.iter().zip(pinned) {
            assert_eq!(*i, pi, "{nonzero:?}");
            assert!((x - px).abs() < 1e-6, "{nonzero:?}");
        }
    }

    #[tokio::test]
    async fn embed_returns_one_unit_vector_per_text_in_order() {
        let e = HashEmbedder::new(256).unwrap();
        let texts = ["alpha beta", "gamma", "Ünïcödé wörds ß", "x"];
        let vectors = e.embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), texts.len());
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector.len(), 256);
            assert!(
                (norm(vector) - 1.0).abs() < 1e-5,
                "{text}: {}",
                norm(vector)
            );
            assert_eq!(vector, &e.embed_text(text));
        }
        assert!(e.embed(&[]).await.unwrap().is_empty());
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let e = HashEmbedder::default();
        let s = sim(&e, "Fix the Deadlock!", "fix the deadlock");
        assert!((s - 1.0).abs() < 1e-5, "{s}");
    }

    #[test]
    fn a_typo_is_far_nearer_than_an_unrelated_word() {
        let e = HashEmbedder::default();
        let typo = sim(&e, "deadlock", "deadlcok");
        let unrelated = sim(&e, "deadlock", "banana");
        assert!(typo > 0.2, "typo similarity {typo}");
        assert!(unrelated.abs() < 0.1, "unrelated similarity {unrelated}");
        assert!(typo > unrelated + 0.15, "{typo} vs {unrelated}");

        let typo = sim(
            &e,
            "writer pool deadlock on shutdown",
            "writer pool deadlcok on shutdown",
        );
        assert!(typo > 0.7, "one typo in a sentence {typo}");
    }

    #[test]
    fn typos_stand_well_above_the_noise_of_unrelated_words() {
        let e = HashEmbedder::default();
        let typos = [
            ("deadlock", "deadlcok"),
            ("timeout", "timeuot"),
            ("connection", "conection"),
            ("semaphore", "semaphroe"),
            ("migration", "migraiton"),
            ("embedding", "embeding"),
            ("heartbeat", "hearbteat"),
            ("backpressure", "backpresure"),
            ("namespace", "namspace"),
            ("transaction", "transacton"),
            ("compaction", "compation"),
            ("supervisor", "supervsior"),
        ];
        let typo: Vec<f32> = typos.iter().map(|(a, b)| sim(&e, a, b)).collect();
        let typo_mean = typo.iter().sum::<f32>() / typo.len() as f32;
        let typo_min = typo.iter().copied().fold(f32::MAX, f32::min);

        let words = [
            "apple",
            "river",
            "kernel",
            "mutex",
            "garden",
            "socket",
            "violin",
            "parser",
            "yellow",
            "thread",
            "cloud",
            "bridge",
            "deadlock",
            "timeout",
            "connection",
            "semaphore",
            "migration",
            "embedding",
        ];
        let mut unrelated = Vec::new();
        for (i, a) in words.iter().enumerate() {
            for b in &words[i + 1..] {
                unrelated.push(sim(&e, a, b));
            }
        }
        let rms = (unrelated.iter().map(|s| s * s).sum::<f32>() / unrelated.len() as f32).sqrt();
        assert!(typo_mean > 0.3, "typo mean {typo_mean}");
        assert!(typo_min > 0.2, "typo min {typo_min}");
        assert!(rms < 0.07, "unrelated rms {rms}");
        assert!(typo_mean > 5.0 * rms, "{typo_mean} vs noise {rms}");
    }

    #[test]
    fn function_words_do_not_make_texts_alike() {
        let e = HashEmbedder::default();
        let query = "fix the deadlock in the writer pool";
        let paraphrase = sim(&e, query, "deadlock fix for writer pool");
        let unrelated = sim(&e, query, "render the chart as an svg image");
        assert!(paraphrase > 0.8, "{paraphrase}");
        assert!(unrelated < 0.15, "{unrelated}");
        assert!(
            STOPWORDS.windows(2).all(|w| w[0] < w[1]),
            "STOPWORDS must stay sorted"
        );
    }

    #[test]
    fn shared_words_give_higher_similarity() {
        let e = HashEmbedder::default();
        let query = "sqlite busy timeout";
        let close = sim(&e, query, "raise the sqlite busy timeout to five seconds");
        let some = sim(&e, query, "the sqlite file lives in the data dir");
        let none = sim(&e, query, "render the chart as an svg image");
        assert!(close > some, "{close} <= {some}");
        assert!(some > none, "{some} <= {none}");
        assert!(none.abs() < 0.1, "{none}");
    }

    #[test]
    fn word_order_matters_through_bigrams_only_a_little() {
        let e = HashEmbedder::default();
        let swapped = sim(&e, "cache eviction policy", "policy eviction cache");
        assert!(
            swapped < 0.999,
            "bigrams should tell the order apart: {swapped}"
        );
        assert!(swapped > 0.8, "same words should stay near: {swapped}");
    }

    #[test]
    fn blank_text_gets_the_fixed_unit_vector() {
        let e = HashEmbedder::default();
        let empty = e.embed_text("");
        assert!((norm(&empty) - 1.0).abs() < 1e-6);
        assert_eq!(empty.iter().filter(|x| **x != 0.0).count(), 1);
        assert_eq!(e.embed_text("  \n\t "), empty);
        assert!(sim(&e, "", "deadlock").abs() < 0.2);
    }

    #[test]
    fn symbol_only_text_is_embedded_from_its_symbols() {
        let e = HashEmbedder::default();
        let arrow = e.embed_text("->");
        assert!((norm(&arrow) - 1.0).abs() < 1e-5);
        assert_ne!(arrow, e.embed_text(""));
        assert_ne!(arrow, e.embed_text("=>"));
        assert_eq!(arrow, e.embed_text(" -> "));
    }

    #[test]
    fn long_text_stays_finite_and_normalised() {
        let e = HashEmbedder::default();
        let text = "lorem ipsum dolor sit amet ".repeat(2_000) + &"x".repeat(60_000);
        let v = e.embed_text(&text);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((norm(&v) - 1.0).abs() < 1e-4);
    }
}
