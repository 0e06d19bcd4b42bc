//! `DocumentStore` over a real database file: merge, epochs, compaction,
//! undo, corruption, limits.

mod common;

use common::{HandClock, db, new_doc, open, raw_save, store, stored_bytes};
use mnemosyne_core::{DocumentBody, Error, Limits};
use mnemosyne_ics::{Action, Base, Change, DocumentStore, Edit, Splice};

fn splice(pos: usize, delete: usize, insert: &str) -> Change {
    Change::Splices(vec![Splice {
        pos,
        delete,
        insert: insert.into(),
    }])
}

fn edit(actor: &str, base: Base, change: Change) -> Edit {
    Edit {
        actor: actor.into(),
        base,
        change,
    }
}

#[tokio::test]
async fn concurrent_edits_from_one_read_both_survive() {
    let limits = Limits::default();
    let db = db(&limits).await;
    let docs = store(&db, limits.clone());
    docs.create(new_doc("plan", "line one\nline two\n"))
        .await
        .unwrap();
    // Two agents read the same version...
    let read = docs.read("plan").await.unwrap();
    let base = Base {
        epoch: Some(read.meta.epoch),
        heads: Some(read.heads.clone()),
    };
    // ...and each sends a whole new text based on it.
    docs.write_text(
        "plan",
        "alice",
        "line one, edited by alice\nline two\n".into(),
        base.clone(),
    )
    .await
    .unwrap();
    // The second writer is another process: a second store on the same file.
    let other = store(&db, limits);
    other
        .write_text(
            "plan",
            "bob",
            "line one\nline two\nline three by bob\n".into(),
            base,
        )
        .await
        .unwrap();
    let merged = docs.read("plan").await.unwrap().text;
    assert_eq!(
        merged,
        "line one, edited by alice\nline two\nline three by bob\n"
    );
    assert_eq!(other.read("plan").await.unwrap().text, merged);
}

#[tokio::test]
async fn interleaved_writers_on_stale_open_copies_lose_nothing() {
    let limits = Limits::default();
    let db = db(&limits).await;
    let a = store(&db, limits.clone());
    let b = store(&db, limits);
    a.create(new_doc("log", "")).await.unwrap();
    b.read("log").await.unwrap();
    for i in 0..20 {
        let (writer, actor) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        // Each writer's open copy misses the other's last write: the
        // compare-and-set refuses the save, the writer reloads and retries.
        writer
            .edit(
                "log",
                edit(actor, Base::default(), splice(0, 0, &format!("{i};"))),
            )
            .await
            .unwrap();
    }
    let text = a.read("log").await.unwrap().text;
    for i in 0..20 {
        assert!(text.contains(&format!("{i};")), "{i} missing from {text}");
    }
}

