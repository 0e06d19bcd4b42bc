//! The storage conformance suite: written once, run unchanged against every
//! backend. A backend's test file implements [`Backend`] and invokes
//! [`conformance_trials!`] in its `main` (a `harness = false` test target).

#![allow(dead_code, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mnemosyne_core::{
    Embedder, Embedding, Error, Importance, Limits, Link, LinkType, ListQuery, ListSort, Memory,
    MemoryId, MemoryPatch, MemoryType, Namespace, NewMemory, OnConflict, Phase, Requirement,
    Storage, VectorQuery, WorkItem, WorkItemId, WorkPrune, WorkState,
};
use mnemosyne_storage::schema::SCHEMA_VERSION;
use mnemosyne_storage::{MemoryStore, RecallMode, RecallQuery};

mod context;
mod documents;
mod worker;
pub use context::*;
pub use documents::*;
pub use worker::*;

/// What the suite needs from a backend beyond the `Storage` trait.
#[async_trait]
pub trait Backend: Storage + Sized + 'static {
    /// A reader connection held out of the pool.
    type Held: Send;
    /// Opens the backend at a file.
    async fn open_at(path: &Path, limits: &Limits) -> mnemosyne_core::Result<Self>;
    /// Holds one reader connection until dropped.
    async fn hold(&self) -> mnemosyne_core::Result<Self::Held>;
    /// Runs raw SQL on the file with the backend's own driver, outside the store.
    async fn exec_raw(path: &Path, sql: &str);
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mnemosyne.db");
    Fixture { dir, path }
}

pub async fn open<B: Backend>(path: &Path, limits: Limits) -> MemoryStore {
    let storage = B::open_at(path, &limits).await.expect("open store");
    MemoryStore::new(Arc::new(storage), limits)
}

pub fn new_memory(content: &str, namespace: &str) -> NewMemory {
    NewMemory {
        namespace: namespace.parse().unwrap(),
        ..NewMemory::new(content)
    }
}

pub fn recall_text(text: &str) -> RecallQuery {
    RecallQuery {
        text: text.into(),
        ..RecallQuery::default()
    }
}

async fn recall_ids(store: &MemoryStore, query: RecallQuery) -> Vec<MemoryId> {
    store
        .recall(query)
        .await
        .unwrap()
        .hits
        .iter()
        .map(|hit| hit.memory.id)
        .collect()
}

/// An imported access count past what SQLite's integers hold is stored as
/// the largest, and a read (which counts itself) keeps it there: `+ 1`
/// would overflow into a REAL that no read decodes (found by fuzzing
/// `import`: the memory could no longer be read).
pub async fn an_access_count_at_its_maximum_stays_readable<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut foreign = store
        .remember(new_memory("counted too often", "global"))
        .await
        .unwrap();
    foreign.id = MemoryId::new();
    foreign.access_count = u64::MAX;
    store
        .import_batch(&[foreign.clone()], mnemosyne_core::OnConflict::Fail)
        .await
        .unwrap();
    let largest = i64::MAX as u64;
    assert_eq!(store.get(foreign.id).await.unwrap().access_count, largest);
    assert_eq!(store.get(foreign.id).await.unwrap().access_count, largest);
    let listed = store.list(ListQuery::default()).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m.id == foreign.id && m.access_count == largest)
    );
}

pub async fn crud<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut new = new_memory(
        "tokio runtime shutdown must drain the queue",
        "project:atlas",
    );
    new.summary = Some("drain on shutdown".into());
    new.importance = Importance::try_from(8).unwrap();
    new.memory_type = MemoryType::Decision;
    new.tags = vec!["ops".into(), "Runtime".into()];
    let stored = store.remember(new).await.unwrap();
    assert_eq!(stored.tags, ["ops", "runtime"]);

    let got = store.get(stored.id).await.unwrap();
    assert_eq!(got.content, stored.content);
    assert_eq!(got.summary.as_deref(), Some("drain on shutdown"));
    assert_eq!(got.importance.get(), 8);
    assert_eq!(got.memory_type, MemoryType::Decision);
    assert_eq!(got.namespace, "project:atlas".parse::<Namespace>().unwrap());
    assert_eq!(got.tags, ["ops", "runtime"]);
    assert_eq!(
        got.created_at.timestamp_millis(),
        stored.created_at.timestamp_millis()
    );
    assert_eq!(got.access_count, 1);
    assert_eq!(store.get(stored.id).await.unwrap().access_count, 2);

    let patch = MemoryPatch {
        content: Some("tokio runtime shutdown drains the work queue first".into()),
        importance: Some(Importance::try_from(9).unwrap()),
        tags: Some(vec!["ops".into(), "queue".into()]),
        summary: Some(None),
        ..MemoryPatch::default()
    };
    let updated = store.update(stored.id, patch).await.unwrap();
    assert_eq!(updated.importance.get(), 9);
    assert!(updated.updated_at >= stored.updated_at);
    let got = store.get(stored.id).await.unwrap();
    assert_eq!(
        got.content,
        "tokio runtime shutdown drains the work queue first"
    );
    assert_eq!(got.summary, None);
    assert_eq!(got.tags, ["ops", "queue"]);
    assert_eq!(recall_ids(&store, recall_text("drains")).await, [stored.id]);
    assert!(
        recall_ids(&store, recall_text("must")).await.is_empty(),
        "old text left in the index"
    );

    let unknown = MemoryId::new();
    assert!(matches!(store.get(unknown).await, Err(Error::NotFound(id)) if id == unknown));
    let patch = MemoryPatch {
        importance: Some(Importance::default()),
        ..MemoryPatch::default()
    };
    assert!(matches!(
        store.update(unknown, patch).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.forget(unknown, true).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.forget(unknown, false).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.storage().insert_memory(&got, None).await,
        Err(Error::AlreadyExists(id)) if id == got.id
    ));
    assert_eq!(store.count(true).await.unwrap(), 1);
}

pub async fn rejects_invalid_input_and_stores_nothing<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        memory_content_bytes_max: 32,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits).await;
    assert!(matches!(
        store.remember(new_memory("", "global")).await,
        Err(Error::InvalidInput(_))
    ));
    let err = store
        .remember(new_memory(&"x".repeat(33), "global"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("memory_content_bytes_max"),
        "{err}"
    );
    assert!(
        store
            .remember(new_memory(&"x".repeat(32), "global"))
            .await
            .is_ok()
    );
    let mut new = new_memory("links to nowhere", "global");
    new.links = vec![Link {
        target: MemoryId::new(),
        link_type: LinkType::RelatesTo,
    }];
    assert!(matches!(store.remember(new).await, Err(Error::NotFound(_))));
    assert_eq!(
        store.count(true).await.unwrap(),
        1,
        "a failed remember left a row behind"
    );
    assert!(
        recall_ids(&store, recall_text("links nowhere"))
            .await
            .is_empty()
    );
    assert!(matches!(
        store.recall(recall_text("?! ()")).await,
        Err(Error::InvalidInput(_))
    ));
}

pub async fn namespaces_filter_and_respect_the_hierarchy<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let global = store
        .remember(new_memory("deadlock in the lease reaper", "global"))
        .await
        .unwrap();
    let atlas = store
        .remember(new_memory("deadlock in atlas migrations", "project:atlas"))
        .await
        .unwrap();
    let session = store
        .remember(new_memory(
            "deadlock seen in session one",
            "session:atlas/one",
        ))
        .await
        .unwrap();
    let other = store
        .remember(new_memory("deadlock in cinder", "project:cinder"))
        .await
        .unwrap();

    let mut query = recall_text("deadlock");
    query.namespace = Some("session:atlas/one".parse().unwrap());
    let mut ids = recall_ids(&store, query).await;
    ids.sort();
    let mut expected = vec![global.id, atlas.id, session.id];
    expected.sort();
    assert_eq!(ids, expected);

    let mut query = recall_text("deadlock");
    query.namespace = Some("project:cinder".parse().unwrap());
    let mut ids = recall_ids(&store, query).await;
    ids.sort();
    let mut expected = vec![global.id, other.id];
    expected.sort();
    assert_eq!(ids, expected);

    let listed = store
        .list(ListQuery {
            namespace: Some("project:atlas".parse().unwrap()),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), [atlas.id]);
    assert_eq!(recall_ids(&store, recall_text("deadlock")).await.len(), 4);
}

pub async fn tags_filter_list_and_recall<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut ids = Vec::new();
    for (i, tags) in [vec!["bug"], vec!["bug", "perf"], vec!["perf"], vec![]]
        .into_iter()
        .enumerate()
    {
        let mut new = new_memory(&format!("cache eviction note {i}"), "global");
        new.tags = tags.into_iter().map(String::from).collect();
        ids.push(store.remember(new).await.unwrap().id);
    }
    let tagged = |tags: &[&str]| ListQuery {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        sort: ListSort::Id,
        ..ListQuery::default()
    };
    let list_ids = |memories: Vec<Memory>| memories.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        list_ids(store.list(tagged(&["bug"])).await.unwrap()),
        [ids[0], ids[1]]
    );
    assert_eq!(
        list_ids(store.list(tagged(&["bug", "perf"])).await.unwrap()),
        [ids[1]]
    );
    assert!(store.list(tagged(&["nope"])).await.unwrap().is_empty());
    let mut query = recall_text("eviction");
    query.tags = vec!["perf".into()];
    let mut found = recall_ids(&store, query).await;
    found.sort();
    assert_eq!(found, [ids[1], ids[2]]);
    let patch = MemoryPatch {
        tags: Some(vec!["ops".into()]),
        ..MemoryPatch::default()
    };
    store.update(ids[0], patch).await.unwrap();
    assert_eq!(
        list_ids(store.list(tagged(&["bug"])).await.unwrap()),
        [ids[1]]
    );
    assert_eq!(
        list_ids(store.list(tagged(&["ops"])).await.unwrap()),
        [ids[0]]
    );
}

