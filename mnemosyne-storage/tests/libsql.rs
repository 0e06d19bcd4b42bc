//! The conformance suite against the `libsql` backend (local file), plus the
//! libsql-specific checks: migrations really applied, remote errors are clear.

#[macro_use]
mod conformance;

use std::path::Path;

use async_trait::async_trait;
use mnemosyne_core::{
    Embedding, Error, Limits, Memory, MemoryId, MemoryStorage, NewMemory, OnConflict, StorageAdmin,
    VectorQuery,
};
use mnemosyne_storage::rows::cosine;
use mnemosyne_storage::schema::SCHEMA_VERSION;
use mnemosyne_storage::{LibsqlStorage, Location};

#[async_trait]
impl conformance::Backend for LibsqlStorage {
    type Held = mnemosyne_storage::HeldConnection;

    async fn open_at(path: &Path, limits: &Limits) -> mnemosyne_core::Result<Self> {
        LibsqlStorage::open(&Location::File(path.to_owned()), limits).await
    }

    async fn hold(&self) -> mnemosyne_core::Result<Self::Held> {
        self.hold_reader().await
    }

    async fn exec_raw(path: &Path, sql: &str) {
        let db = libsql::Builder::new_local(path).build().await.unwrap();
        let conn = db.connect().unwrap();
        conn.execute_batch(sql).await.unwrap();
    }
}

fn main() -> std::process::ExitCode {
    if conformance::run_child::<LibsqlStorage>() {
        return std::process::ExitCode::SUCCESS;
    }
    let mut trials = conformance_trials!(LibsqlStorage);
    trials.extend(named_trials![
        migrations_really_apply_with_triggers_and_wal,
        content_round_trips_unusual_text,
        a_file_path_with_a_nul_byte_is_an_error_not_a_panic,
        an_unreachable_server_is_a_clear_error,
        a_refusing_server_is_a_clear_error,
        a_panic_inside_libsql_is_an_error,
        vector_index_rows_follow_the_vectors,
        approximate_search_ranks_exactly_and_filters_fall_back,
        opening_bounds_the_sqlite_heap_of_the_process
    ]);
    conformance::run(trials)
}

/// Runs one query on the file with a fresh libsql connection; the first column of every row.
async fn raw_column(path: &Path, sql: &str) -> Vec<libsql::Value> {
    let db = libsql::Builder::new_local(path).build().await.unwrap();
    let conn = db.connect().unwrap();
    let mut rows = conn.query(sql, ()).await.unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        out.push(row.get_value(0).unwrap());
    }
    out
}

