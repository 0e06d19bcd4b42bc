//! The standard benchmark workload, seeded and deterministic.
//!
//! Memory text is 30 to 80 words drawn from a Zipf distribution (exponent 1.1)
//! over 20 000 synthetic words with a few hundred real technical terms mixed in
//! at spread-out ranks. Queries are 2 or 3 words of a generated memory: a fifth
//! contain a frequent word (top 1% of the vocabulary), a tenth carry a
//! namespace filter, a tenth have a typo in one word.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::{Importance, Link, LinkType, Memory, MemoryId, MemoryType, Namespace};

/// Synthetic words in the vocabulary (technical terms come on top).
pub const SYNTHETIC_WORDS: usize = 20_000;
/// Zipf exponent of word frequencies.
pub const ZIPF_EXPONENT: f64 = 1.1;
/// Generated memories remembered as query sources (bounded reservoir).
const QUERY_SOURCES_MAX: usize = 10_000;
/// Ids remembered as link targets (bounded ring).
const LINK_TARGETS_MAX: usize = 10_000;

const TECH_TERMS: &str = "sqlite tokio deadlock migration mutex async await future runtime thread \
pool connection transaction rollback commit index query planner btree wal checkpoint vacuum \
fts5 bm25 embedding vector cosine similarity cache eviction lru moka latency throughput \
backpressure queue lease heartbeat supervisor cancellation shutdown signal sigterm sigkill \
oom memory leak allocator jemalloc rss heap stack overflow panic unwrap result error \
thiserror anyhow serde json toml yaml schema protobuf grpc http axum hyper tower middleware \
router handler endpoint websocket sse stream buffer channel broadcast mpsc oneshot semaphore \
rwlock atomic ordering fence borrow lifetime trait generic macro closure iterator vec hashmap \
btreemap string utf8 bytes slice pointer unsafe ffi binding crate cargo workspace feature \
clippy rustfmt test fixture mock proptest fuzz benchmark criterion flamegraph profiler perf \
tracing span log metric gauge counter histogram prometheus grafana alert threshold cgroup \
docker kubernetes container deploy rollout canary config env secret token auth oauth jwt \
tls certificate encryption hash sha256 uuid timestamp timezone chrono duration timeout retry \
backoff jitter idempotent replica leader follower raft consensus partition shard replication \
crdt automerge merge conflict diff patch rebase branch git commit hook lint ci pipeline \
artifact release version semver changelog dependency upgrade regression bisect bug fix \
refactor module function struct enum variant match pattern option none some parser lexer \
token grammar ast compiler linker symbol debug gdb valgrind sanitizer race condvar";

/// The three projects of the workload.
pub const PROJECTS: [&str; 3] = ["atlas", "borealis", "cinder"];
/// Sessions under each project.
pub const SESSIONS_PER_PROJECT: usize = 3;

/// A recall query of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadQuery {
    /// The query text.
    pub text: String,
    /// A namespace filter (a tenth of the queries).
    pub namespace: Option<Namespace>,
    /// Contains a word from the top 1% of the vocabulary (these make the p99).
    pub frequent: bool,
    /// One word has a typo.
    pub typo: bool,
}

/// Seeded generator of memories and queries.
#[derive(Debug)]
pub struct Workload {
    rng: StdRng,
    vocabulary: Vec<String>,
    zipf: Zipf<f64>,
    frequent_rank_max: usize,
    namespaces: Vec<Namespace>,
    tags: Vec<String>,
    query_sources: Vec<(Vec<u32>, Namespace)>,
    generated: u64,
    link_targets: Vec<MemoryId>,
}

impl Workload {
    /// A generator; the same seed gives the same memories and queries.
    pub fn new(seed: u64) -> Self {
        let vocabulary = vocabulary();
        let zipf =
            Zipf::new(vocabulary.len() as f64, ZIPF_EXPONENT).expect("valid zipf parameters");
        let mut namespaces = vec![Namespace::Global];
        for project in PROJECTS {
            namespaces.push(Namespace::Project(project.to_owned()));
            for session in 1..=SESSIONS_PER_PROJECT {
                namespaces.push(Namespace::Session {
                    project: project.to_owned(),
                    session: format!("s{session}"),
                });
            }
        }
        let tags = [
            "bug", "perf", "api", "storage", "ops", "design", "security", "test", "ui", "docs",
        ]
        .map(str::to_owned)
        .to_vec();
        Self {
            rng: StdRng::seed_from_u64(seed),
            frequent_rank_max: vocabulary.len() / 100,
            vocabulary,
            zipf,
            namespaces,
            tags,
            query_sources: Vec::new(),
            generated: 0,
            link_targets: Vec::new(),
        }
    }