pub async fn links_are_typed_bounded_and_cascade<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        memory_links_max: 2,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits).await;
    let a = store
        .remember(new_memory("the bug", "global"))
        .await
        .unwrap();
    let b = store
        .remember(new_memory("the fix", "global"))
        .await
        .unwrap();
    let c = store
        .remember(new_memory("the test", "global"))
        .await
        .unwrap();
    let d = store
        .remember(new_memory("the doc", "global"))
        .await
        .unwrap();
    store.link(b.id, a.id, LinkType::Fixes).await.unwrap();
    store.link(b.id, a.id, LinkType::Fixes).await.unwrap();
    store.link(b.id, c.id, LinkType::RelatesTo).await.unwrap();
    let err = store
        .link(b.id, d.id, LinkType::RelatesTo)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memory_links_max"), "{err}");
    let got = store.get(b.id).await.unwrap();
    assert_eq!(
        got.links,
        [
            Link {
                target: a.id,
                link_type: LinkType::Fixes
            },
            Link {
                target: c.id,
                link_type: LinkType::RelatesTo
            }
        ]
    );
    let missing = MemoryId::new();
    assert!(
        matches!(store.link(b.id, missing, LinkType::Fixes).await, Err(Error::NotFound(id)) if id == missing)
    );
    assert!(
        matches!(store.link(missing, b.id, LinkType::Fixes).await, Err(Error::NotFound(id)) if id == missing)
    );
    assert!(matches!(
        store.link(a.id, a.id, LinkType::Fixes).await,
        Err(Error::InvalidInput(_))
    ));

    let mut new = new_memory("links at birth", "global");
    new.links = vec![Link {
        target: d.id,
        link_type: LinkType::DerivedFrom,
    }];
    let e = store.remember(new).await.unwrap();
    assert_eq!(store.get(e.id).await.unwrap().links.len(), 1);

    store.forget(a.id, true).await.unwrap();
    let got = store.get(b.id).await.unwrap();
    assert_eq!(
        got.links,
        [Link {
            target: c.id,
            link_type: LinkType::RelatesTo
        }]
    );
    store.forget(b.id, true).await.unwrap();
    store.link(c.id, d.id, LinkType::PartOf).await.unwrap();
    assert_eq!(store.get(c.id).await.unwrap().links.len(), 1);
}

pub async fn keyword_search_ranks_and_quotes_user_text<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let strong = store
        .remember(new_memory(
            "sqlite wal checkpoint stalls: sqlite checkpoint starvation",
            "global",
        ))
        .await
        .unwrap();
    let weak = store
        .remember(new_memory(
            "a long note about many things, among them a sqlite detail, build caches, \
             release notes, flaky tests and the weather in the office this week",
            "global",
        ))
        .await
        .unwrap();
    store
        .remember(new_memory("nothing relevant here at all", "global"))
        .await
        .unwrap();
    let recall = store
        .recall(recall_text("sqlite checkpoint"))
        .await
        .unwrap();
    let ids: Vec<MemoryId> = recall.hits.iter().map(|h| h.memory.id).collect();
    assert_eq!(ids, [strong.id, weak.id]);
    assert!(recall.hits[0].score > recall.hits[1].score);
    assert_eq!(recall.hits[0].signals.keyword_rank, Some(1));
    assert!(!recall.truncated);

    // Porter stemming: "checkpoints" finds "checkpoint".
    assert_eq!(
        recall_ids(&store, recall_text("checkpoints")).await,
        [strong.id]
    );

    // FTS5 syntax in user text is only separators: no error, same meaning as the words.
    let special = store
        .remember(new_memory("foo bar near the baz", "global"))
        .await
        .unwrap();
    let hostile = recall_ids(&store, recall_text("\"foo* OR bar) NEAR(")).await;
    let plain = recall_ids(&store, recall_text("foo or bar near")).await;
    assert_eq!(hostile, plain);
    assert_eq!(hostile, [special.id]);
    for text in [
        "\"", "foo\"", "a:b", "col:foo", "NOT", "(", "*", "^foo", "foo AND", "- foo +",
    ] {
        if let Err(e) = store.recall(recall_text(text)).await {
            assert!(matches!(e, Error::InvalidInput(_)), "{text:?}: {e}");
        }
    }
}

/// Words in more than `FREQUENT_TERM_DOCS` memories take the bounded path:
/// they boost what rare words find and otherwise search a recency window.
pub async fn frequent_words_are_bounded_but_still_count<B: Backend>() {
    use mnemosyne_storage::keyword_plan::FREQUENT_TERM_DOCS;
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let now = chrono::Utc::now();
    let limits = store.limits().clone();
    let common: Vec<Memory> = (0..FREQUENT_TERM_DOCS + 100)
        .map(|i| {
            new_memory(&format!("common filler number{i}"), "global")
                .into_memory(&limits, now)
                .unwrap()
        })
        .collect();
    for chunk in common.chunks(limits.import_batch_rows as usize) {
        store.import_batch(chunk, OnConflict::Fail).await.unwrap();
    }
    let rare_without = store
        .remember(new_memory("zebra stands alone here", "global"))
        .await
        .unwrap();
    let rare_with = store
        .remember(new_memory("zebra with the common", "global"))
        .await
        .unwrap();
    let older_with = common[0].id;

    let hits = store
        .recall(recall_text("common zebra"))
        .await
        .unwrap()
        .hits;
    assert_eq!(
        hits[0].memory.id, rare_with.id,
        "rare and frequent word together rank first"
    );
    assert_eq!(
        hits[1].memory.id, rare_without.id,
        "the rare word outranks the frequent one"
    );
    assert!(hits.len() > 2, "frequent-only matches still come after");
    assert!(
        hits.iter().all(|h| h.memory.id != older_with),
        "the recency window bounds frequent-only matches"
    );

    let mut query = recall_text("common");
    query.limit = Some(3);
    let recall = store.recall(query).await.unwrap();
    let ids: Vec<MemoryId> = recall.hits.iter().map(|h| h.memory.id).collect();
    assert_eq!(
        ids,
        [
            rare_with.id,
            common[common.len() - 1].id,
            common[common.len() - 2].id
        ]
    );
    assert!(recall.truncated);
}

pub async fn archive_hides_and_hard_delete_removes<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let kept = store
        .remember(new_memory("retry with backoff and jitter", "global"))
        .await
        .unwrap();
    let archived = store
        .remember(new_memory("retry forever without backoff", "global"))
        .await
        .unwrap();
    let deleted = store
        .remember(new_memory("retry budget of three", "global"))
        .await
        .unwrap();
    store.forget(archived.id, false).await.unwrap();
    store.forget(deleted.id, true).await.unwrap();

    assert_eq!(recall_ids(&store, recall_text("retry")).await, [kept.id]);
    let mut with_archived = recall_text("retry");
    with_archived.include_archived = true;
    let mut ids = recall_ids(&store, with_archived).await;
    ids.sort();
    assert_eq!(ids, [kept.id, archived.id]);
    assert!(store.get(archived.id).await.unwrap().archived);
    assert!(matches!(
        store.get(deleted.id).await,
        Err(Error::NotFound(_))
    ));
    let listed = store.list(ListQuery::default()).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), [kept.id]);
    let all = store
        .list(ListQuery {
            include_archived: true,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(store.count(false).await.unwrap(), 1);
    assert_eq!(store.count(true).await.unwrap(), 2);

    let restore = MemoryPatch {
        archived: Some(false),
        ..MemoryPatch::default()
    };
    store.update(archived.id, restore).await.unwrap();
    assert_eq!(
        recall_ids(&store, recall_text("forever")).await,
        [archived.id]
    );
}

pub async fn pagination_covers_everything_once<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let mut new = new_memory(&format!("page item {i}"), "global");
        new.importance = Importance::try_from(i % 10 + 1).unwrap();
        expected.push(store.remember(new).await.unwrap().id);
    }
    for sort in [ListSort::Recent, ListSort::Importance] {
        let mut seen = Vec::new();
        for page in 0..4 {
            let query = ListQuery {
                sort,
                limit: 7,
                offset: page * 7,
                ..ListQuery::default()
            };
            seen.extend(store.list(query).await.unwrap().into_iter().map(|m| m.id));
        }
        assert_eq!(seen.len(), 25, "{sort:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25, "{sort:?} repeated an item");
    }
    let by_importance = store
        .list(ListQuery {
            sort: ListSort::Importance,
            limit: 25,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(
        by_importance
            .windows(2)
            .all(|w| w[0].importance >= w[1].importance)
    );
    let recent = store
        .list(ListQuery {
            limit: 1,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(recent[0].id, expected[24]);

    let mut keyset = Vec::new();
    let mut after = None;
    loop {
        let query = ListQuery {
            sort: ListSort::Id,
            after,
            limit: 10,
            ..ListQuery::default()
        };
        let page = store.list(query).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|m| m.id);
        keyset.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(keyset, expected, "id order is creation order (UUIDv7)");
}

pub async fn limits_bound_results<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        recall_results_max: 5,
        list_page_rows_max: 10,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits).await;
    for i in 0..12 {
        store
            .remember(new_memory(&format!("backpressure item {i}"), "global"))
            .await
            .unwrap();
    }
    let recall = store.recall(recall_text("backpressure")).await.unwrap();
    assert_eq!(recall.hits.len(), 5);
    assert_eq!(recall.limit, 5);
    assert!(recall.truncated);
    let mut asked = recall_text("backpressure");
    asked.limit = Some(500);
    assert_eq!(store.recall(asked).await.unwrap().hits.len(), 5);
    let mut asked = recall_text("backpressure");
    asked.limit = Some(3);
    let recall = store.recall(asked).await.unwrap();
    assert_eq!((recall.hits.len(), recall.truncated), (3, true));
    let mut asked = recall_text("backpressure");
    asked.limit = Some(12);
    let recall = store.recall(asked).await.unwrap();
    assert_eq!(recall.hits.len(), 5);
    assert!(
        store
            .list(ListQuery {
                limit: 10,
                ..ListQuery::default()
            })
            .await
            .is_ok()
    );
    let err = store
        .list(ListQuery {
            limit: 11,
            ..ListQuery::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("list_page_rows_max"), "{err}");
    let long_query = "word ".repeat(1_000);
    let err = store.recall(recall_text(&long_query)).await.unwrap_err();
    assert!(err.to_string().contains("recall_query_bytes_max"), "{err}");
}

pub async fn batches_are_all_or_nothing<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        import_batch_rows: 3,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits.clone()).await;
    let now = chrono::Utc::now();
    let existing = store
        .remember(new_memory("already here", "global"))
        .await
        .unwrap();
    let fresh: Vec<Memory> = (0..2)
        .map(|i| {
            new_memory(&format!("imported {i}"), "global")
                .into_memory(&limits, now)
                .unwrap()
        })
        .collect();
    let mut batch = fresh.clone();
    batch.push(existing.clone());
    assert!(
        matches!(store.import_batch(&batch, OnConflict::Fail).await, Err(Error::AlreadyExists(id)) if id == existing.id)
    );
    assert_eq!(
        store.count(true).await.unwrap(),
        1,
        "a failed batch left rows behind"
    );
    let outcome = store.import_batch(&batch, OnConflict::Skip).await.unwrap();
    assert_eq!((outcome.inserted, outcome.skipped), (2, 1));
    assert_eq!(store.count(true).await.unwrap(), 3);
    assert_eq!(
        store
            .get(fresh[1].id)
            .await
            .unwrap()
            .created_at
            .timestamp_millis(),
        now.timestamp_millis()
    );
    batch.push(
        new_memory("one too many", "global")
            .into_memory(&limits, now)
            .unwrap(),
    );
    assert!(matches!(
        store.import_batch(&batch, OnConflict::Skip).await,
        Err(Error::InvalidInput(_))
    ));

    let links = vec![
        (
            fresh[0].id,
            Link {
                target: fresh[1].id,
                link_type: LinkType::RelatesTo,
            },
        ),
        (
            fresh[0].id,
            Link {
                target: MemoryId::new(),
                link_type: LinkType::RelatesTo,
            },
        ),
    ];
    let outcome = store.import_links(&links).await.unwrap();
    assert_eq!(
        (outcome.linked, outcome.missing, outcome.over_limit),
        (1, 1, 0)
    );
    let again = store.import_links(&links[..1]).await.unwrap();
    assert_eq!(
        (again.linked, again.over_limit),
        (1, 0),
        "an existing link is not over the limit"
    );

    // Bulk links respect memory_links_max like single links do.
    let bounded = open::<B>(
        &f.path,
        Limits {
            memory_links_max: 1,
            ..limits.clone()
        },
    )
    .await;
    let extra = vec![(
        fresh[0].id,
        Link {
            target: existing.id,
            link_type: LinkType::RelatesTo,
        },
    )];
    let outcome = bounded.import_links(&extra).await.unwrap();
    assert_eq!((outcome.linked, outcome.over_limit), (0, 1));
    assert_eq!(bounded.get(fresh[0].id).await.unwrap().links.len(), 1);
}

fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

pub async fn a_large_write_does_not_leave_a_large_wal<B: Backend>() {
    let f = fixture();
    let wal_max = 1 << 20;
    let limits = Limits {
        sqlite_wal_bytes_max: wal_max,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits.clone()).await;
    let now = chrono::Utc::now();
    let text = "wal ".repeat(12_000);
    let batch: Vec<Memory> = (0..200)
        .map(|i| {
            new_memory(&format!("{i} {text}"), "global")
                .into_memory(&limits, now)
                .unwrap()
        })
        .collect();
    // About 10 MB pass through the WAL in one transaction; the writer
    // empties it once the commit is done.
    store.import_batch(&batch, OnConflict::Fail).await.unwrap();
    let after_batch = wal_bytes(&f.path);
    assert!(
        after_batch <= wal_max,
        "WAL {after_batch} bytes after a 10 MB batch (limit {wal_max})"
    );
    store.remember(new_memory("small", "global")).await.unwrap();
    let after = wal_bytes(&f.path);
    assert!(after <= wal_max, "WAL {after} bytes (limit {wal_max})");
    assert_eq!(store.count(true).await.unwrap(), 201);
}

pub async fn concurrent_readers_and_writer_never_see_locks<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    store
        .remember(new_memory("seed queue lease", "global"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..40 {
                store
                    .remember(new_memory(
                        &format!("queue lease writer {writer} item {i}"),
                        "global",
                    ))
                    .await?;
            }
            Ok::<_, Error>(())
        });
    }
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..40 {
                store.recall(recall_text("queue lease")).await?;
                store.list(ListQuery::default()).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined
            .expect("task panicked")
            .expect("no storage error under concurrency");
    }
    assert_eq!(store.count(true).await.unwrap(), 1 + 8 * 40);
    let status = store.pool_status();
    assert!(status.readers_open <= status.readers_max);
    // Open connections hold page caches: SQLite's heap is measured, not 0
    // (a remote database keeps its pages on the server).
    if store.storage().backend_name() != "libsql-remote" {
        assert!(status.sqlite_heap_bytes > 0, "{status:?}");
    }
    assert_eq!(
        status.sqlite_heap_bytes_max,
        Limits::default().sqlite_heap_bytes_max
    );
    assert_eq!(
        (
            status.readers_waiting,
            status.writer_waiting,
            status.writer_in_use
        ),
        (0, 0, 0)
    );
}

