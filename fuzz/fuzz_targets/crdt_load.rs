//! CRDT document bytes as the database holds them (a snapshot, then its
//! incremental chunks): loading arbitrary bytes as a document is an error,
//! never a panic, and what loads is a usable document (its text reads, it
//! takes an edit, and it saves and loads back to the same text).
//!
//! Unbounded allocation shows as a libFuzzer `-malloc_limit_mb` or
//! `-rss_limit_mb` crash (`cargo xtask fuzz` sets both).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemosyne_ics::{CrdtText, Splice};

/// Splits the input at `0xFF 0x00` pairs: the first part is the snapshot,
/// the others incremental chunks (at most this many).
const CHUNKS_MAX: usize = 8;

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|w| w == [0xFF, 0x00]) {
        if parts.len() == CHUNKS_MAX {
            break;
        }
        parts.push(rest[..at].to_vec());
        rest = &rest[at + 2..];
    }
    parts.push(rest.to_vec());
    let snapshot = parts.remove(0);
    let Ok(mut doc) = CrdtText::load(&snapshot, &parts) else {
        return;
    };
    let text = doc.text();
    assert_eq!(doc.len_chars(), text.chars().count());
    let _ = doc.heads();
    let splice = Splice {
        pos: doc.len_chars() / 2,
        delete: 0,
        insert: "fuzz".into(),
    };
    doc.apply("fuzzer", &[splice])
        .expect("an edit in range applies");
    let edited = doc.text();
    assert_eq!(edited.chars().count(), text.chars().count() + 4);
    let saved = doc.save();
    let reloaded = CrdtText::load(&saved, &[]).expect("a saved document loads");
    assert_eq!(reloaded.text(), edited);
    assert_eq!(doc.compacted().text(), edited);
});
