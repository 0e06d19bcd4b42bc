//! Conformance checks for context documents (the bytes are opaque here).

use mnemosyne_core::{
    DocumentBody, DocumentMeta, DocumentSave, Error, Limits, MemoryId, Namespace, UndoChange,
    UndoRow, timestamp_now,
};
use mnemosyne_storage::schema::SCHEMA_VERSION;

use super::{Backend, fixture, open, open_backend};

fn meta(name: &str, namespace: &str) -> DocumentMeta {
    let now = timestamp_now();
    DocumentMeta {
        name: name.into(),
        namespace: namespace.parse().unwrap(),
        title: format!("title of {name}"),
        epoch: 0,
        revision: 0,
        ops_since_compaction: 0,
        text_bytes: 0,
        created_at: now,
        updated_at: now,
        compacted_at: now,
    }
}

fn next(meta: &DocumentMeta) -> DocumentMeta {
    DocumentMeta {
        revision: meta.revision + 1,
        ops_since_compaction: meta.ops_since_compaction + 1,
        ..meta.clone()
    }
}

/// Bytes with a NUL and every byte value, so no driver may treat them as text.
fn bytes(tag: u8) -> Vec<u8> {
    let mut out = vec![tag, 0, tag];
    out.extend(0..=255u8);
    out
}

pub async fn documents_create_save_load_and_compare_revisions<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    let m = meta("plan", "project:atlas");
    assert!(storage.load_document("plan").await.unwrap().is_none());
    assert!(storage.document_log("plan", 10).await.unwrap().is_empty());
    assert!(storage.load_document("plan").await.unwrap().is_none());
    storage
        .create_document(&m, &bytes(1), "{\"state\": \"ünïcode\"}", "created")
        .await
        .unwrap();
    let err = storage
        .create_document(&m, &bytes(9), "{}", "again")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DocumentExists(n) if n == "plan"),
        "{err:?}"
    );

    let loaded = storage.load_document("plan").await.unwrap().unwrap();
    assert_eq!(loaded.meta, m);
    assert_eq!(loaded.snapshot, bytes(1));
    assert!(loaded.chunks.is_empty());
    assert_eq!(loaded.state, "{\"state\": \"ünïcode\"}");

    // Two appends keep their order.
    let m1 = next(&m);
    // Each save logs its state text; the log keeps the newest three.
    let save = |meta: &DocumentMeta, expected: u64, body: DocumentBody, state: &str| DocumentSave {
        meta: meta.clone(),
        expected_revision: expected,
        body,
        state: state.into(),
        undo: Vec::new(),
        log: Some(state.into()),
        log_keep: 3,
    };
    storage
        .save_document(&save(&m1, 0, DocumentBody::Append(bytes(2)), "s1"))
        .await
        .unwrap();
    let m2 = next(&m1);
    let undo_row = |seq: u64, redo: bool| UndoRow {
        seq,
        actor: "agent ü".into(),
        redo,
        step: format!("step {seq}"),
    };
    storage
        .save_document(&DocumentSave {
            undo: vec![
                UndoChange::Insert(undo_row(1, false)),
                UndoChange::Insert(undo_row(2, true)),
                UndoChange::Insert(undo_row(3, false)),
                UndoChange::Delete(1),
            ],
            ..save(&m2, 1, DocumentBody::Append(bytes(3)), "s2")
        })
        .await
        .unwrap();
    let loaded = storage.load_document("plan").await.unwrap().unwrap();
    assert_eq!(loaded.meta, m2);
    assert_eq!(loaded.chunks, [bytes(2), bytes(3)]);
    assert_eq!(loaded.state, "s2");
    assert_eq!(loaded.undo, [undo_row(2, true), undo_row(3, false)]);

    // A save based on an old revision changes nothing.
    let stale = next(&m1);
    let err = storage
        .save_document(&DocumentSave {
            undo: vec![UndoChange::Delete(2)],
            ..save(&stale, 1, DocumentBody::Append(bytes(7)), "lost")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DocumentConflict(n) if n == "plan"),
        "{err:?}"
    );
    // A save that does not take the next revision is refused before anything is written.
    assert!(matches!(
        storage
            .save_document(&save(&m2, 2, DocumentBody::Append(bytes(7)), "bad"))
            .await
            .unwrap_err(),
        Error::InvalidInput(_)
    ));
    let unchanged = storage.load_document("plan").await.unwrap().unwrap();
    assert_eq!(unchanged, loaded);
    assert_eq!(
        storage.document_log("plan", 10).await.unwrap(),
        ["s2", "s1", "created"]
    );

    // Replacing the snapshot drops every chunk.
    let m3 = DocumentMeta {
        epoch: 1,
        ops_since_compaction: 0,
        ..next(&m2)
    };
    storage
        .save_document(&save(&m3, 2, DocumentBody::Replace(bytes(4)), "s3"))
        .await
        .unwrap();
    let loaded = storage.load_document("plan").await.unwrap().unwrap();
    assert_eq!((loaded.meta.epoch, loaded.meta.revision), (1, 3));
    assert_eq!(loaded.snapshot, bytes(4));
    assert!(loaded.chunks.is_empty());
    let m4 = next(&m3);
    storage
        .save_document(&save(&m4, 3, DocumentBody::Append(bytes(5)), "s4"))
        .await
        .unwrap();
    assert_eq!(
        storage.load_document("plan").await.unwrap().unwrap().chunks,
        [bytes(5)]
    );
    assert_eq!(
        storage.document_log("plan", 10).await.unwrap(),
        ["s4", "s3", "s2"]
    );
    assert_eq!(storage.document_log("plan", 1).await.unwrap(), ["s4"]);

    // A missing document is not found, not a conflict.
    let ghost = next(&meta("ghost", "global"));
    let err = storage
        .save_document(&save(&ghost, 0, DocumentBody::Append(bytes(1)), ""))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DocumentNotFound(n) if n == "ghost"),
        "{err:?}"
    );

    // Delete takes the chunks with it; the name can be used again.
    assert!(storage.delete_document("plan").await.unwrap());
    assert!(!storage.delete_document("plan").await.unwrap());
    assert!(storage.load_document("plan").await.unwrap().is_none());
    assert!(storage.document_log("plan", 10).await.unwrap().is_empty());
    assert!(storage.load_document("plan").await.unwrap().is_none());
    storage
        .create_document(&m, &bytes(6), "{}", "reborn")
        .await
        .unwrap();
    assert_eq!(storage.document_log("plan", 10).await.unwrap(), ["reborn"]);
    assert!(
        storage
            .load_document("plan")
            .await
            .unwrap()
            .unwrap()
            .undo
            .is_empty()
    );
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
}

