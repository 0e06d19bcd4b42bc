//! The conformance suite against the `libsql` backend (local file), plus the
//! libsql-specific checks: migrations really applied, remote errors are clear.
#![cfg(feature = "libsql")]

#[macro_use]
mod conformance;

use std::path::Path;

use async_trait::async_trait;
use mnemosyne_core::{Error, Limits, Storage};
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

conformance_tests!(LibsqlStorage);

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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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