#[tokio::test]
async fn a_stale_epoch_edit_is_refused_and_changes_nothing() {
    let limits = Limits::default();
    let (db, docs) = open(limits).await;
    docs.create(new_doc("spec", "version one")).await.unwrap();
    let read = docs.read("spec").await.unwrap();
    let compacted = docs.compact("spec", "janitor").await.unwrap();
    assert_eq!(compacted.meta.epoch, read.meta.epoch + 1);
    let before = db.storage.load_document("spec").await.unwrap().unwrap();
    let err = docs
        .edit(
            "spec",
            edit(
                "late",
                Base {
                    epoch: Some(read.meta.epoch),
                    heads: Some(read.heads),
                },
                splice(0, 7, "VERSION"),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StaleEpoch { name, expected: 0, actual: 1 } if name == "spec"),
        "{err:?}"
    );
    assert!(err.to_string().contains("re-read it"), "{err}");
    let after = db.storage.load_document("spec").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(docs.read("spec").await.unwrap().text, "version one");
    // Based on the new epoch, the same edit goes through.
    docs.edit(
        "spec",
        edit(
            "late",
            Base {
                epoch: Some(1),
                heads: None,
            },
            splice(0, 7, "VERSION"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(docs.read("spec").await.unwrap().text, "VERSION one");
}

#[tokio::test]
async fn compaction_runs_after_its_op_count_and_drops_the_chunks() {
    let limits = Limits {
        crdt_compact_every_ops: 10,
        ..Limits::default()
    };
    let (db, docs) = open(limits).await;
    docs.create(new_doc("notes", "")).await.unwrap();
    let mut epochs = Vec::new();
    for i in 0..25 {
        let out = docs
            .edit("notes", edit("a", Base::default(), splice(i, 0, "x")))
            .await
            .unwrap();
        assert!(out.meta.ops_since_compaction < 10);
        // The tracker's gauge follows the open document.
        assert_eq!(
            docs.open_ops_since_compaction_max(),
            out.meta.ops_since_compaction
        );
        epochs.push(out.meta.epoch);
        let stored = db.storage.load_document("notes").await.unwrap().unwrap();
        assert!(stored.chunks.len() < 10, "{} chunks", stored.chunks.len());
        assert_eq!(stored.chunks.len() as u64, stored.meta.ops_since_compaction);
    }
    assert_eq!(epochs.iter().max(), Some(&2));
    assert_eq!(epochs[9], 1, "the 10th op compacts: {epochs:?}");
    assert_eq!(docs.read("notes").await.unwrap().text, "x".repeat(25));
}

#[tokio::test]
async fn compaction_runs_after_its_interval() {
    let limits = Limits::default();
    let db = db(&limits).await;
    let clock = HandClock::new();
    let docs = DocumentStore::with_clock(db.storage.clone(), limits.clone(), clock.clock());
    docs.create(new_doc("slow", "a")).await.unwrap();
    let out = docs
        .edit("slow", edit("a", Base::default(), splice(1, 0, "b")))
        .await
        .unwrap();
    assert!(!out.compacted);
    clock.advance_s(i64::try_from(limits.crdt_compact_every_s).unwrap() - 1);
    let out = docs
        .edit("slow", edit("a", Base::default(), splice(2, 0, "c")))
        .await
        .unwrap();
    assert!(!out.compacted);
    clock.advance_s(1);
    let out = docs
        .edit("slow", edit("a", Base::default(), splice(3, 0, "d")))
        .await
        .unwrap();
    assert!(out.compacted);
    assert_eq!((out.meta.epoch, out.meta.ops_since_compaction), (1, 0));
    assert_eq!(stored_bytes(db.storage.as_ref(), "slow").await.1, 0);
    assert_eq!(docs.read("slow").await.unwrap().text, "abcd");
}

#[tokio::test]
async fn undo_and_redo_per_actor_survive_compaction() {
    let limits = Limits::default();
    let (_db, docs) = open(limits).await;
    docs.create(new_doc("d", "hello world")).await.unwrap();
    docs.write_text("d", "alice", "hello brave world".into(), Base::default())
        .await
        .unwrap();
    docs.edit("d", edit("bob", Base::default(), splice(0, 5, "HELLO")))
        .await
        .unwrap();
    docs.compact("d", "janitor").await.unwrap();
    // Alice's undo removes only her change, after the compaction.
    let out = docs.undo("d", "alice").await.unwrap();
    assert_eq!((out.undo_depth, out.redo_depth), (0, 1));
    assert_eq!(docs.read("d").await.unwrap().text, "HELLO world");
    let err = docs.undo("d", "alice").await.unwrap_err();
    assert!(err.to_string().contains("nothing to undo"), "{err}");
    docs.redo("d", "alice").await.unwrap();
    assert_eq!(docs.read("d").await.unwrap().text, "HELLO brave world");
    docs.undo("d", "bob").await.unwrap();
    assert_eq!(docs.read("d").await.unwrap().text, "hello brave world");
    // A new edit clears the actor's redo stack.
    docs.undo("d", "alice").await.unwrap();
    docs.edit("d", edit("alice", Base::default(), splice(0, 0, ">")))
        .await
        .unwrap();
    assert!(docs.redo("d", "alice").await.is_err());
    let history = docs.history("d", 100).await.unwrap();
    let actions: Vec<Action> = history.records.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [
            Action::Edit,
            Action::Undo,
            Action::Undo,
            Action::Redo,
            Action::Undo,
            Action::Compact,
            Action::Edit,
            Action::Edit,
            Action::Create
        ]
    );
}

#[tokio::test]
async fn an_undo_whose_text_was_changed_since_is_refused() {
    let limits = Limits::default();
    let (_db, docs) = open(limits).await;
    docs.create(new_doc("d", "abc")).await.unwrap();
    docs.edit("d", edit("alice", Base::default(), splice(1, 0, "XYZ")))
        .await
        .unwrap();
    // Bob rewrites what alice inserted.
    docs.edit("d", edit("bob", Base::default(), splice(2, 1, "-")))
        .await
        .unwrap();
    let before = docs.read("d").await.unwrap();
    let err = docs.undo("d", "alice").await.unwrap_err();
    assert!(
        matches!(&err, Error::Undo { action: "undo", reason } if reason.contains("changed since")),
        "{err:?}"
    );
    assert_eq!(docs.read("d").await.unwrap(), before);
}

#[tokio::test]
async fn undo_depth_and_attribution_stay_within_their_caps() {
    let limits = Limits {
        crdt_undo_depth: 5,
        crdt_attribution_records_max: 7,
        ..Limits::default()
    };
    let (_db, docs) = open(limits).await;
    docs.create(new_doc("d", "")).await.unwrap();
    for i in 0..30 {
        let actor = ["a", "b"][i % 2];
        let out = docs
            .edit("d", edit(actor, Base::default(), splice(0, 0, "q")))
            .await
            .unwrap();
        assert!(out.undo_depth <= 5);
    }
    let history = docs.history("d", 100).await.unwrap();
    assert_eq!(history.records.len(), 7);
    assert!(history.undo.iter().all(|d| d.undo == 5 && d.redo == 0));
    for _ in 0..5 {
        docs.undo("d", "a").await.unwrap();
    }
    assert!(docs.undo("d", "a").await.is_err());
    assert_eq!(docs.read("d").await.unwrap().text.len(), 25);
}

#[tokio::test]
async fn a_corrupt_document_is_a_clear_error_and_the_others_still_load() {
    let limits = Limits::default();
    let db = db(&limits).await;
    let docs = store(&db, limits.clone());
    for name in ["good", "bad-chunk", "bad-snapshot"] {
        docs.create(new_doc(name, "some text")).await.unwrap();
    }
    // A damaged chunk appended after a valid snapshot.
    let damaged = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5];
    raw_save(
        db.storage.as_ref(),
        "bad-chunk",
        DocumentBody::Append(damaged),
    )
    .await;
    // A snapshot with one flipped byte.
    let stored = db
        .storage
        .load_document("bad-snapshot")
        .await
        .unwrap()
        .unwrap();
    let mut snapshot = stored.snapshot;
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0xff;
    raw_save(
        db.storage.as_ref(),
        "bad-snapshot",
        DocumentBody::Replace(snapshot),
    )
    .await;

    // A fresh store (nothing open in memory) reads from the database.
    let fresh = store(&db, limits);
    for name in ["bad-chunk", "bad-snapshot"] {
        let err = fresh.read(name).await.unwrap_err();
        assert!(
            matches!(&err, Error::CorruptDocument { name: n, .. } if n == name),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("document {name} is corrupt")),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(
            fresh
                .edit(name, edit("a", Base::default(), splice(0, 0, "x")))
                .await
                .is_err()
        );
    }
    assert_eq!(fresh.read("good").await.unwrap().text, "some text");
    assert_eq!(fresh.list(None, 10, 0).await.unwrap().len(), 3);
    // The bad ones can be deleted and made again.
    assert!(fresh.delete("bad-chunk").await.unwrap());
    fresh.create(new_doc("bad-chunk", "again")).await.unwrap();
    assert_eq!(fresh.read("bad-chunk").await.unwrap().text, "again");
}

#[tokio::test]
async fn limits_and_bad_input_are_refused_without_change() {
    let limits = Limits {
        doc_text_bytes_max: 16,
        list_page_rows_max: 5,
        ..Limits::default()
    };
    let (db, docs) = open(limits).await;
    assert!(matches!(
        docs.create(new_doc("big", &"x".repeat(17))).await.unwrap_err(),
        Error::InvalidInput(m) if m.contains("doc_text_bytes_max")
    ));
    docs.create(new_doc("d", "0123456789")).await.unwrap();
    assert!(matches!(
        docs.create(new_doc("d", "")).await.unwrap_err(),
        Error::DocumentExists(_)
    ));
    let before = db.storage.load_document("d").await.unwrap().unwrap();
    for (change, what) in [
        (splice(10, 0, "0123456"), "doc_text_bytes_max"),
        (splice(11, 0, "x"), "beyond the end"),
        (splice(5, 6, ""), "beyond the end"),
        (Change::Text("y".repeat(17)), "doc_text_bytes_max"),
    ] {
        let err = docs
            .edit("d", edit("a", Base::default(), change))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
    for (name, actor) in [("d", ""), ("", "a"), ("missing", "a")] {
        assert!(
            docs.edit(name, edit(actor, Base::default(), splice(0, 0, "x")))
                .await
                .is_err()
        );
    }
    let err = docs
        .edit(
            "d",
            edit(
                "a",
                Base {
                    epoch: None,
                    heads: Some(vec!["00".into()]),
                },
                splice(0, 0, "x"),
            ),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("epoch"), "{err}");
    assert_eq!(
        db.storage.load_document("d").await.unwrap().unwrap(),
        before
    );
    assert!(docs.list(None, 6, 0).await.is_err());
    assert!(matches!(
        docs.read("missing").await.unwrap_err(),
        Error::DocumentNotFound(n) if n == "missing"
    ));
    // Writing the same text changes nothing and writes nothing.
    let out = docs
        .write_text("d", "a", "0123456789".into(), Base::default())
        .await
        .unwrap();
    assert!(!out.changed);
    assert_eq!(
        db.storage.load_document("d").await.unwrap().unwrap(),
        before
    );
}

#[tokio::test]
async fn open_documents_are_bounded() {
    let limits = Limits {
        doc_open_max: 3,
        ..Limits::default()
    };
    let (_db, docs) = open(limits).await;
    for i in 0..10 {
        docs.create(new_doc(&format!("d{i}"), "x")).await.unwrap();
        assert!(docs.open_count() <= 3);
    }
    for i in 0..10 {
        docs.read(&format!("d{i}")).await.unwrap();
        assert!(docs.open_count() <= 3);
    }
}

#[tokio::test]
async fn an_edit_after_a_fresh_load_appends_only_itself() {
    let limits = Limits::default();
    let db = db(&limits).await;
    let docs = store(&db, limits.clone());
    docs.create(new_doc("d", &"some long text ".repeat(1_000)))
        .await
        .unwrap();
    // Another process (nothing open) loads the document and edits it once.
    let fresh = store(&db, limits);
    fresh
        .edit("d", edit("a", Base::default(), splice(0, 0, "x")))
        .await
        .unwrap();
    let stored = db.storage.load_document("d").await.unwrap().unwrap();
    assert_eq!(stored.chunks.len(), 1);
    assert!(
        stored.chunks[0].len() < 512,
        "{} bytes",
        stored.chunks[0].len()
    );
}