pub async fn documents_list_by_namespace_with_paging<B: Backend>() {
    let f = fixture();
    let storage = open_backend::<B>(&f.path).await;
    let mut names = Vec::new();
    for i in 0..25 {
        let name = format!("doc-{i:02}");
        let namespace = if i % 2 == 0 {
            "project:atlas"
        } else {
            "global"
        };
        storage
            .create_document(&meta(&name, namespace), &bytes(i), "{}", "")
            .await
            .unwrap();
        names.push(name);
    }
    let mut seen = Vec::new();
    for offset in (0..30).step_by(7) {
        let page = storage.list_documents(None, 7, offset).await.unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.into_iter().map(|m| m.name));
    }
    assert_eq!(seen, names);
    let atlas: Namespace = "project:atlas".parse().unwrap();
    let page = storage.list_documents(Some(&atlas), 100, 0).await.unwrap();
    assert_eq!(page.len(), 13);
    assert!(page.iter().all(|m| m.namespace == atlas));
    assert_eq!(page[0].name, "doc-00");
    assert_eq!(page[0].title, "title of doc-00");
    assert!(storage.list_documents(None, 0, 0).await.unwrap().is_empty());
}

pub async fn migrates_a_version_4_database_to_documents<B: Backend>() {
    let f = fixture();
    let v4 = mnemosyne_storage::schema::MIGRATIONS[..4].join("\n");
    let id = MemoryId::new();
    B::exec_raw(
        &f.path,
        &format!(
            "{v4}\nINSERT INTO memories (id, namespace, content, memory_type, importance, tags, \
             created_at_ms, updated_at_ms, accessed_at_ms) VALUES \
             ('{id}', 'global', 'written by version four', 'fact', 7, '', 1, 2, 3);\n\
             PRAGMA user_version = 4;"
        ),
    )
    .await;
    let store = open::<B>(&f.path, Limits::default()).await;
    let storage = store.storage();
    assert_eq!(storage.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.get(id).await.unwrap().content,
        "written by version four"
    );
    assert!(
        storage
            .list_documents(None, 10, 0)
            .await
            .unwrap()
            .is_empty()
    );
    storage
        .create_document(&meta("after", "global"), &bytes(1), "{}", "")
        .await
        .unwrap();
    assert_eq!(storage.list_documents(None, 10, 0).await.unwrap().len(), 1);
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
}