pub async fn pool_exhaustion_times_out<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        pool_readers_max: 1,
        pool_wait_timeout_ms: 200,
        ..Limits::default()
    };
    let storage = Arc::new(B::open_at(&f.path, &limits).await.unwrap());
    let store = MemoryStore::new(storage.clone(), limits);
    let memory = store.remember(new_memory("pool", "global")).await.unwrap();
    let held = storage.hold().await.unwrap();
    assert_eq!(store.pool_status().readers_idle, 0);
    let started = Instant::now();
    let err = store.storage().get_memory(memory.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PoolTimeout {
                role: "reader",
                waited_ms: 200,
                pool_size: 1
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "gave up before the wait timeout"
    );
    assert!(err.to_string().contains("200 ms"), "{err}");
    drop(held);
    assert_eq!(
        store
            .storage()
            .get_memory(memory.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        memory.id
    );
}

pub async fn migrates_from_empty_and_reopens<B: Backend>() {
    let f = fixture();
    std::fs::write(&f.path, b"").unwrap();
    let store = open::<B>(&f.path, Limits::default()).await;
    assert_eq!(
        store.storage().schema_version().await.unwrap(),
        SCHEMA_VERSION
    );
    let memory = store
        .remember(new_memory("survives a reopen", "global"))
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let store = open::<B>(&f.path, Limits::default()).await;
    assert_eq!(
        store.get(memory.id).await.unwrap().content,
        "survives a reopen"
    );
    assert_eq!(store.storage().integrity_check().await.unwrap(), "ok");
}

pub async fn migrates_a_version_1_database<B: Backend>() {
    let f = fixture();
    let v1 = mnemosyne_storage::schema::MIGRATIONS[0];
    let id = MemoryId::new();
    B::exec_raw(
        &f.path,
        &format!(
            "{v1}\nINSERT INTO memories (id, namespace, content, memory_type, importance, tags, \
             created_at_ms, updated_at_ms, accessed_at_ms) VALUES \
             ('{id}', 'project:atlas', 'written by version one', 'fact', 7, 'legacy ops', 1, 2, 3);\n\
             PRAGMA user_version = 1;"
        ),
    )
    .await;
    let store = open::<B>(&f.path, Limits::default()).await;
    assert_eq!(
        store.storage().schema_version().await.unwrap(),
        SCHEMA_VERSION
    );
    let memory = store.get(id).await.unwrap();
    assert_eq!(memory.tags, ["legacy", "ops"]);
    let query = ListQuery {
        tags: vec!["legacy".into()],
        ..ListQuery::default()
    };
    assert_eq!(
        store.list(query).await.unwrap().len(),
        1,
        "tags of v1 rows migrated to tag rows"
    );
    assert_eq!(recall_ids(&store, recall_text("version one")).await, [id]);
}

pub async fn refuses_a_newer_database<B: Backend>() {
    let f = fixture();
    B::exec_raw(
        &f.path,
        "CREATE TABLE future (x); PRAGMA user_version = 99;",
    )
    .await;
    let err = B::open_at(&f.path, &Limits::default()).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found: 99, supported } if supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    B::exec_raw(&f.path, "INSERT INTO future VALUES (1);").await;
}

fn random_unit(rng: &mut impl rand::Rng, dims: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn embedding(model: &str, vector: Vec<f32>) -> Embedding {
    Embedding {
        model_id: model.into(),
        vector,
    }
}

fn vector_query(vector: Vec<f32>, model: &str, limit: u32) -> VectorQuery {
    VectorQuery {
        vector,
        model_id: model.into(),
        namespaces: Vec::new(),
        tags: Vec::new(),
        limit,
        include_archived: false,
        min_importance: None,
    }
}

/// Stores `count` memories with random vectors of `dims` in `namespace`.
async fn store_random(
    store: &MemoryStore,
    rng: &mut impl rand::Rng,
    count: usize,
    dims: usize,
    model: &str,
    namespace: &str,
) -> Vec<(MemoryId, Vec<f32>)> {
    let mut stored = Vec::new();
    for i in 0..count {
        let memory = new_memory(&format!("vector memory {i}"), namespace)
            .into_memory(store.limits(), chrono::Utc::now())
            .unwrap();
        let vector = random_unit(rng, dims);
        store
            .storage()
            .insert_memory(&memory, Some(&embedding(model, vector.clone())))
            .await
            .unwrap();
        stored.push((memory.id, vector));
    }
    stored
}

fn brute_force(stored: &[(MemoryId, Vec<f32>)], query: &[f32], k: usize) -> Vec<(MemoryId, f64)> {
    let mut scored: Vec<(MemoryId, f64)> = stored
        .iter()
        .map(|(id, v)| (*id, mnemosyne_storage::rows::cosine(v, query)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

/// Nearest neighbours equal a brute-force reference on random data.
pub async fn vector_search_matches_brute_force<B: Backend>() {
    use rand::SeedableRng;
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let stored = store_random(&store, &mut rng, 400, 32, "test-32", "global").await;
    for _ in 0..20 {
        let query = random_unit(&mut rng, 32);
        let expected = brute_force(&stored, &query, 10);
        let hits = store
            .storage()
            .vector_search(&vector_query(query, "test-32", 10))
            .await
            .unwrap();
        let got: Vec<MemoryId> = hits.iter().map(|h| h.memory.id).collect();
        let want: Vec<MemoryId> = expected.iter().map(|e| e.0).collect();
        assert_eq!(got, want);
        for (hit, (_, similarity)) in hits.iter().zip(&expected) {
            assert!(
                (hit.similarity - similarity).abs() < 1e-4,
                "{} vs {similarity}",
                hit.similarity
            );
        }
    }
}

/// Model, namespace, tag and archive filters apply, with over-fetch.
pub async fn vector_search_filters<B: Backend>() {
    use rand::SeedableRng;
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let crowd = store_random(&store, &mut rng, 300, 16, "m1", "project:cinder").await;
    let allowed = store_random(&store, &mut rng, 5, 16, "m1", "project:atlas").await;
    let other_model = store_random(&store, &mut rng, 50, 16, "m2", "project:atlas").await;
    let query = random_unit(&mut rng, 16);

    let mut q = vector_query(query.clone(), "m1", 3);
    q.namespaces = "project:atlas"
        .parse::<Namespace>()
        .unwrap()
        .with_ancestors();
    let hits = store.storage().vector_search(&q).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.memory.id).collect::<Vec<_>>(),
        brute_force(&allowed, &query, 3)
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        "nearest in the namespace even when 300 nearer ones are elsewhere"
    );

    let hits = store
        .storage()
        .vector_search(&vector_query(query.clone(), "m2", 100))
        .await
        .unwrap();
    assert_eq!(
        hits.len(),
        other_model.len(),
        "only the query's model is compared"
    );

    let tagged = crowd[0].0;
    store
        .update(
            tagged,
            MemoryPatch {
                tags: Some(vec!["pick".into()]),
                ..MemoryPatch::default()
            },
        )
        .await
        .unwrap();
    let mut q = vector_query(query.clone(), "m1", 5);
    q.tags = vec!["pick".into()];
    let hits = store.storage().vector_search(&q).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.memory.id).collect::<Vec<_>>(),
        [tagged]
    );

    let nearest = brute_force(&crowd, &query, 1)[0].0;
    store.forget(nearest, false).await.unwrap();
    let hits = store
        .storage()
        .vector_search(&vector_query(query.clone(), "m1", 1))
        .await
        .unwrap();
    assert_ne!(hits[0].memory.id, nearest, "archived memories are hidden");
    let mut q = vector_query(query.clone(), "m1", 1);
    q.include_archived = true;
    assert_eq!(
        store.storage().vector_search(&q).await.unwrap()[0]
            .memory
            .id,
        nearest
    );
}