async fn migrations_really_apply_with_triggers_and_wal() {
    let f = conformance::fixture();
    let storage = LibsqlStorage::open(&Location::File(f.path.clone()), &Limits::default())
        .await
        .unwrap();
    assert_eq!(storage.backend_name(), "libsql");
    assert_eq!(storage.schema_version().await.unwrap(), SCHEMA_VERSION);
    storage.close().await;
    drop(storage);

    assert_eq!(
        raw_column(&f.path, "PRAGMA user_version").await,
        [libsql::Value::Integer(SCHEMA_VERSION.into())]
    );
    let triggers = raw_column(
        &f.path,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .await;
    assert_eq!(
        triggers,
        [
            "memories_fts_delete",
            "memories_fts_insert",
            "memories_fts_update"
        ]
        .map(|name| libsql::Value::Text(name.into()))
    );
    let tables = raw_column(
        &f.path,
        "SELECT name FROM sqlite_master WHERE name IN ('memories', 'memories_fts', 'memory_tags', 'memory_links') ORDER BY name",
    )
    .await;
    assert_eq!(tables.len(), 4, "{tables:?}");
    assert_eq!(
        raw_column(&f.path, "PRAGMA journal_mode").await,
        [libsql::Value::Text("wal".into())]
    );
}

async fn content_round_trips_unusual_text() {
    let f = conformance::fixture();
    let store = conformance::open::<LibsqlStorage>(&f.path, Limits::default()).await;
    for content in [
        "emoji 🦀 and ümlauts, \"quotes\" and 'apostrophes'",
        "line one\nline two\ttabbed",
        "'); DROP TABLE memories; --",
        "a NUL \0 byte inside",
    ] {
        let stored = store
            .remember(conformance::new_memory(content, "global"))
            .await
            .unwrap();
        assert_eq!(store.get(stored.id).await.unwrap().content, content);
    }
    assert_eq!(store.count(true).await.unwrap(), 4);
    let mut listed: Vec<String> = store
        .list(mnemosyne_core::ListQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    listed.sort();
    assert!(
        listed.contains(&"a NUL \0 byte inside".to_string()),
        "{listed:?}"
    );
    let hits = store
        .recall(conformance::recall_text("byte"))
        .await
        .unwrap()
        .hits;
    assert_eq!(hits[0].memory.content, "a NUL \0 byte inside");
}

async fn a_file_path_with_a_nul_byte_is_an_error_not_a_panic() {
    let location = Location::File("bad\0name.db".into());
    let err = LibsqlStorage::open(&location, &Limits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("NUL")),
        "{err:?}"
    );
}

async fn an_unreachable_server_is_a_clear_error() {
    // Nothing listens on port 9 (discard) of localhost here: connection refused.
    let location = Location::parse("http://127.0.0.1:9", Some("token".into()));
    let err = LibsqlStorage::open(&location, &Limits::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::Storage(_))
            && message.contains("cannot reach libsql server http://127.0.0.1:9"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

/// Serves every connection on a local port with one canned HTTP response.
async fn canned_server(response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 16 * 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(response).await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

async fn a_refusing_server_is_a_clear_error() {
    let url = canned_server(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 12\r\nconnection: close\r\n\r\nunauthorized",
    )
    .await;
    let err = LibsqlStorage::open(&Location::parse(&url, None), &Limits::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("cannot reach libsql server {url}")) && message.contains("401"),
        "{message}"
    );
}

async fn a_panic_inside_libsql_is_an_error() {
    // libsql 0.9 unwraps an error body as UTF-8: this one makes it panic.
    let url = canned_server(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\n\xff\xfe\x00\x01",
    )
    .await;
    let err = LibsqlStorage::open(&Location::parse(&url, None), &Limits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Storage(m) if m.contains("cannot reach libsql server")),
        "{err:?}"
    );
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

fn memory(content: &str, namespace: &str) -> Memory {
    NewMemory {
        namespace: namespace.parse().unwrap(),
        ..NewMemory::new(content)
    }
    .into_memory(&Limits::default(), chrono::Utc::now())
    .unwrap()
}

async fn count(path: &Path, sql: &str) -> i64 {
    match raw_column(path, sql).await.as_slice() {
        [libsql::Value::Integer(n)] => *n,
        other => panic!("{sql}: {other:?}"),
    }
}

/// The per-size index tables (and libsql's DiskANN shadow tables behind
/// them) gain and lose rows with the vectors: deletes, size changes, zero vectors.
async fn vector_index_rows_follow_the_vectors() {
    use rand::SeedableRng;
    let f = conformance::fixture();
    let storage = LibsqlStorage::open(&Location::File(f.path.clone()), &Limits::default())
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut ids = Vec::new();
    for i in 0..6 {
        let m = memory(&format!("indexed {i}"), "global");
        let vector = random_unit(&mut rng, 8);
        storage
            .insert_memory(&m, Some(&embedding("small", vector)))
            .await
            .unwrap();
        ids.push(m.id);
    }
    let zero = memory("zero vector", "global");
    storage
        .insert_memory(&zero, Some(&embedding("small", vec![0.0; 8])))
        .await
        .unwrap();
    let index = "SELECT count(*) FROM memory_vectors_8";
    let shadow = "SELECT count(*) FROM memory_vectors_8_ann_shadow";
    assert_eq!(
        count(&f.path, "SELECT count(*) FROM memory_embeddings").await,
        7
    );
    assert_eq!(
        count(&f.path, index).await,
        6,
        "a zero vector is stored, not indexed"
    );
    assert_eq!(count(&f.path, shadow).await, 6);

    storage.delete_memory(ids[0]).await.unwrap();
    assert_eq!(
        count(&f.path, index).await,
        5,
        "a delete cascades into the index"
    );
    assert_eq!(count(&f.path, shadow).await, 5);

    // Re-embedded with another size: the row moves to that size's index.
    let moved = [(ids[1], embedding("wide", random_unit(&mut rng, 24)))];
    assert_eq!(storage.set_embeddings(&moved).await.unwrap(), 1);
    assert_eq!(count(&f.path, index).await, 4);
    assert_eq!(count(&f.path, shadow).await, 4);
    assert_eq!(
        count(&f.path, "SELECT count(*) FROM memory_vectors_24").await,
        1
    );
    // Re-embedded with the same size: replaced, not duplicated.
    let same = [(ids[2], embedding("small", random_unit(&mut rng, 8)))];
    assert_eq!(storage.set_embeddings(&same).await.unwrap(), 1);
    assert_eq!(count(&f.path, index).await, 4);
    assert_eq!(count(&f.path, shadow).await, 4);

    let hits = storage
        .vector_search(&VectorQuery {
            vector: random_unit(&mut rng, 8),
            model_id: "small".into(),
            namespaces: Vec::new(),
            tags: Vec::new(),
            limit: 10,
            include_archived: false,
            min_importance: None,
        })
        .await
        .unwrap();
    assert_eq!(hits.len(), 5, "the zero vector is still compared exactly");
    let zero_hit = hits.iter().find(|h| h.memory.id == zero.id).unwrap();
    assert_eq!(zero_hit.similarity, 0.0);
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
}

/// Above the exact-scan bound the index proposes candidates: hits are still
/// ranked by exact similarity, and filters that reject the index's
/// candidates fall back to an exact scan of the filtered memories.
async fn approximate_search_ranks_exactly_and_filters_fall_back() {
    use rand::SeedableRng;
    let f = conformance::fixture();
    let storage = LibsqlStorage::open(&Location::File(f.path.clone()), &Limits::default())
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    // 2 000 vectors is the exact-scan bound; the crowd makes the model larger.
    let dims = 16;
    let mut stored: Vec<(MemoryId, Vec<f32>)> = Vec::new();
    let mut memories = Vec::new();
    for i in 0..2_300 {
        memories.push(memory(&format!("crowd {i}"), "project:cinder"));
    }
    let mut few = Vec::new();
    for i in 0..5 {
        let mut m = memory(&format!("few {i}"), "project:atlas");
        if i == 2 {
            m.tags = vec!["pick".into()];
        }
        few.push(m);
    }
    memories.extend(few.iter().cloned());
    let outcome = storage
        .insert_memories(&memories, OnConflict::Fail)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 2_305);
    let items: Vec<(MemoryId, Embedding)> = memories
        .iter()
        .map(|m| (m.id, embedding("m", random_unit(&mut rng, dims))))
        .collect();
    assert_eq!(storage.set_embeddings(&items).await.unwrap(), 2_305);
    stored.extend(items.iter().map(|(id, e)| (*id, e.vector.clone())));
    let query = |vector: Vec<f32>, limit: u32| VectorQuery {
        vector,
        model_id: "m".into(),
        namespaces: Vec::new(),
        tags: Vec::new(),
        limit,
        include_archived: false,
        min_importance: None,
    };
    let brute = |q: &[f32], among: &[(MemoryId, Vec<f32>)], k: usize| -> Vec<MemoryId> {
        let mut scored: Vec<(MemoryId, f64)> =
            among.iter().map(|(id, v)| (*id, cosine(v, q))).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().take(k).map(|(id, _)| id).collect()
    };
    let by_id: std::collections::HashMap<MemoryId, &Vec<f32>> =
        stored.iter().map(|(id, v)| (*id, v)).collect();

    let mut found = 0;
    let trials = 20;
    for _ in 0..trials {
        let q = random_unit(&mut rng, dims);
        let hits = storage.vector_search(&query(q.clone(), 10)).await.unwrap();
        assert_eq!(hits.len(), 10);
        for pair in hits.windows(2) {
            assert!(pair[0].similarity >= pair[1].similarity, "best first");
        }
        for hit in &hits {
            let exact = cosine(by_id[&hit.memory.id], &q);
            assert!(
                (hit.similarity - exact).abs() < 1e-9,
                "ranked by the exact vector"
            );
        }
        let want = brute(&q, &stored, 10);
        found += hits.iter().filter(|h| want.contains(&h.memory.id)).count();
    }
    let recall = found as f64 / f64::from(trials * 10);
    assert!(recall >= 0.9, "recall@10 {recall}");

    // A stored vector finds its own memory first.
    let (own, vector) = stored[1_234].clone();
    let hits = storage.vector_search(&query(vector, 1)).await.unwrap();
    assert_eq!(hits[0].memory.id, own);
    assert!((hits[0].similarity - 1.0).abs() < 1e-6);

    // 5 of 2 305 in the namespace: the index's 200 candidates hold few or
    // none of them, the fallback scan finds them all, in exact order.
    let few_stored: Vec<(MemoryId, Vec<f32>)> =
        few.iter().map(|m| (m.id, by_id[&m.id].clone())).collect();
    for _ in 0..5 {
        let q = random_unit(&mut rng, dims);
        let mut filtered = query(q.clone(), 3);
        filtered.namespaces = vec!["project:atlas".parse().unwrap()];
        let hits = storage.vector_search(&filtered).await.unwrap();
        let got: Vec<MemoryId> = hits.iter().map(|h| h.memory.id).collect();
        assert_eq!(got, brute(&q, &few_stored, 3));
    }
    let mut tagged = query(random_unit(&mut rng, dims), 5);
    tagged.tags = vec!["pick".into()];
    let hits = storage.vector_search(&tagged).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.memory.id).collect::<Vec<_>>(),
        [few[2].id]
    );
    let err = storage
        .vector_search(&query(vec![0.5; 3], 5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m == "query vector has 3 dimensions, the model's vectors have 16"),
        "{err:?}"
    );
}

async fn opening_bounds_the_sqlite_heap_of_the_process() {
    let f = conformance::fixture();
    let limits = Limits::default();
    let storage = LibsqlStorage::open(&Location::File(f.path.clone()), &limits)
        .await
        .unwrap();
    // The soft heap limit is process-wide: a connection of our own sees it.
    assert_eq!(
        raw_column(&f.path, "PRAGMA soft_heap_limit").await,
        [libsql::Value::Integer(limits.sqlite_heap_bytes_max as i64)]
    );
    storage.close().await;
}
