//! The storage conformance suite: written once, run unchanged against every
//! backend. A backend's test file implements [`Backend`] and invokes
//! [`conformance_tests!`].

#![allow(dead_code, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mnemosyne_core::{
    Error, Importance, Limits, Link, LinkType, ListQuery, ListSort, Memory, MemoryId, MemoryPatch,
    MemoryType, Namespace, NewMemory, OnConflict, Storage,
};
use mnemosyne_storage::schema::SCHEMA_VERSION;
use mnemosyne_storage::{MemoryStore, RecallQuery};

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
        store.storage().insert_memory(&got).await,
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
    assert_eq!(recall.hits[0].signals.keyword_rank, 1);
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
    assert_eq!((outcome.linked, outcome.missing), (1, 1));
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

/// Env var that makes [`open_files_child`] run (alone in its own process,
/// so other tests' files do not blur the count).
pub const FD_CHILD: &str = "MNEMOSYNE_TEST_FD_CHILD";

/// Runs [`open_files_child`] in a fresh process and requires it to pass.
pub async fn open_files_stay_bounded<B: Backend>(child_test_name: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            child_test_name,
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(FD_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
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
    if std::env::var_os(FD_CHILD).is_none() {
        return;
    }
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
    while !tasks.is_empty() {
        peak = peak.max(open_fds());
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
        "fds grew by {} (baseline {baseline}, peak {peak}), allowed {allowed}",
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

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Env var that turns [`crash_child`] into the writer of [`crash_keeps_acknowledged_writes`].
pub const CRASH_CHILD_DB: &str = "MNEMOSYNE_TEST_CRASH_CHILD_DB";

/// In the child: remembers in a loop and prints `ACK <id>` after each commit.
pub async fn crash_child<B: Backend>() {
    use std::io::Write;
    let Ok(path) = std::env::var(CRASH_CHILD_DB) else {
        return;
    };
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
pub async fn crash_keeps_acknowledged_writes<B: Backend>(child_test_name: &str) {
    use rand::Rng;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let f = fixture();
    let mut rng = rand::rng();
    let mut acked: Vec<MemoryId> = Vec::new();
    for round in 0..3 {
        let kill_after = rng.random_range(20..400);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                child_test_name,
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
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

/// Expands to one `#[tokio::test]` per conformance check for backend `$backend`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ty) => {
        $crate::conformance_tests!(@tests $backend;
            crud,
            rejects_invalid_input_and_stores_nothing,
            namespaces_filter_and_respect_the_hierarchy,
            tags_filter_list_and_recall,
            links_are_typed_bounded_and_cascade,
            keyword_search_ranks_and_quotes_user_text,
            frequent_words_are_bounded_but_still_count,
            archive_hides_and_hard_delete_removes,
            pagination_covers_everything_once,
            limits_bound_results,
            batches_are_all_or_nothing,
            concurrent_readers_and_writer_never_see_locks,
            pool_exhaustion_times_out,
            migrates_from_empty_and_reopens,
            migrates_a_version_1_database,
            refuses_a_newer_database,
            open_files_child,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn open_files_stay_bounded() {
            conformance::open_files_stay_bounded::<$backend>("open_files_child").await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn crash_child() {
            conformance::crash_child::<$backend>().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn crash_keeps_acknowledged_writes() {
            conformance::crash_keeps_acknowledged_writes::<$backend>("crash_child").await;
        }
    };
    (@tests $backend:ty; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                conformance::$name::<$backend>().await;
            }
        )+
    };
}