    /// Number of words in the vocabulary.
    pub fn vocabulary_len(&self) -> usize {
        self.vocabulary.len()
    }

    /// The vocabulary, most frequent first.
    pub fn vocabulary(&self) -> &[String] {
        &self.vocabulary
    }

    fn word_rank(&mut self) -> u32 {
        (self.zipf.sample(&mut self.rng) as u32).saturating_sub(1)
    }

    /// The next memory: 30 to 80 words, a workload namespace, importance 1..=10,
    /// 0 to 4 tags, and in about 10% of cases 1 to 3 links to earlier memories.
    pub fn memory(&mut self, now: DateTime<Utc>) -> Memory {
        let word_count = self.rng.random_range(30..=80);
        let ranks: Vec<u32> = (0..word_count).map(|_| self.word_rank()).collect();
        let content = ranks
            .iter()
            .map(|&rank| self.vocabulary[rank as usize].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let namespace = self
            .namespaces
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or_default();
        let tag_count = self.rng.random_range(0..=4);
        let mut tags: Vec<String> = self
            .tags
            .choose_multiple(&mut self.rng, tag_count)
            .cloned()
            .collect();
        tags.sort();
        let mut links = Vec::new();
        if !self.link_targets.is_empty() && self.rng.random_ratio(1, 10) {
            for _ in 0..self.rng.random_range(1..=3) {
                let target = *self.link_targets.choose(&mut self.rng).expect("non-empty");
                let link = Link {
                    target,
                    link_type: *LinkType::ALL.choose(&mut self.rng).expect("non-empty"),
                };
                if !links.contains(&link) {
                    links.push(link);
                }
            }
        }
        let memory = Memory {
            id: MemoryId::new(),
            namespace: namespace.clone(),
            content,
            summary: None,
            memory_type: *MemoryType::ALL.choose(&mut self.rng).expect("non-empty"),
            importance: Importance::try_from(self.rng.random_range(1..=10)).expect("in range"),
            tags,
            links,
            created_at: now,
            updated_at: now,
            accessed_at: now,
            access_count: 0,
            archived: false,
        };
        self.generated += 1;
        if self.link_targets.len() < LINK_TARGETS_MAX {
            self.link_targets.push(memory.id);
        } else {
            let slot = self.rng.random_range(0..LINK_TARGETS_MAX);
            self.link_targets[slot] = memory.id;
        }
        if self.query_sources.len() < QUERY_SOURCES_MAX {
            self.query_sources.push((ranks, namespace));
        } else {
            let slot = self.rng.random_range(0..self.generated) as usize;
            if slot < QUERY_SOURCES_MAX {
                self.query_sources[slot] = (ranks, namespace);
            }
        }
        memory
    }

    /// A query drawn from a memory generated so far (panics if none was).
    pub fn query(&mut self) -> WorkloadQuery {
        assert!(
            !self.query_sources.is_empty(),
            "generate memories before queries"
        );
        let frequent = self.rng.random_ratio(1, 5);
        let with_namespace = self.rng.random_ratio(1, 10);
        let typo = self.rng.random_ratio(1, 10);
        let word_count = self.rng.random_range(2..=3);
        let frequent_rank_max = self.frequent_rank_max as u32;
        let (ranks, namespace) = loop {
            let (ranks, namespace) = self.query_sources.choose(&mut self.rng).expect("non-empty");
            let has_frequent = ranks.iter().any(|&r| r < frequent_rank_max);
            let rare = ranks.iter().filter(|&&r| r >= frequent_rank_max).count();
            if (!frequent || has_frequent) && rare >= word_count {
                break (ranks.clone(), namespace.clone());
            }
        };
        let mut chosen: Vec<u32> = Vec::with_capacity(word_count);
        if frequent {
            let frequent_words: Vec<u32> = ranks
                .iter()
                .copied()
                .filter(|&r| r < frequent_rank_max)
                .collect();
            chosen.push(*frequent_words.choose(&mut self.rng).expect("checked above"));
        }
        let rare_words: Vec<u32> = ranks
            .iter()
            .copied()
            .filter(|&r| r >= frequent_rank_max)
            .collect();
        while chosen.len() < word_count {
            let rank = *rare_words.choose(&mut self.rng).expect("checked above");
            if !chosen.contains(&rank) || rare_words.iter().all(|r| chosen.contains(r)) {
                chosen.push(rank);
            }
        }
        let mut words: Vec<String> = chosen
            .iter()
            .map(|&rank| self.vocabulary[rank as usize].clone())
            .collect();
        if typo {
            let index = self.rng.random_range(0..words.len());
            words[index] = with_typo(&words[index], &mut self.rng);
        }
        WorkloadQuery {
            text: words.join(" "),
            namespace: with_namespace.then_some(namespace),
            frequent,
            typo,
        }
    }
}

fn with_typo(word: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        chars.push('x');
    } else {
        let at = rng.random_range(0..chars.len() - 1);
        chars.swap(at, at + 1);
        if chars.iter().collect::<String>() == word {
            chars.remove(at);
        }
    }
    chars.into_iter().collect()
}

