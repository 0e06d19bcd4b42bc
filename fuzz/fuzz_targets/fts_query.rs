//! The FTS query builder (`mnemosyne-storage/src/fts_query.rs`) and the
//! keyword recall behind it: any text becomes a bounded set of quoted
//! words, and a keyword recall of it on a real database answers (hits or
//! none) and never fails in SQLite (an FTS5 syntax error would).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemosyne_core::NewMemory;
use mnemosyne_storage::fts_query::{QUERY_TERMS_MAX, match_any, query_terms};
use mnemosyne_storage::{RecallMode, RecallQuery};

/// Memories in the store before the first input, so that words match.
const SEED_TEXTS: &[&str] = &[
    "tokio runtime panics when blocking inside an async task",
    "SQLite FTS5 MATCH needs quoted terms: \"near\" AND OR NOT are operators",
    "über straße naïve café: unicode words in memories",
    "column:filter * ^ - + ( ) { } are FTS5 syntax",
];

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let text = String::from_utf8_lossy(data);
    let terms = query_terms(&text);
    assert!(terms.len() <= QUERY_TERMS_MAX);
    for (i, term) in terms.iter().enumerate() {
        assert!(!term.is_empty());
        assert!(
            !term.contains('"'),
            "a quote would end the FTS5 string: {term:?}"
        );
        assert!(!terms[..i].contains(term), "terms are distinct: {terms:?}");
    }
    let expression = match_any(&terms);
    assert_eq!(
        expression.matches(" OR ").count(),
        terms.len().saturating_sub(1)
    );

    let store = mnemosyne_fuzz::store();
    mnemosyne_fuzz::runtime().block_on(async {
        if store.count(true).await.expect("count") == 0 {
            for seed in SEED_TEXTS {
                store
                    .remember(NewMemory::new(*seed))
                    .await
                    .expect("remember a seed");
            }
        }
        for mode in [RecallMode::Keyword, RecallMode::Hybrid] {
            let query = RecallQuery {
                text: text.to_string(),
                mode,
                ..RecallQuery::default()
            };
            match store.recall(query).await {
                Ok(recall) => {
                    assert!(recall.hits.len() <= store.limits().recall_results_max as usize)
                }
                Err(error) => assert!(
                    mnemosyne_fuzz::is_refusal(&error),
                    "recall of {text:?} failed: {error}"
                ),
            }
        }
    });
});
