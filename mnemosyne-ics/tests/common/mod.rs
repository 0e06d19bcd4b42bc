//! Shared helpers: a real database file in a temp dir, a hand-moved clock.
#![allow(dead_code)]

pub mod lcg;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use mnemosyne_core::{DocumentBody, DocumentSave, Limits, Storage};
use mnemosyne_ics::{Clock, DocumentStore, NewDocument};
use mnemosyne_storage::Location;

pub struct Db {
    pub dir: tempfile::TempDir,
    pub storage: Arc<dyn Storage>,
}

pub async fn db(limits: &Limits) -> Db {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::File(dir.path().join("mnemosyne.db"));
    let storage = mnemosyne_storage::open_storage(&location, limits)
        .await
        .unwrap();
    Db { dir, storage }
}

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct HandClock(Arc<AtomicI64>);

impl HandClock {
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(1_800_000_000_000)))
    }

    pub fn advance_s(&self, seconds: i64) {
        self.0.fetch_add(seconds * 1_000, Ordering::SeqCst);
    }

    pub fn clock(&self) -> Clock {
        let ms = self.0.clone();
        Arc::new(move || -> DateTime<Utc> {
            DateTime::from_timestamp_millis(ms.load(Ordering::SeqCst)).unwrap()
        })
    }
}

pub fn store(db: &Db, limits: Limits) -> DocumentStore {
    DocumentStore::new(db.storage.clone(), limits)
}

/// A fresh database and a store over it.
pub async fn open(limits: Limits) -> (Db, DocumentStore) {
    let db = db(&limits).await;
    let docs = store(&db, limits);
    (db, docs)
}

/// Writes `body` into the stored document `name` behind the store's back
/// (through the storage trait), as damage on disk would look.
pub async fn raw_save(storage: &dyn Storage, name: &str, body: DocumentBody) {
    let stored = storage.load_document(name).await.unwrap().unwrap();
    let mut meta = stored.meta.clone();
    meta.revision += 1;
    storage
        .save_document(&DocumentSave {
            meta,
            expected_revision: stored.meta.revision,
            body,
            state: stored.state,
            undo: Vec::new(),
            log: None,
            log_keep: 10,
        })
        .await
        .unwrap();
}

pub fn new_doc(name: &str, text: &str) -> NewDocument {
    NewDocument {
        name: name.into(),
        namespace: "project:atlas".parse().unwrap(),
        title: format!("title of {name}"),
        text: text.into(),
        actor: "creator".into(),
    }
}

/// The stored CRDT bytes of a document: snapshot plus chunks.
pub async fn stored_bytes(storage: &dyn Storage, name: &str) -> (usize, usize, usize) {
    let stored = storage.load_document(name).await.unwrap().unwrap();
    let chunks: usize = stored.chunks.iter().map(Vec::len).sum();
    (stored.snapshot.len(), chunks, stored.state.len())
}