/// Updates replace vectors, deletes remove them, other dimensions live beside.
pub async fn vectors_follow_updates_deletes_and_models<B: Backend>() {
    use rand::SeedableRng;
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let stored = store_random(&store, &mut rng, 20, 8, "small", "global").await;
    let (id, _) = stored[3];
    let target = random_unit(&mut rng, 8);
    let patch = MemoryPatch {
        content: Some("moved".into()),
        ..MemoryPatch::default()
    };
    store
        .storage()
        .update_memory(
            id,
            &patch,
            chrono::Utc::now(),
            Some(&embedding("small", target.clone())),
        )
        .await
        .unwrap();
    let hits = store
        .storage()
        .vector_search(&vector_query(target.clone(), "small", 1))
        .await
        .unwrap();
    assert_eq!(hits[0].memory.id, id);
    assert!((hits[0].similarity - 1.0).abs() < 1e-4);

    store.forget(id, true).await.unwrap();
    let hits = store
        .storage()
        .vector_search(&vector_query(target.clone(), "small", 50))
        .await
        .unwrap();
    assert_eq!(hits.len(), 19);
    assert!(hits.iter().all(|h| h.memory.id != id));

    // A second model with another dimension count, for some memories.
    let mut items: Vec<(MemoryId, Embedding)> = stored[..5]
        .iter()
        .filter(|(other, _)| *other != id)
        .map(|(other, _)| (*other, embedding("wide", random_unit(&mut rng, 24))))
        .collect();
    items.push((
        MemoryId::new(),
        embedding("wide", random_unit(&mut rng, 24)),
    ));
    assert_eq!(
        store.storage().set_embeddings(&items).await.unwrap(),
        4,
        "a missing id is skipped"
    );
    let hits = store
        .storage()
        .vector_search(&vector_query(random_unit(&mut rng, 24), "wide", 50))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4);
    let hits = store
        .storage()
        .vector_search(&vector_query(random_unit(&mut rng, 8), "small", 50))
        .await
        .unwrap();
    assert_eq!(
        hits.len(),
        15,
        "re-embedded memories left the old model's index"
    );
    let err = store
        .storage()
        .vector_search(&vector_query(vec![0.5; 3], "small", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

/// Reindex and worker bookkeeping: what is missing (no vector at all) and
/// what is stale (another model's vector), in id order, resumable; among
/// given ids; counted exactly after deletes.
pub async fn pending_embeddings_find_missing_and_stale<B: Backend>() {
    use mnemosyne_core::PendingKind::{Missing, MissingOrStale};
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            store
                .remember(new_memory(&format!("pending {i}"), "global"))
                .await
                .unwrap()
                .id,
        );
    }
    let summary = MemoryPatch {
        summary: Some(Some("and its summary".into())),
        ..MemoryPatch::default()
    };
    store.update(ids[0], summary).await.unwrap();
    for kind in [Missing, MissingOrStale] {
        assert_eq!(
            storage.count_pending_embeddings("m", kind).await.unwrap(),
            6
        );
    }
    let page = storage
        .pending_embeddings("m", MissingOrStale, None, 4)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), ids[..4]);
    assert_eq!(page[0].text, "pending 0\nand its summary");
    let rest = storage
        .pending_embeddings("m", MissingOrStale, Some(ids[3]), 4)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|p| p.id).collect::<Vec<_>>(), ids[4..]);
    let items: Vec<(MemoryId, Embedding)> = ids[..3]
        .iter()
        .map(|id| (*id, embedding("m", vec![1.0, 0.0])))
        .collect();
    storage.set_embeddings(&items).await.unwrap();
    storage
        .set_embeddings(&[(ids[3], embedding("old", vec![1.0, 0.0]))])
        .await
        .unwrap();
    // ids 0..3 have m's vector, 3 a stale one, 4 and 5 none.
    assert_eq!(
        storage
            .count_pending_embeddings("m", MissingOrStale)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        storage
            .count_pending_embeddings("m", Missing)
            .await
            .unwrap(),
        2,
        "a stale vector is not missing"
    );
    let page = storage
        .pending_embeddings("m", MissingOrStale, None, 10)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), ids[3..]);
    let page = storage
        .pending_embeddings("m", Missing, None, 10)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), ids[4..]);
    let page = storage
        .pending_embeddings("m", Missing, Some(ids[4]), 10)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), ids[5..]);

    // Among given ids: only those pending, in id order, unknown ids left out.
    let asked = [ids[5], MemoryId::new(), ids[0], ids[3], ids[4]];
    let among = storage
        .pending_embeddings_among("m", Missing, &asked)
        .await
        .unwrap();
    assert_eq!(among.iter().map(|p| p.id).collect::<Vec<_>>(), ids[4..]);
    assert_eq!(among[0].text, "pending 4");
    let among = storage
        .pending_embeddings_among("m", MissingOrStale, &asked)
        .await
        .unwrap();
    assert_eq!(among.iter().map(|p| p.id).collect::<Vec<_>>(), ids[3..]);
    assert!(
        storage
            .pending_embeddings_among("m", Missing, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let too_many = vec![ids[0]; mnemosyne_core::MEMORY_IDS_PER_CALL_MAX + 1];
    let err = storage
        .pending_embeddings_among("m", Missing, &too_many)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // A deleted memory takes its vector along: the counts stay exact.
    store.forget(ids[0], true).await.unwrap();
    store.forget(ids[5], true).await.unwrap();
    assert_eq!(
        storage
            .count_pending_embeddings("m", Missing)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage
            .count_pending_embeddings("m", MissingOrStale)
            .await
            .unwrap(),
        2
    );
}

/// `fill_embeddings` stores missing and stale vectors but keeps a vector of
/// its own model (made from a newer text) and skips deleted memories;
/// `set_embeddings` replaces whatever is there.
pub async fn fill_embeddings_never_replaces_a_vector_of_the_same_model<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            store
                .remember(new_memory(&format!("fill {i}"), "global"))
                .await
                .unwrap()
                .id,
        );
    }
    storage
        .set_embeddings(&[
            (ids[0], embedding("m", vec![1.0, 0.0])),
            (ids[1], embedding("old", vec![1.0, 0.0])),
        ])
        .await
        .unwrap();
    store.forget(ids[3], true).await.unwrap();
    let fill: Vec<(MemoryId, Embedding)> = ids
        .iter()
        .map(|id| (*id, embedding("m", vec![0.0, 1.0])))
        .collect();
    assert_eq!(
        storage.fill_embeddings(&fill).await.unwrap(),
        2,
        "the stale vector and the missing one; not the same model's, not the deleted memory"
    );
    let hits = storage
        .vector_search(&vector_query(vec![1.0, 0.0], "m", 10))
        .await
        .unwrap();
    let similarity = |id: MemoryId| {
        hits.iter()
            .find(|h| h.memory.id == id)
            .map(|h| h.similarity)
            .unwrap()
    };
    assert!((similarity(ids[0]) - 1.0).abs() < 1e-6, "kept: {hits:?}");
    assert!(similarity(ids[1]).abs() < 1e-6, "stale one replaced");
    assert!(similarity(ids[2]).abs() < 1e-6, "missing one filled");
    assert_eq!(hits.len(), 3);
    assert_eq!(
        storage
            .set_embeddings(&[(ids[0], embedding("m", vec![0.0, 1.0]))])
            .await
            .unwrap(),
        1
    );
    let hits = storage
        .vector_search(&vector_query(vec![0.0, 1.0], "m", 10))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| (h.similarity - 1.0).abs() < 1e-6));
    assert_eq!(storage.fill_embeddings(&[]).await.unwrap(), 0);
}

