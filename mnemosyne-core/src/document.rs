//! Context documents as the storage sees them: metadata columns plus opaque
//! bytes (the CRDT, owned by `mnemosyne-ics`) and an opaque state text (undo
//! and attribution, also owned by `mnemosyne-ics`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Limits, Namespace, Result};

/// The metadata of a stored context document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMeta {
    /// Unique name (see [`validate_document_name`]).
    pub name: String,
    /// Namespace it belongs to.
    pub namespace: Namespace,
    /// Human title.
    pub title: String,
    /// Compaction generation: bumped each time the history is dropped.
    pub epoch: u64,
    /// Bumped by every save; a save names the revision it read, so two
    /// writers never overwrite each other unknowingly.
    pub revision: u64,
    /// CRDT operations written since the last compaction.
    pub ops_since_compaction: u64,
    /// Length of the text, in bytes of UTF-8.
    pub text_bytes: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its text or metadata last changed.
    pub updated_at: DateTime<Utc>,
    /// When its history was last dropped (creation counts).
    pub compacted_at: DateTime<Utc>,
}

/// A document as loaded: its metadata, its compacted snapshot, the
/// incremental chunks saved since, in order, and its state text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDocument {
    /// The metadata.
    pub meta: DocumentMeta,
    /// CRDT bytes written at the last compaction (or creation).
    pub snapshot: Vec<u8>,
    /// CRDT bytes appended by each save since, oldest first.
    pub chunks: Vec<Vec<u8>>,
    /// Opaque state of the document layer.
    pub state: String,
    /// Undo and redo steps, by `seq`.
    pub undo: Vec<UndoRow>,
}

/// One stored undo or redo step of a document (the step itself is opaque).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoRow {
    /// Unique within the document; orders the steps.
    pub seq: u64,
    /// The actor whose step it is.
    pub actor: String,
    /// True for a redo step, false for an undo step.
    pub redo: bool,
    /// The step, encoded by the document layer.
    pub step: String,
}

/// One change to the stored undo steps, written with a save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoChange {
    /// Adds a step.
    Insert(UndoRow),
    /// Removes the step with this `seq`.
    Delete(u64),
}

/// How a save changes the stored CRDT bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentBody {
    /// Appends one incremental chunk after the existing ones.
    Append(Vec<u8>),
    /// Replaces the snapshot and drops every chunk (compaction).
    Replace(Vec<u8>),
}

/// One save of an existing document, applied in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSave {
    /// The new metadata; its `revision` must be `expected_revision + 1`.
    pub meta: DocumentMeta,
    /// The revision that was read; if the stored one differs, the save is
    /// refused with [`Error::DocumentConflict`].
    pub expected_revision: u64,
    /// The CRDT bytes to write.
    pub body: DocumentBody,
    /// The new state text.
    pub state: String,
    /// Changes to the undo steps, applied in order.
    pub undo: Vec<UndoChange>,
    /// A record appended to the document's log (attribution), if any.
    pub log: Option<String>,
    /// Log records kept: after the append, older ones are deleted.
    pub log_keep: u32,
}

/// Checks a document name: 1 to `doc_name_bytes_max` bytes, no control
/// characters, no leading or trailing whitespace.
pub fn validate_document_name(name: &str, limits: &Limits) -> Result<()> {
    let max = limits.doc_name_bytes_max as usize;
    if name.is_empty() || name.len() > max {
        return Err(Error::invalid(format!(
            "document name must be 1 to {max} bytes (doc_name_bytes_max), got {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "document name {name:?} holds a control character"
        )));
    }
    if name.trim() != name {
        return Err(Error::invalid(format!(
            "document name {name:?} starts or ends with whitespace"
        )));
    }
    Ok(())
}

/// Checks a document title: at most `doc_title_bytes_max` bytes, no control characters.
pub fn validate_document_title(title: &str, limits: &Limits) -> Result<()> {
    let max = limits.doc_title_bytes_max as usize;
    if title.len() > max {
        return Err(Error::invalid(format!(
            "document title is {} bytes, over the limit of {max} (doc_title_bytes_max)",
            title.len()
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(Error::invalid("document title holds a control character"));
    }
    Ok(())
}

/// Checks an actor (agent) name: 1 to `crdt_actor_name_bytes_max` bytes, no control characters.
pub fn validate_actor_name(actor: &str, limits: &Limits) -> Result<()> {
    let max = limits.crdt_actor_name_bytes_max as usize;
    if actor.is_empty() || actor.len() > max {
        return Err(Error::invalid(format!(
            "actor name must be 1 to {max} bytes (crdt_actor_name_bytes_max), got {}",
            actor.len()
        )));
    }
    if actor.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "actor name {actor:?} holds a control character"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_titles_and_actors_are_bounded_and_printable() {
        let limits = Limits::default();
        validate_document_name("conventions.md", &limits).unwrap();
        validate_document_name("project plan", &limits).unwrap();
        for bad in ["", " lead", "trail ", "a\nb", "bell\u{7}"] {
            assert!(validate_document_name(bad, &limits).is_err(), "{bad:?}");
        }
        let long = "n".repeat(limits.doc_name_bytes_max as usize + 1);
        let err = validate_document_name(&long, &limits).unwrap_err();
        assert!(err.to_string().contains("doc_name_bytes_max"), "{err}");
        validate_document_title("", &limits).unwrap();
        assert!(validate_document_title("a\tb", &limits).is_err());
        validate_actor_name("agent-1", &limits).unwrap();
        assert!(validate_actor_name("", &limits).is_err());
        let long = "a".repeat(limits.crdt_actor_name_bytes_max as usize + 1);
        assert!(validate_actor_name(&long, &limits).is_err());
    }
}
