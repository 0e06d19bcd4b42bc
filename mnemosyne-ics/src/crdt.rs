//! [`CrdtText`]: one Automerge document holding one text object, edited by
//! splices. Pure: no storage, no clock.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, LoadOptions, ObjId, ObjType, OnPartialLoad, ROOT, ReadDoc,
    ScalarValue, TextEncoding, Value,
};

use crate::Splice;
use crate::load_error::LoadError;

/// Key of the text object in the document's root map.
const TEXT_KEY: &str = "text";

/// Longest deleted range read character by character (see `CrdtText::range`).
const RANGE_BY_CHAR_MAX: usize = 1_024;

/// Positions count Unicode code points (Rust `char`s), on every replica.
const ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// An Automerge text document.
///
/// Every replica gets its own random Automerge actor id, so two processes
/// editing for the same agent never produce clashing changes; the agent's
/// name travels as the change message (and in the attribution records).
#[derive(Debug, Clone)]
pub struct CrdtText {
    doc: AutoCommit,
    text: ObjId,
    /// Heads at the last save or load: the next incremental save holds
    /// only the changes after them. (Automerge's own cursor starts empty
    /// after a load, and moving it costs a full save.)
    saved: Vec<ChangeHash>,
}

impl CrdtText {
    /// A new document holding `text`, with no history but its creation.
    pub fn new(text: &str) -> Self {
        let mut doc = AutoCommit::new_with_encoding(ENCODING).with_actor(ActorId::random());
        let id = doc
            .put_object(ROOT, TEXT_KEY, ObjType::Text)
            .expect("a fresh document accepts a text object at its root");
        if !text.is_empty() {
            doc.splice_text(&id, 0, 0, text)
                .expect("splicing at 0 of an empty text is always in range");
        }
        doc.commit_with(CommitOptions::default().with_message("compact"));
        Self {
            doc,
            text: id,
            saved: Vec::new(),
        }
    }

    /// Loads a saved document followed by its incremental chunks, in order.
    /// Any damaged byte (a chunk checksum or structure that does not hold) is
    /// an error; nothing is half-loaded.
    pub fn load(snapshot: &[u8], chunks: &[Vec<u8>]) -> Result<Self, LoadError> {
        let options = LoadOptions::new()
            .text_encoding(ENCODING)
            .on_partial_load(OnPartialLoad::Error);
        let loaded = if chunks.is_empty() {
            crate::chunks::check(snapshot)?;
            AutoCommit::load_with_options(snapshot, options)
        } else {
            let total = snapshot.len() + chunks.iter().map(Vec::len).sum::<usize>();
            let mut all = Vec::with_capacity(total);
            all.extend_from_slice(snapshot);
            for chunk in chunks {
                all.extend_from_slice(chunk);
            }
            crate::chunks::check(&all)?;
            AutoCommit::load_with_options(&all, options)
        };
        let mut doc = loaded
            .map_err(|e| LoadError(e.to_string()))?
            .with_actor(ActorId::random());
        let missing = doc.get_missing_deps(&[]);
        if !missing.is_empty() {
            return Err(LoadError(format!(
                "{} changes are missing from its history",
                missing.len()
            )));
        }
        let text = match doc.get(ROOT, TEXT_KEY) {
            Ok(Some((Value::Object(ObjType::Text), id))) => id,
            Ok(_) => return Err(LoadError("it holds no text object".into())),
            Err(e) => return Err(LoadError(e.to_string())),
        };
        // Everything loaded counts as saved: the next incremental save holds only new changes.
        let saved = doc.get_heads();
        Ok(Self { doc, text, saved })
    }

    /// The current text.
    pub fn text(&self) -> String {
        self.doc
            .text(&self.text)
            .expect("the text object exists (checked at load)")
    }

    /// The characters `start..end` of the text. Short ranges are read one
    /// character at a time (about a microsecond each, indexed); longer ones
    /// from the whole text (automerge's range iterator starts at the front).
    fn range(&self, start: usize, end: usize) -> String {
        if end.saturating_sub(start) > RANGE_BY_CHAR_MAX {
            return self.text().chars().skip(start).take(end - start).collect();
        }
        let mut out = String::new();
        for i in start..end {
            if let Ok(Some((Value::Scalar(s), _))) = self.doc.get(&self.text, i)
                && let ScalarValue::Str(s) = s.as_ref()
            {
                out.push_str(s);
            }
        }
        out
    }

    /// Length of the text in characters.
    pub fn len_chars(&self) -> usize {
        self.doc.length(&self.text)
    }

    /// The heads of the history: what an edit "based on this read" names.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Operations in the document (live and deleted characters, deletions,
    /// the root): the measure of what the open document holds.
    pub fn op_count(&self) -> u64 {
        self.doc.stats().num_ops
    }

    /// Changes in the history.
    pub fn change_count(&self) -> u64 {
        self.doc.stats().num_changes
    }

    /// Applies `splices` in order (each position relative to the text left by
    /// the previous one) as one change attributed to `actor`, and returns the
    /// inverse splices, to apply in the order given. Positions beyond the end
    /// are an error and leave the document unchanged.
    pub fn apply(&mut self, actor: &str, splices: &[Splice]) -> Result<Vec<Splice>, String> {
        let mut len = self.len_chars();
        let mut inverse = Vec::with_capacity(splices.len());
        for splice in splices {
            let end = splice.pos.checked_add(splice.delete).filter(|&e| e <= len);
            let Some(end) = end else {
                self.doc.rollback();
                return Err(format!(
                    "splice at {} deleting {} is beyond the end of the text ({len} characters)",
                    splice.pos, splice.delete
                ));
            };
            // Only the deleted range is read (reads see this change's earlier splices).
            let deleted = self.range(splice.pos, end);
            let inserted = splice.insert.chars().count();
            let delete = isize::try_from(splice.delete).map_err(|_| "splice too large")?;
            if let Err(e) = self
                .doc
                .splice_text(&self.text, splice.pos, delete, &splice.insert)
            {
                self.doc.rollback();
                return Err(e.to_string());
            }
            len = len - splice.delete + inserted;
            inverse.push(Splice {
                pos: splice.pos,
                delete: inserted,
                insert: deleted,
            });
        }
        self.doc
            .commit_with(CommitOptions::default().with_message(actor.to_owned()));
        inverse.reverse();
        Ok(inverse)
    }