/// Links are followed both ways, bounded per memory, filtered.
pub async fn linked_memories_both_ways_and_bounded<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let hub = store
        .remember(new_memory("hub", "global"))
        .await
        .unwrap()
        .id;
    let mut spokes = Vec::new();
    for i in 0..4 {
        let mut new = new_memory(&format!("spoke {i}"), "global");
        new.importance = Importance::try_from(i + 2).unwrap();
        spokes.push(store.remember(new).await.unwrap().id);
    }
    store
        .link(hub, spokes[0], LinkType::RelatesTo)
        .await
        .unwrap();
    store
        .link(hub, spokes[1], LinkType::DependsOn)
        .await
        .unwrap();
    store.link(spokes[2], hub, LinkType::Fixes).await.unwrap();
    store.link(spokes[3], hub, LinkType::PartOf).await.unwrap();
    store
        .link(spokes[0], spokes[1], LinkType::RelatesTo)
        .await
        .unwrap();

    let linked = store
        .storage()
        .linked_memories(&[hub], 10, false)
        .await
        .unwrap();
    let mut got: Vec<MemoryId> = linked.iter().map(|l| l.memory.id).collect();
    got.sort();
    let mut want = spokes.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(linked.iter().all(|l| l.from == hub));

    let top2 = store
        .storage()
        .linked_memories(&[hub], 2, false)
        .await
        .unwrap();
    assert_eq!(
        top2.iter().map(|l| l.memory.id).collect::<Vec<_>>(),
        [spokes[3], spokes[2]],
        "highest importance first"
    );

    let pair = store
        .storage()
        .linked_memories(&[spokes[0], hub], 10, false)
        .await
        .unwrap();
    assert!(
        pair.iter()
            .any(|l| l.from == spokes[0] && l.memory.id == hub),
        "given ids linked to each other"
    );
    assert!(pair.iter().all(|l| l.from != l.memory.id));

    store.forget(spokes[3], false).await.unwrap();
    let linked = store
        .storage()
        .linked_memories(&[hub], 10, false)
        .await
        .unwrap();
    assert_eq!(linked.len(), 3);
    assert_eq!(
        store
            .storage()
            .linked_memories(&[hub], 10, true)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// A memory reached from two of the given ids comes back once per given id,
/// each copy with all of its own links.
pub async fn a_memory_linked_from_two_given_ids_comes_with_its_links_each_time<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let mut ids = Vec::new();
    for name in ["first", "second", "shared", "beyond"] {
        ids.push(store.remember(new_memory(name, "global")).await.unwrap().id);
    }
    let [first, second, shared, beyond] = ids[..] else {
        unreachable!()
    };
    store
        .link(first, shared, LinkType::RelatesTo)
        .await
        .unwrap();
    store
        .link(second, shared, LinkType::DependsOn)
        .await
        .unwrap();
    store.link(shared, beyond, LinkType::PartOf).await.unwrap();

    let linked = store
        .storage()
        .linked_memories(&[first, second], 10, false)
        .await
        .unwrap();
    let copies: Vec<_> = linked.iter().filter(|l| l.memory.id == shared).collect();
    let mut from: Vec<MemoryId> = copies.iter().map(|l| l.from).collect();
    from.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(from, want, "{linked:?}");
    for copy in copies {
        assert_eq!(
            copy.memory.links,
            [Link {
                target: beyond,
                link_type: LinkType::PartOf
            }],
            "the copy reached from {} lost its links",
            copy.from
        );
    }
}

/// Vectors that are not finite numbers, have no dimensions or too many are
/// refused with one line, by every call that takes a vector, and nothing
/// is stored.
pub async fn vectors_must_be_finite_and_sized<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    let kept = store.remember(new_memory("kept", "global")).await.unwrap();
    let bad_vectors = [
        vec![0.5, f32::NAN, 0.5],
        vec![0.5, f32::INFINITY, 0.5],
        vec![f32::NEG_INFINITY; 3],
        Vec::new(),
        vec![0.01; mnemosyne_core::EMBEDDING_DIMS_MAX + 1],
    ];
    for vector in bad_vectors {
        let dims = vector.len();
        let embedding = Embedding {
            model_id: "m".into(),
            vector: vector.clone(),
        };
        let memory = new_memory("never stored", "global")
            .into_memory(store.limits(), chrono::Utc::now())
            .unwrap();
        let errors = [
            storage
                .insert_memory(&memory, Some(&embedding))
                .await
                .unwrap_err(),
            storage
                .set_embeddings(&[(kept.id, embedding.clone())])
                .await
                .unwrap_err(),
            storage
                .fill_embeddings(&[(kept.id, embedding.clone())])
                .await
                .unwrap_err(),
            storage
                .update_memory(
                    kept.id,
                    &MemoryPatch::default(),
                    chrono::Utc::now(),
                    Some(&embedding),
                )
                .await
                .unwrap_err(),
            storage
                .vector_search(&VectorQuery {
                    vector,
                    model_id: "m".into(),
                    namespaces: Vec::new(),
                    tags: Vec::new(),
                    limit: 5,
                    include_archived: false,
                    min_importance: None,
                })
                .await
                .unwrap_err(),
        ];
        for err in errors {
            assert!(
                matches!(&err, Error::InvalidInput(m) if !m.contains('\n')),
                "{dims} dimensions: {err:?}"
            );
        }
        assert!(storage.get_memory(memory.id).await.unwrap().is_none());
    }
    assert_eq!(
        storage
            .count_pending_embeddings("m", mnemosyne_core::PendingKind::Missing)
            .await
            .unwrap(),
        1
    );
    assert_eq!(storage.count_memories(true).await.unwrap(), 1);
}

/// Calls that take many memory ids refuse one more than the limit, and
/// answer at the limit.
pub async fn memory_id_lists_are_bounded<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    let stored = store
        .remember(new_memory("stored", "global"))
        .await
        .unwrap()
        .id;
    let unknown = MemoryId::new();
    let max = mnemosyne_core::MEMORY_IDS_PER_CALL_MAX;
    let at_limit = vec![stored; max];
    let over = vec![stored; max + 1];
    assert!(
        storage
            .linked_memories(&at_limit, 1, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        storage
            .missing_memories(&at_limit)
            .await
            .unwrap()
            .is_empty()
    );
    for err in [
        storage.linked_memories(&over, 1, false).await.unwrap_err(),
        storage.missing_memories(&over).await.unwrap_err(),
        storage
            .pending_embeddings_among("m", mnemosyne_core::PendingKind::Missing, &over)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains(&max.to_string())),
            "{err:?}"
        );
    }
    assert_eq!(
        storage
            .missing_memories(&[unknown, stored, unknown])
            .await
            .unwrap(),
        [unknown, unknown]
    );
    assert!(storage.missing_memories(&[]).await.unwrap().is_empty());
}

/// A small deterministic embedder for the facade tests: character trigrams
/// hashed into 64 dimensions (lexical, typo tolerant).
#[derive(Debug)]
pub struct TrigramEmbedder;

#[async_trait]
impl Embedder for TrigramEmbedder {
    fn model_id(&self) -> &str {
        "test-trigram-64"
    }

    fn dims(&self) -> usize {
        64
    }

    async fn embed(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut v = vec![0f32; 64];
                for word in text
                    .to_lowercase()
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    let padded: Vec<char> = format!("<{word}>").chars().collect();
                    for gram in padded.windows(3) {
                        let mut h: u64 = 0xcbf29ce484222325;
                        for c in gram {
                            h = (h ^ *c as u64).wrapping_mul(0x100000001b3);
                        }
                        v[(h % 64) as usize] += 1.0;
                    }
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect())
    }
}

pub async fn open_embedded<B: Backend>(path: &Path) -> MemoryStore {
    open::<B>(path, Limits::default())
        .await
        .with_embedder(Arc::new(TrigramEmbedder))
}

fn recall_mode(text: &str, mode: RecallMode) -> RecallQuery {
    RecallQuery {
        text: text.into(),
        mode,
        ..RecallQuery::default()
    }
}

/// Keyword and vector signals fuse; each hit says which signals found it.
pub async fn hybrid_recall_fuses_signals_and_explains_them<B: Backend>() {
    let f = fixture();
    let store = open_embedded::<B>(&f.path).await;
    let shutdown = store
        .remember(new_memory(
            "tokio runtime shutdown drains the work queue",
            "global",
        ))
        .await
        .unwrap();
    store
        .remember(new_memory("frontend build uses vite and vitest", "global"))
        .await
        .unwrap();
    store
        .remember(new_memory(
            "postgres vacuum settings for the analytics cluster",
            "global",
        ))
        .await
        .unwrap();

    let recall = store
        .recall(recall_mode("runtime shutdown", RecallMode::Hybrid))
        .await
        .unwrap();
    let top = &recall.hits[0];
    assert_eq!(top.memory.id, shutdown.id);
    assert_eq!(top.signals.keyword_rank, Some(1));
    assert_eq!(top.signals.vector_rank, Some(1));
    assert!(top.signals.similarity.unwrap() > 0.3);
    assert!(top.signals.rrf > 0.0 && top.score > 0.0);

    // A typo: BM25 finds nothing, the vector still does.
    let recall = store
        .recall(recall_mode("runtiem shutdonw", RecallMode::Hybrid))
        .await
        .unwrap();
    assert_eq!(recall.hits[0].memory.id, shutdown.id);
    assert_eq!(recall.hits[0].signals.keyword_rank, None);
    assert!(recall.hits[0].signals.vector_rank.is_some());
    assert!(
        store
            .recall(recall_mode("runtiem shutdonw", RecallMode::Keyword))
            .await
            .unwrap()
            .hits
            .is_empty()
    );

    let keyword_only = store
        .recall(recall_mode("runtime shutdown", RecallMode::Keyword))
        .await
        .unwrap();
    assert!(
        keyword_only
            .hits
            .iter()
            .all(|h| h.signals.vector_rank.is_none())
    );
    let vector_only = store
        .recall(recall_mode("runtime shutdown", RecallMode::Vector))
        .await
        .unwrap();
    assert!(
        vector_only
            .hits
            .iter()
            .all(|h| h.signals.keyword_rank.is_none())
    );
    assert_eq!(vector_only.hits[0].memory.id, shutdown.id);

    let without_embedder = open::<B>(&f.path, Limits::default()).await;
    let err = without_embedder
        .recall(recall_mode("runtime", RecallMode::Vector))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

/// Links pull in memories that share no words with the query; filters and
/// archiving still apply; the own namespace ranks first when otherwise equal.
pub async fn hybrid_recall_expands_links_and_respects_filters<B: Backend>() {
    let f = fixture();
    let store = open_embedded::<B>(&f.path).await;
    let hit = store
        .remember(new_memory("deadlock in the lease reaper", "project:atlas"))
        .await
        .unwrap();
    let linked = store
        .remember(new_memory(
            "always take the queue lock before the map lock",
            "project:atlas",
        ))
        .await
        .unwrap();
    let elsewhere = store
        .remember(new_memory(
            "ordering rule for cinder locks",
            "project:cinder",
        ))
        .await
        .unwrap();
    store
        .link(hit.id, linked.id, LinkType::Fixes)
        .await
        .unwrap();
    store
        .link(hit.id, elsewhere.id, LinkType::RelatesTo)
        .await
        .unwrap();

    let mut query = recall_mode("reaper deadlock", RecallMode::Hybrid);
    query.namespace = Some("project:atlas".parse().unwrap());
    let recall = store.recall(query.clone()).await.unwrap();
    let got = recall
        .hits
        .iter()
        .find(|h| h.memory.id == linked.id)
        .expect("linked memory recalled");
    assert_eq!(got.signals.linked_from, Some(hit.id));
    assert!(
        recall.hits.iter().all(|h| h.memory.id != elsewhere.id),
        "links do not leave the namespace filter"
    );
    let keyword = store
        .recall(RecallQuery {
            mode: RecallMode::Keyword,
            ..query.clone()
        })
        .await
        .unwrap();
    assert!(keyword.hits.iter().all(|h| h.memory.id != linked.id));

    store.forget(linked.id, false).await.unwrap();
    let recall = store.recall(query.clone()).await.unwrap();
    assert!(
        recall.hits.iter().all(|h| h.memory.id != linked.id),
        "archived memories stay hidden"
    );
    let recall = store
        .recall(RecallQuery {
            include_archived: true,
            ..query
        })
        .await
        .unwrap();
    assert!(recall.hits.iter().any(|h| h.memory.id == linked.id));

    let global = store
        .remember(new_memory("flaky test quarantine list", "global"))
        .await
        .unwrap();
    let own = store
        .remember(new_memory("flaky test quarantine list", "session:atlas/s1"))
        .await
        .unwrap();
    let mut query = recall_mode("flaky quarantine", RecallMode::Hybrid);
    query.namespace = Some("session:atlas/s1".parse().unwrap());
    let ids: Vec<MemoryId> = store
        .recall(query)
        .await
        .unwrap()
        .hits
        .iter()
        .map(|h| h.memory.id)
        .collect();
    let own_at = ids.iter().position(|id| *id == own.id).unwrap();
    let global_at = ids.iter().position(|id| *id == global.id).unwrap();
    assert!(
        own_at < global_at,
        "the session's own memory ranks above the global one: {ids:?}"
    );
}

/// Memories stored without an embedder (or by another model) are found by
/// reindex, embedded in resumable batches, then recalled by vector.
pub async fn reindex_embeds_missing_vectors_in_batches<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        reindex_batch_rows: 2,
        ..Limits::default()
    };
    let plain = open::<B>(&f.path, limits.clone()).await;
    for i in 0..5 {
        plain
            .remember(new_memory(&format!("reindexed note number {i}"), "global"))
            .await
            .unwrap();
    }
    plain.close().await;
    let store = open::<B>(&f.path, limits)
        .await
        .with_embedder(Arc::new(TrigramEmbedder));
    assert_eq!(store.pending_reindex().await.unwrap(), 5);
    let (embedded, after) = store.reindex_step(None).await.unwrap();
    assert_eq!(embedded, 2);
    assert_eq!(
        store.pending_reindex().await.unwrap(),
        3,
        "each batch commits on its own"
    );
    let mut after = after;
    let mut steps = 1;
    while let Some(last) = after {
        let (_, next) = store.reindex_step(Some(last)).await.unwrap();
        after = next;
        steps += 1;
    }
    assert_eq!(steps, 4);
    assert_eq!(store.pending_reindex().await.unwrap(), 0);
    let recall = store
        .recall(recall_mode("reindexed", RecallMode::Vector))
        .await
        .unwrap();
    assert_eq!(recall.hits.len(), 5);
}

