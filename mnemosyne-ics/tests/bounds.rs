//! A document edited all day stays bounded: after 100 000 single-character
//! edits with the default policy, what is stored and what the open document
//! holds are bounded by the text length, not by the number of edits.
//!
//! The bounds (stated here, checked after every 1 000 edits):
//! - stored CRDT bytes (snapshot and chunks) <= 2 x text bytes plus
//!   `crdt_compact_every_ops` x [`CHUNK_BYTES_MAX`] plus [`SLACK_BYTES`];
//! - operations in the open document <= text characters plus
//!   2 x `crdt_compact_every_ops` plus [`SLACK_OPS`] (each edit adds at most
//!   two: the inserted character, or a deletion and its tombstone);
//! - undo steps stored <= `crdt_undo_depth` x actors, each at most
//!   [`STEP_JSON_BYTES_MAX`] bytes.

mod common;

use common::lcg::Lcg;
use common::{HandClock, db, new_doc};
use mnemosyne_core::Limits;
use mnemosyne_ics::{Base, Change, CrdtText, DocumentStore, Edit, Splice};

const EDITS: usize = 100_000;
/// Bytes of one stored single-character change (header, actor, deps hash, op).
const CHUNK_BYTES_MAX: usize = 256;
/// Fixed overhead of a saved document.
const SLACK_BYTES: usize = 4 * 1024;
/// Fixed operations of a document (root map entry, the text object).
const SLACK_OPS: u64 = 8;
/// JSON of one single-character undo step.
const STEP_JSON_BYTES_MAX: usize = 160;
const ACTORS: [&str; 3] = ["alice", "bob", "carol"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_single_character_edits_stay_bounded() {
    let limits = Limits::default();
    let db = db(&limits).await;
    // Time stands still: only the op count compacts (the larger history).
    let docs =
        DocumentStore::with_clock(db.storage.clone(), limits.clone(), HandClock::new().clock());
    docs.create(new_doc("day", "")).await.unwrap();
    let mut rng = Lcg(42);
    let mut len = 0usize;
    let mut epoch = 0;
    for i in 0..EDITS {
        // Grow to about 3 000 characters, then wander around that length.
        let insert = len == 0 || rng.next(100) < if len < 3_000 { 70 } else { 50 };
        let splice = if insert {
            let ch = ['a', 'é', '中', '\n'][rng.next(4)];
            Splice {
                pos: rng.next(len + 1),
                delete: 0,
                insert: ch.to_string(),
            }
        } else {
            Splice {
                pos: rng.next(len),
                delete: 1,
                insert: String::new(),
            }
        };
        len = if insert { len + 1 } else { len - 1 };
        let out = docs
            .edit(
                "day",
                Edit {
                    actor: ACTORS[i % ACTORS.len()].into(),
                    base: Base::default(),
                    change: Change::Splices(vec![splice]),
                },
            )
            .await
            .unwrap();
        epoch = out.meta.epoch;
        if (i + 1) % 1_000 == 0 {
            check_bounds(&db.storage, &limits).await;
        }
    }
    check_bounds(&db.storage, &limits).await;
    let every = u64::from(limits.crdt_compact_every_ops);
    assert!(
        epoch >= EDITS as u64 / every,
        "compacted only {epoch} times"
    );
    assert_eq!(docs.read("day").await.unwrap().text.chars().count(), len);
}

async fn check_bounds(storage: &std::sync::Arc<dyn mnemosyne_core::Storage>, limits: &Limits) {
    let stored = storage.load_document("day").await.unwrap().unwrap();
    let text_bytes = stored.meta.text_bytes as usize;
    let every = limits.crdt_compact_every_ops as usize;
    let crdt_bytes = stored.snapshot.len() + stored.chunks.iter().map(Vec::len).sum::<usize>();
    let bound = 2 * text_bytes + every * CHUNK_BYTES_MAX + SLACK_BYTES;
    assert!(
        crdt_bytes <= bound,
        "{crdt_bytes} stored bytes over {bound} (text {text_bytes} bytes, {} chunks)",
        stored.chunks.len()
    );
    let doc = CrdtText::load(&stored.snapshot, &stored.chunks).unwrap();
    let chars = doc.len_chars() as u64;
    assert_eq!(doc.text().len(), text_bytes);
    let ops_bound = chars + 2 * every as u64 + SLACK_OPS;
    assert!(
        doc.op_count() <= ops_bound,
        "{} ops held over {ops_bound} ({chars} characters)",
        doc.op_count()
    );
    assert!(stored.undo.len() <= limits.crdt_undo_depth as usize * ACTORS.len());
    assert!(
        stored
            .undo
            .iter()
            .all(|row| row.step.len() <= STEP_JSON_BYTES_MAX)
    );
    assert!(stored.state.len() <= 64, "{}", stored.state);
}