    /// A replica of the document as it was at `heads` (which must be in its
    /// history), with its own actor id: an edit based on an older read is
    /// applied there and merged back.
    pub fn fork_at(&mut self, heads: &[ChangeHash]) -> Result<Self, String> {
        let doc = self
            .doc
            .fork_at(heads)
            .map_err(|e| format!("the base of the edit is not in the history: {e}"))?
            .with_actor(ActorId::random());
        Ok(Self {
            doc,
            text: self.text.clone(),
            saved: heads.to_vec(),
        })
    }

    /// A replica of the current document with its own actor id.
    pub fn fork(&mut self) -> Self {
        Self {
            doc: self.doc.fork().with_actor(ActorId::random()),
            text: self.text.clone(),
            saved: self.saved.clone(),
        }
    }

    /// Merges every change of `other` (a replica of this document) into this one.
    pub fn merge(&mut self, other: &mut Self) -> Result<(), String> {
        self.doc.merge(&mut other.doc).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The whole document, compressed.
    pub fn save(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.saved = self.doc.get_heads();
        bytes
    }

    /// The changes made since the last save or load (empty when none).
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let bytes = self.doc.save_after(&self.saved);
        self.saved = self.doc.get_heads();
        bytes
    }

    /// A new document holding the current text and no other history.
    pub fn compacted(&self) -> Self {
        Self::new(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(pos: usize, delete: usize, insert: &str) -> Splice {
        Splice {
            pos,
            delete,
            insert: insert.into(),
        }
    }

    #[test]
    fn splices_apply_in_order_and_their_inverse_restores_the_text() {
        let mut doc = CrdtText::new("hello wörld");
        let edits = [
            splice(0, 5, "goodbye"),
            splice(8, 5, "moon"),
            splice(12, 0, "!"),
        ];
        let inverse = doc.apply("a", &edits).unwrap();
        assert_eq!(doc.text(), "goodbye moon!");
        doc.apply("a", &inverse).unwrap();
        assert_eq!(doc.text(), "hello wörld");
        assert_eq!(doc.len_chars(), 11);
    }

    #[test]
    fn long_deletes_are_inverted_too() {
        let text: String = (0..3_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut doc = CrdtText::new(&text);
        let inverse = doc
            .apply("a", &[splice(10, 2_000, "short"), splice(0, 3, "")])
            .unwrap();
        assert_eq!(doc.len_chars(), 3_000 - 2_000 + 5 - 3);
        doc.apply("a", &inverse).unwrap();
        assert_eq!(doc.text(), text);
    }

    #[test]
    fn out_of_range_splices_change_nothing() {
        let mut doc = CrdtText::new("abc");
        let before = doc.change_count();
        let err = doc
            .apply("a", &[splice(1, 1, "X"), splice(3, 1, "")])
            .unwrap_err();
        assert!(err.contains("beyond the end"), "{err}");
        assert_eq!(doc.text(), "abc");
        assert_eq!(doc.change_count(), before);
    }

    #[test]
    fn save_load_and_incremental_chunks_round_trip() {
        let mut doc = CrdtText::new("one");
        let snapshot = doc.save();
        doc.apply("a", &[splice(3, 0, " two")]).unwrap();
        let first = doc.save_incremental();
        doc.apply("b", &[splice(0, 0, "zero ")]).unwrap();
        let second = doc.save_incremental();
        assert!(doc.save_incremental().is_empty());
        let mut loaded = CrdtText::load(&snapshot, &[first.clone(), second.clone()]).unwrap();
        assert_eq!(loaded.text(), "zero one two");
        // After a load, an incremental save holds only what is new.
        assert!(loaded.save_incremental().is_empty());
        loaded.apply("c", &[splice(0, 0, "!")]).unwrap();
        let third = loaded.save_incremental();
        assert!(
            third.len() < snapshot.len() + first.len(),
            "{} bytes",
            third.len()
        );
        let reloaded = CrdtText::load(&snapshot, &[first.clone(), second.clone(), third]).unwrap();
        assert_eq!(reloaded.text(), "!zero one two");
        // Garbage, a flipped byte, or a chunk without its predecessor is refused.
        assert!(CrdtText::load(&snapshot, &[vec![1, 2, 3]]).is_err());
        assert!(CrdtText::load(b"not automerge", &[]).is_err());
        let mut flipped = second.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x55;
        assert!(CrdtText::load(&snapshot, &[first.clone(), flipped]).is_err());
        let err = CrdtText::load(&snapshot, &[second]).unwrap_err();
        assert!(err.0.contains("missing"), "{}", err.0);
    }

    #[test]
    fn concurrent_edits_from_one_base_both_survive() {
        let mut base = CrdtText::new("the plan");
        let mut a = base.fork();
        let mut b = base.fork();
        a.apply("a", &[splice(0, 0, "A: ")]).unwrap();
        b.apply("b", &[splice(8, 0, " :B")]).unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        assert_eq!(a.text(), "A: the plan :B");
        assert_eq!(b.text(), a.text());
    }
}