/// Env var that makes [`open_files_child`] run (alone in its own process,
/// so other tests' files do not blur the count).
pub const FD_CHILD: &str = "MNEMOSYNE_TEST_FD_CHILD";

/// Runs [`open_files_child`] in a fresh process and requires it to pass.
pub async fn open_files_stay_bounded<B: Backend>() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env(FD_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fd check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("FDS "),
        "the child did not measure: {stdout}"
    );
}

/// Under concurrent load, open fds grow by at most two per pooled connection
/// plus the shared WAL index, and return to baseline after close.
pub async fn open_files_child<B: Backend>() {
    let f = fixture();
    let limits = Limits::default();
    let baseline = open_fds();
    let store = open::<B>(&f.path, limits.clone()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                store
                    .remember(new_memory(&format!("fd load {task} {i}"), "global"))
                    .await
                    .unwrap();
                store.recall(recall_text("fd load")).await.unwrap();
            }
        });
    }
    let mut peak = 0;
    let mut peak_files = Vec::new();
    while !tasks.is_empty() {
        let now = open_fds();
        if now > peak {
            peak = now;
            peak_files = open_fd_targets();
        }
        if let Ok(Some(joined)) =
            tokio::time::timeout(Duration::from_millis(5), tasks.join_next()).await
        {
            joined.unwrap();
        }
    }
    let connections = limits.pool_readers_max as usize + 1;
    // Each connection holds the database file and its WAL open; the WAL index
    // (-shm) is shared per process.
    let allowed = 2 * connections + 1;
    assert!(
        peak.saturating_sub(baseline) <= allowed,
        "fds grew by {} (baseline {baseline}, peak {peak}), allowed {allowed}; open at the peak: {peak_files:?}",
        peak - baseline
    );
    println!("FDS baseline {baseline} peak {peak} connections {connections}");
    store.close().await;
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        open_fds() <= baseline,
        "fds leaked after close: {} > {baseline}",
        open_fds()
    );
}

/// What each open fd of this process points at.
fn open_fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| {
                    std::fs::read_link(e.path())
                        .map_or_else(|e| e.to_string(), |p| p.display().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Env var that turns [`crash_child`] into the writer of [`crash_keeps_acknowledged_writes`].
pub const CRASH_CHILD_DB: &str = "MNEMOSYNE_TEST_CRASH_CHILD_DB";

/// In the child: remembers in a loop and prints `ACK <id>` after each commit.
pub async fn crash_child<B: Backend>(path: String) {
    use std::io::Write;
    let store = open::<B>(Path::new(&path), Limits::default()).await;
    let mut stdout = std::io::stdout().lock();
    for i in 0.. {
        let mut new = new_memory(
            &format!("crash write {i} with some padding text"),
            "project:atlas",
        );
        new.tags = vec!["crash".into()];
        let memory = store.remember(new).await.expect("write");
        writeln!(stdout, "ACK {}", memory.id).expect("stdout");
        stdout.flush().expect("flush");
    }
}

/// SIGKILLs a child mid-write loop; every acknowledged write must survive.
pub async fn crash_keeps_acknowledged_writes<B: Backend>() {
    use rand::Rng;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let f = fixture();
    let mut rng = rand::rng();
    let mut acked: Vec<MemoryId> = Vec::new();
    for round in 0..3 {
        let kill_after = rng.random_range(20..400);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CRASH_CHILD_DB, &f.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.parse().unwrap());
                seen += 1;
                if seen == kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the child was not killed: {status}"
        );
    }
    let store = open::<B>(&f.path, Limits::default()).await;
    assert_eq!(store.storage().integrity_check().await.unwrap(), "ok");
    for id in &acked {
        let memory = store.storage().get_memory(*id).await.unwrap();
        assert!(
            memory.is_some(),
            "acknowledged write {id} lost after SIGKILL"
        );
    }
    assert!(store.count(true).await.unwrap() >= acked.len() as u64);
}

/// A work item created `created_ms` after an arbitrary epoch, every list empty.
pub fn work_item(description: &str, state: WorkState, phase: Phase, created_ms: i64) -> WorkItem {
    let created_at =
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + created_ms).unwrap();
    WorkItem {
        id: WorkItemId::new(),
        description: description.into(),
        phase,
        state,
        priority: 0,
        dependencies: Vec::new(),
        requirements: Vec::new(),
        review_required: false,
        evidence: Vec::new(),
        review_feedback: Vec::new(),
        suggested_tests: Vec::new(),
        claimant: None,
        lease_expires_at: None,
        attempts: 0,
        failure_reason: None,
        created_at,
        updated_at: created_at,
    }
}

pub async fn open_backend<B: Backend>(path: &Path) -> B {
    B::open_at(path, &Limits::default())
        .await
        .expect("open store")
}

pub async fn work_items_round_trip_every_field_and_upsert_replaces<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    let now = chrono::Utc::now();
    let dependency = work_item("the schema", WorkState::Done, Phase::Done, 0);
    let item = WorkItem {
        id: WorkItemId::new(),
        description: "build the lease reaper \u{1F9F9} with a NUL \0 inside".into(),
        phase: Phase::Review,
        state: WorkState::Claimed,
        priority: -7,
        dependencies: vec![dependency.id, WorkItemId::new()],
        requirements: vec![
            Requirement {
                text: "expired leases return to pending".into(),
                met: true,
            },
            Requirement {
                text: "attempts are counted".into(),
                met: false,
            },
        ],
        review_required: true,
        evidence: vec![MemoryId::new(), MemoryId::new()],
        review_feedback: vec![
            "needs a paused clock test".into(),
            "\"quoted\"\nline".into(),
        ],
        suggested_tests: vec!["reaper_under_paused_clock".into()],
        claimant: Some("agent-7".into()),
        lease_expires_at: Some(now + chrono::Duration::seconds(300)),
        attempts: 2,
        failure_reason: Some("previous run crashed".into()),
        created_at: now,
        updated_at: now + chrono::Duration::milliseconds(1),
    };
    assert_eq!(storage.work_item(item.id).await.unwrap(), None);
    storage
        .save_work_items(&[item.clone(), dependency.clone()])
        .await
        .unwrap();
    assert_eq!(
        storage.work_item(item.id).await.unwrap().as_ref(),
        Some(&item)
    );
    assert_eq!(
        storage.work_item(dependency.id).await.unwrap().as_ref(),
        Some(&dependency)
    );
    assert_eq!(storage.work_item(WorkItemId::new()).await.unwrap(), None);
    storage.save_work_items(&[]).await.unwrap();

    let mut replaced = item.clone();
    replaced.state = WorkState::Done;
    replaced.phase = Phase::Done;
    replaced.priority = 9;
    replaced.claimant = None;
    replaced.lease_expires_at = None;
    replaced.failure_reason = None;
    replaced.requirements[1].met = true;
    replaced.evidence.push(MemoryId::new());
    replaced.review_feedback.clear();
    replaced.updated_at = now + chrono::Duration::seconds(1);
    storage.save_work_items(&[replaced.clone()]).await.unwrap();
    assert_eq!(
        storage.work_item(item.id).await.unwrap(),
        Some(replaced.clone())
    );
    assert_eq!(
        storage.count_work_items_by_state().await.unwrap(),
        [(WorkState::Done, 2)],
        "the upsert replaced the row instead of adding one"
    );
    assert!(storage.active_work_items().await.unwrap().is_empty());
    assert_eq!(
        storage
            .list_work_items(Some(WorkState::Done), Some(Phase::Done), 10, 0)
            .await
            .unwrap(),
        [replaced, dependency],
        "indexed columns follow the replacement"
    );
}