/// Synthetic pronounceable words, unique by construction (base-100 syllables),
/// with the technical terms placed at every 64th rank from rank 3.
fn vocabulary() -> Vec<String> {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwxyz";
    const VOWELS: &[u8] = b"aeiou";
    let syllable = |n: usize| {
        let mut s = String::with_capacity(2);
        s.push(CONSONANTS[n / VOWELS.len()] as char);
        s.push(VOWELS[n % VOWELS.len()] as char);
        s
    };
    let mut seen = std::collections::HashSet::new();
    let terms: Vec<&str> = TECH_TERMS
        .split_whitespace()
        .filter(|t| seen.insert(*t))
        .collect();
    let mut synthetic = (0..SYNTHETIC_WORDS).map(|i| {
        let mut n = i + 100;
        let mut word = String::new();
        while n > 0 {
            word.push_str(&syllable(n % 100));
            n /= 100;
        }
        word
    });
    let mut words = Vec::with_capacity(SYNTHETIC_WORDS + terms.len());
    let mut emitted = std::collections::HashSet::new();
    let mut terms_iter = terms.iter();
    let mut rank = 0usize;
    loop {
        let next = if rank >= 3 && (rank - 3).is_multiple_of(64) {
            terms_iter
                .next()
                .map(|t| t.to_string())
                .or_else(|| synthetic.next())
        } else {
            synthetic
                .next()
                .or_else(|| terms_iter.next().map(|t| t.to_string()))
        };
        match next {
            Some(word) if emitted.insert(word.clone()) => words.push(word),
            Some(_) => {}
            None => break,
        }
        rank += 1;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_large_unique_and_holds_the_terms() {
        let words = vocabulary();
        assert!(words.len() >= SYNTHETIC_WORDS + 200);
        let unique: std::collections::HashSet<&String> = words.iter().collect();
        assert_eq!(unique.len(), words.len());
        assert!(words.iter().any(|w| w == "sqlite"));
    }

    #[test]
    fn same_seed_same_content_and_queries() {
        let now = Utc::now();
        let mut a = Workload::new(7);
        let mut b = Workload::new(7);
        for _ in 0..50 {
            assert_eq!(a.memory(now).content, b.memory(now).content);
        }
        for _ in 0..50 {
            assert_eq!(a.query(), b.query());
        }
    }

    #[test]
    fn memories_and_queries_have_the_documented_shape() {
        let now = Utc::now();
        let mut workload = Workload::new(1);
        let mut linked = 0;
        for _ in 0..2_000 {
            let memory = workload.memory(now);
            let words = memory.content.split(' ').count();
            assert!((30..=80).contains(&words), "{words}");
            assert!(memory.tags.len() <= 4);
            linked += usize::from(!memory.links.is_empty());
        }
        assert!((100..=300).contains(&linked), "{linked} linked of 2000");
        let queries: Vec<WorkloadQuery> = (0..1_000).map(|_| workload.query()).collect();
        let frequent = queries.iter().filter(|q| q.frequent).count();
        assert!((120..=280).contains(&frequent), "{frequent}");
        assert!(
            queries
                .iter()
                .all(|q| (2..=3).contains(&q.text.split(' ').count()))
        );
        assert!(queries.iter().any(|q| q.namespace.is_some()));
        assert!(queries.iter().any(|q| q.typo));
    }
}