pub async fn work_item_batches_are_all_or_nothing_and_large<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    let items: Vec<WorkItem> = (0..1_000)
        .map(|i| work_item(&format!("item {i}"), WorkState::Pending, Phase::Spec, i))
        .collect();
    storage.save_work_items(&items).await.unwrap();
    assert_eq!(storage.active_work_items().await.unwrap(), items);
    assert_eq!(
        storage.count_work_items_by_state().await.unwrap(),
        [(WorkState::Pending, 1_000)]
    );
    storage.close().await;
    drop(storage);

    // A trigger that refuses one item makes a batch fail half way.
    B::exec_raw(
        &f.path,
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON work_items \
         WHEN new.body LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned item'); END;",
    )
    .await;
    let storage = open_backend::<B>(&f.path).await;
    let mut claimed = items[0].clone();
    claimed.state = WorkState::Claimed;
    claimed.claimant = Some("agent-1".into());
    let fresh = work_item("fresh", WorkState::Pending, Phase::Plan, 5_000);
    let poison = work_item("poison", WorkState::Pending, Phase::Plan, 5_001);
    let err = storage
        .save_work_items(&[claimed, fresh.clone(), poison.clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    assert_eq!(
        storage.work_item(items[0].id).await.unwrap().as_ref(),
        Some(&items[0]),
        "the update before the failure was rolled back"
    );
    assert_eq!(storage.work_item(fresh.id).await.unwrap(), None);
    assert_eq!(storage.work_item(poison.id).await.unwrap(), None);
    assert_eq!(
        storage.count_work_items_by_state().await.unwrap(),
        [(WorkState::Pending, 1_000)]
    );
    storage
        .save_work_items(std::slice::from_ref(&fresh))
        .await
        .unwrap();
    assert_eq!(storage.work_item(fresh.id).await.unwrap(), Some(fresh));
}

pub async fn pruning_keeps_the_newest_finished_and_every_dependency_of_an_active_item<
    B: Backend,
>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    // Finished 0..8 in this order, whatever their creation order.
    let states = [WorkState::Done, WorkState::Failed, WorkState::Cancelled];
    let finished: Vec<WorkItem> = (0..8)
        .map(|i| {
            let mut item = work_item(
                &format!("finished {i}"),
                states[i % 3],
                Phase::Done,
                100 - i as i64,
            );
            item.updated_at =
                chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + i as i64).unwrap();
            item
        })
        .collect();
    let mut pending = work_item("pending", WorkState::Pending, Phase::Implement, 0);
    // An active item that still names an old finished dependency.
    pending.dependencies = vec![finished[1].id];
    let claimed = work_item("claimed", WorkState::Claimed, Phase::Implement, 1);
    storage.save_work_items(&finished).await.unwrap();
    storage
        .save_work_items(&[pending.clone(), claimed.clone()])
        .await
        .unwrap();

    let pruned = storage.prune_finished_work_items(3).await.unwrap();
    // Items 0, 2, 3 and 4 go: 1 is a dependency of the pending item.
    assert_eq!(
        pruned,
        WorkPrune {
            deleted: 4,
            finished_stored: 4
        }
    );
    for (i, item) in finished.iter().enumerate() {
        let kept = storage.work_item(item.id).await.unwrap().is_some();
        assert_eq!(kept, i == 1 || i >= 5, "finished item {i}");
    }
    assert_eq!(
        storage.active_work_items().await.unwrap(),
        [pending.clone(), claimed.clone()],
        "active items are never pruned"
    );

    let again = storage.prune_finished_work_items(3).await.unwrap();
    assert_eq!(
        again,
        WorkPrune {
            deleted: 0,
            finished_stored: 4
        },
        "pruning is idempotent"
    );
    // Once nothing active depends on it, the old dependency goes too.
    let mut done = pending.clone();
    done.state = WorkState::Done;
    done.phase = Phase::Done;
    done.updated_at = chrono::DateTime::from_timestamp_millis(1_900_000_000_000).unwrap();
    storage.save_work_items(&[done.clone()]).await.unwrap();
    let pruned = storage.prune_finished_work_items(3).await.unwrap();
    assert_eq!(
        pruned,
        WorkPrune {
            deleted: 2,
            finished_stored: 3
        }
    );
    assert_eq!(storage.work_item(finished[1].id).await.unwrap(), None);
    assert_eq!(storage.work_item(done.id).await.unwrap(), Some(done));
    assert_eq!(
        storage.count_work_items_by_state().await.unwrap(),
        [
            (WorkState::Claimed, 1),
            (WorkState::Done, 2),
            (WorkState::Failed, 1),
        ]
    );
    let all_kept = storage.prune_finished_work_items(u64::MAX).await.unwrap();
    assert_eq!(
        all_kept,
        WorkPrune {
            deleted: 0,
            finished_stored: 3
        }
    );
}

pub async fn active_work_items_survive_a_restart<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    let states = [
        WorkState::Claimed,
        WorkState::Done,
        WorkState::Pending,
        WorkState::Failed,
        WorkState::Cancelled,
    ];
    // Saved newest first, in separate transactions, so order comes from created_at.
    let mut items: Vec<WorkItem> = (0..20)
        .map(|i| {
            let state = states[i % states.len()];
            work_item(&format!("item {i}"), state, Phase::Implement, i as i64)
        })
        .collect();
    items[0].claimant = Some("agent-1".into());
    items[0].lease_expires_at = Some(chrono::Utc::now());
    for item in items.iter().rev() {
        storage
            .save_work_items(std::slice::from_ref(item))
            .await
            .unwrap();
    }
    storage.close().await;
    drop(storage);

    let storage = open_backend::<B>(&f.path).await;
    let active: Vec<WorkItem> = items
        .iter()
        .filter(|item| item.state.is_active())
        .cloned()
        .collect();
    assert_eq!(active.len(), 8);
    assert_eq!(storage.active_work_items().await.unwrap(), active);
    for item in &items {
        assert_eq!(
            storage.work_item(item.id).await.unwrap().as_ref(),
            Some(item)
        );
    }
    assert_eq!(
        storage.count_work_items_by_state().await.unwrap(),
        [
            (WorkState::Pending, 4),
            (WorkState::Claimed, 4),
            (WorkState::Done, 4),
            (WorkState::Failed, 4),
            (WorkState::Cancelled, 4),
        ]
    );
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
}

pub async fn work_item_states_skip_unknown_ids<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    assert!(storage.work_item_states(&[]).await.unwrap().is_empty());
    // More than one query's worth of ids, known and unknown mixed.
    let items: Vec<WorkItem> = (0..700)
        .map(|i| {
            let state = if i % 3 == 0 {
                WorkState::Done
            } else {
                WorkState::Pending
            };
            work_item(&format!("item {i}"), state, Phase::Spec, i)
        })
        .collect();
    storage.save_work_items(&items).await.unwrap();
    let mut ids = Vec::new();
    for item in &items {
        ids.push(item.id);
        ids.push(WorkItemId::new());
    }
    let mut states = storage.work_item_states(&ids).await.unwrap();
    states.sort_by_key(|(id, _)| *id);
    let mut expected: Vec<(WorkItemId, WorkState)> =
        items.iter().map(|item| (item.id, item.state)).collect();
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(states, expected);
    let unknown = [WorkItemId::new(), WorkItemId::new()];
    assert!(storage.work_item_states(&unknown).await.unwrap().is_empty());
}

pub async fn work_items_list_by_state_and_phase_with_paging<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    assert!(
        storage
            .count_work_items_by_state()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        storage
            .list_work_items(None, None, 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let items: Vec<WorkItem> = (0..60)
        .map(|i| {
            let state = WorkState::ALL[i % WorkState::ALL.len()];
            let phase = Phase::ALL[(i / 2) % Phase::ALL.len()];
            work_item(&format!("item {i}"), state, phase, i as i64)
        })
        .collect();
    storage.save_work_items(&items).await.unwrap();
    let newest_first = |keep: &dyn Fn(&WorkItem) -> bool| -> Vec<WorkItem> {
        items
            .iter()
            .rev()
            .filter(|item| keep(item))
            .cloned()
            .collect()
    };

    assert_eq!(
        storage.list_work_items(None, None, 100, 0).await.unwrap(),
        newest_first(&|_| true)
    );
    for state in WorkState::ALL {
        assert_eq!(
            storage
                .list_work_items(Some(*state), None, 100, 0)
                .await
                .unwrap(),
            newest_first(&|item| item.state == *state),
            "{state}"
        );
    }
    for phase in Phase::ALL {
        assert_eq!(
            storage
                .list_work_items(None, Some(*phase), 100, 0)
                .await
                .unwrap(),
            newest_first(&|item| item.phase == *phase),
            "{phase}"
        );
    }
    let both = newest_first(&|item| item.state == WorkState::Pending && item.phase == Phase::Spec);
    assert!(!both.is_empty());
    assert_eq!(
        storage
            .list_work_items(Some(WorkState::Pending), Some(Phase::Spec), 100, 0)
            .await
            .unwrap(),
        both
    );

    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let page = storage
            .list_work_items(None, None, 7, offset)
            .await
            .unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        offset += page.len() as u64;
        paged.extend(page);
    }
    assert_eq!(
        paged,
        newest_first(&|_| true),
        "pages cover everything once"
    );
    let page = storage
        .list_work_items(Some(WorkState::Done), None, 5, 5)
        .await
        .unwrap();
    assert_eq!(
        page,
        newest_first(&|item| item.state == WorkState::Done)[5..10]
    );
    assert!(
        storage
            .list_work_items(None, None, 0, 0)
            .await
            .unwrap()
            .is_empty()
    );

    let counts = storage.count_work_items_by_state().await.unwrap();
    let expected: Vec<(WorkState, u64)> = WorkState::ALL.iter().map(|s| (*s, 12)).collect();
    assert_eq!(counts, expected);
}

pub async fn corrupt_work_item_is_an_error_not_a_panic<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    storage.close().await;
    drop(storage);
    let id = WorkItemId::new();
    B::exec_raw(
        &f.path,
        &format!(
            "INSERT INTO work_items (id, state, phase, priority, created_at_ms, updated_at_ms, body) \
             VALUES ('{id}', 'pending', 'spec', 0, 1, 1, '{{\"id\": \"{id}\", \"description\": ');"
        ),
    )
    .await;
    let storage = open_backend::<B>(&f.path).await;
    for err in [
        storage.work_item(id).await.unwrap_err(),
        storage.active_work_items().await.unwrap_err(),
        storage
            .list_work_items(None, None, 10, 0)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Storage(m) if m.contains(&format!("corrupt work item {id}"))),
            "{err:?}"
        );
    }
    assert_eq!(
        storage.work_item_states(&[id]).await.unwrap(),
        [(id, WorkState::Pending)]
    );
}

pub async fn migrates_a_version_3_database_to_work_items<B: Backend>() {
    let f = fixture();
    let v3 = mnemosyne_storage::schema::MIGRATIONS[..3].join("\n");
    let id = MemoryId::new();
    B::exec_raw(
        &f.path,
        &format!(
            "{v3}\nINSERT INTO memories (id, namespace, content, memory_type, importance, tags, \
             created_at_ms, updated_at_ms, accessed_at_ms) VALUES \
             ('{id}', 'project:atlas', 'written by version three', 'fact', 7, 'legacy', 1, 2, 3);\n\
             INSERT INTO memory_tags (tag, memory_seq) SELECT 'legacy', seq FROM memories;\n\
             PRAGMA user_version = 3;"
        ),
    )
    .await;
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    assert_eq!(storage.schema_version().await.unwrap(), SCHEMA_VERSION);
    let memory = store.get(id).await.unwrap();
    assert_eq!(memory.content, "written by version three");
    assert_eq!(memory.tags, ["legacy"]);
    assert_eq!(recall_ids(&store, recall_text("version three")).await, [id]);
    assert!(
        storage
            .count_work_items_by_state()
            .await
            .unwrap()
            .is_empty()
    );
    let item = work_item("after the upgrade", WorkState::Pending, Phase::Plan, 0);
    storage
        .save_work_items(std::slice::from_ref(&item))
        .await
        .unwrap();
    assert_eq!(storage.active_work_items().await.unwrap(), [item]);
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
}

/// The child halves of the tests that need a process of their own: when
/// the binary was started as one (an env var says so), runs it and returns
/// true; the binary then exits without running any test.
pub fn run_child<B: Backend>() -> bool {
    if std::env::var_os(FD_CHILD).is_some() {
        runtime().block_on(open_files_child::<B>());
        return true;
    }
    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        runtime().block_on(crash_child::<B>(path));
        return true;
    }
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One test: `test` run to its end on a runtime of its own (two workers).
pub fn trial<F, Fut>(name: &str, test: F) -> libtest_mimic::Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    libtest_mimic::Trial::test(name, move || {
        runtime().block_on(test());
        Ok(())
    })
}

/// Runs `trials` as `cargo test` runs tests (same arguments and output).
pub fn run(trials: Vec<libtest_mimic::Trial>) -> std::process::ExitCode {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit_code()
}

/// The whole conformance suite for backend `$backend`, one trial per check.
#[macro_export]
macro_rules! conformance_trials {
    ($backend:ty) => {
        vec![
            conformance::trial("crud", conformance::crud::<$backend>),
            conformance::trial("an_access_count_at_its_maximum_stays_readable", conformance::an_access_count_at_its_maximum_stays_readable::<$backend>),
            conformance::trial("rejects_invalid_input_and_stores_nothing", conformance::rejects_invalid_input_and_stores_nothing::<$backend>),
            conformance::trial("namespaces_filter_and_respect_the_hierarchy", conformance::namespaces_filter_and_respect_the_hierarchy::<$backend>),
            conformance::trial("tags_filter_list_and_recall", conformance::tags_filter_list_and_recall::<$backend>),
            conformance::trial("links_are_typed_bounded_and_cascade", conformance::links_are_typed_bounded_and_cascade::<$backend>),
            conformance::trial("keyword_search_ranks_and_quotes_user_text", conformance::keyword_search_ranks_and_quotes_user_text::<$backend>),
            conformance::trial("frequent_words_are_bounded_but_still_count", conformance::frequent_words_are_bounded_but_still_count::<$backend>),
            conformance::trial("archive_hides_and_hard_delete_removes", conformance::archive_hides_and_hard_delete_removes::<$backend>),
            conformance::trial("pagination_covers_everything_once", conformance::pagination_covers_everything_once::<$backend>),
            conformance::trial("limits_bound_results", conformance::limits_bound_results::<$backend>),
            conformance::trial("batches_are_all_or_nothing", conformance::batches_are_all_or_nothing::<$backend>),
            conformance::trial("a_large_write_does_not_leave_a_large_wal", conformance::a_large_write_does_not_leave_a_large_wal::<$backend>),
            conformance::trial("concurrent_readers_and_writer_never_see_locks", conformance::concurrent_readers_and_writer_never_see_locks::<$backend>),
            conformance::trial("pool_exhaustion_times_out", conformance::pool_exhaustion_times_out::<$backend>),
            conformance::trial("migrates_from_empty_and_reopens", conformance::migrates_from_empty_and_reopens::<$backend>),
            conformance::trial("migrates_a_version_1_database", conformance::migrates_a_version_1_database::<$backend>),
            conformance::trial("refuses_a_newer_database", conformance::refuses_a_newer_database::<$backend>),
            conformance::trial("vector_search_matches_brute_force", conformance::vector_search_matches_brute_force::<$backend>),
            conformance::trial("vector_search_filters", conformance::vector_search_filters::<$backend>),
            conformance::trial("vectors_follow_updates_deletes_and_models", conformance::vectors_follow_updates_deletes_and_models::<$backend>),
            conformance::trial("pending_embeddings_find_missing_and_stale", conformance::pending_embeddings_find_missing_and_stale::<$backend>),
            conformance::trial("fill_embeddings_never_replaces_a_vector_of_the_same_model", conformance::fill_embeddings_never_replaces_a_vector_of_the_same_model::<$backend>),
            conformance::trial("the_worker_embeds_remembered_memories_off_the_write_path", conformance::the_worker_embeds_remembered_memories_off_the_write_path::<$backend>),
            conformance::trial("a_vector_made_before_an_update_never_replaces_the_updates_vector", conformance::a_vector_made_before_an_update_never_replaces_the_updates_vector::<$backend>),
            conformance::trial("a_full_embedding_backlog_refuses_remember_and_stores_nothing", conformance::a_full_embedding_backlog_refuses_remember_and_stores_nothing::<$backend>),
            conformance::trial("a_remember_waiting_for_room_embeds_inline_once_the_worker_stops", conformance::a_remember_waiting_for_room_embeds_inline_once_the_worker_stops::<$backend>),
            conformance::trial("a_failing_embedder_is_retried_with_backoff_and_loses_nothing", conformance::a_failing_embedder_is_retried_with_backoff_and_loses_nothing::<$backend>),
            conformance::trial("the_next_worker_embeds_what_the_last_one_left", conformance::the_next_worker_embeds_what_the_last_one_left::<$backend>),
            conformance::trial("embed_pending_embeds_in_batches_with_progress", conformance::embed_pending_embeds_in_batches_with_progress::<$backend>),
            conformance::trial("linked_memories_both_ways_and_bounded", conformance::linked_memories_both_ways_and_bounded::<$backend>),
            conformance::trial("a_memory_linked_from_two_given_ids_comes_with_its_links_each_time", conformance::a_memory_linked_from_two_given_ids_comes_with_its_links_each_time::<$backend>),
            conformance::trial("vectors_must_be_finite_and_sized", conformance::vectors_must_be_finite_and_sized::<$backend>),
            conformance::trial("memory_id_lists_are_bounded", conformance::memory_id_lists_are_bounded::<$backend>),
            conformance::trial("context_follows_links_both_ways_hop_by_hop", conformance::context_follows_links_both_ways_hop_by_hop::<$backend>),
            conformance::trial("context_bounds_fan_out_and_total_and_refuses_more", conformance::context_bounds_fan_out_and_total_and_refuses_more::<$backend>),
            conformance::trial("min_importance_filters_list_and_recall", conformance::min_importance_filters_list_and_recall::<$backend>),
            conformance::trial("hybrid_recall_fuses_signals_and_explains_them", conformance::hybrid_recall_fuses_signals_and_explains_them::<$backend>),
            conformance::trial("hybrid_recall_expands_links_and_respects_filters", conformance::hybrid_recall_expands_links_and_respects_filters::<$backend>),
            conformance::trial("reindex_embeds_missing_vectors_in_batches", conformance::reindex_embeds_missing_vectors_in_batches::<$backend>),
            conformance::trial("work_items_round_trip_every_field_and_upsert_replaces", conformance::work_items_round_trip_every_field_and_upsert_replaces::<$backend>),
            conformance::trial("work_item_batches_are_all_or_nothing_and_large", conformance::work_item_batches_are_all_or_nothing_and_large::<$backend>),
            conformance::trial("pruning_keeps_the_newest_finished_and_every_dependency_of_an_active_item", conformance::pruning_keeps_the_newest_finished_and_every_dependency_of_an_active_item::<$backend>),
            conformance::trial("active_work_items_survive_a_restart", conformance::active_work_items_survive_a_restart::<$backend>),
            conformance::trial("work_item_states_skip_unknown_ids", conformance::work_item_states_skip_unknown_ids::<$backend>),
            conformance::trial("work_items_list_by_state_and_phase_with_paging", conformance::work_items_list_by_state_and_phase_with_paging::<$backend>),
            conformance::trial("corrupt_work_item_is_an_error_not_a_panic", conformance::corrupt_work_item_is_an_error_not_a_panic::<$backend>),
            conformance::trial("migrates_a_version_3_database_to_work_items", conformance::migrates_a_version_3_database_to_work_items::<$backend>),
            conformance::trial("documents_create_save_load_and_compare_revisions", conformance::documents_create_save_load_and_compare_revisions::<$backend>),
            conformance::trial("documents_list_by_namespace_with_paging", conformance::documents_list_by_namespace_with_paging::<$backend>),
            conformance::trial("migrates_a_version_4_database_to_documents", conformance::migrates_a_version_4_database_to_documents::<$backend>),
            conformance::trial("open_files_stay_bounded", conformance::open_files_stay_bounded::<$backend>),
            conformance::trial("crash_keeps_acknowledged_writes", conformance::crash_keeps_acknowledged_writes::<$backend>),
        ]
    };
}

/// One trial per backend-specific test function of a test file, named after it.
#[macro_export]
macro_rules! named_trials {
    ($($name:ident),+ $(,)?) => {
        vec![$(conformance::trial(stringify!($name), $name)),+]
    };
}
