//! [`DocumentStore`]: documents persisted through core's `Storage` trait,
//! with the compaction policy, epochs, bounded undo and attribution.
//!
//! Every write is a compare-and-set on the stored revision: a writer that
//! lost the race reloads the document and applies its edit again (an edit
//! based on a read is re-applied to a replica of that read and merged), at
//! most [`CONFLICT_RETRIES_MAX`] times. Open documents are kept in memory
//! (at most `doc_open_max`), so an edit costs one splice and one append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use automerge::ChangeHash;
use chrono::{DateTime, Utc};
use mnemosyne_core::{
    DocumentBody, DocumentMeta, DocumentSave, DocumentStorage, Error, Limits, Namespace, Result,
    timestamp_now, validate_actor_name, validate_document_name, validate_document_title,
};
use serde::{Deserialize, Serialize};

use crate::crdt::CrdtText;
use crate::diff::{Splice, splices};
use crate::undo::{Stack, Step, UndoState};

/// Attempts of one write when other writers keep saving the same document first.
pub const CONFLICT_RETRIES_MAX: u32 = 16;

/// Where the store reads the time (tests move it by hand).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A document to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDocument {
    /// Unique name.
    pub name: String,
    /// Namespace.
    pub namespace: Namespace,
    /// Title (may be empty).
    pub title: String,
    /// Initial text.
    pub text: String,
    /// Who creates it.
    pub actor: String,
}

/// A document as read: metadata, text, and the heads an edit based on this
/// read names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocumentView {
    /// Metadata (the epoch is what a later edit must name).
    #[serde(flatten)]
    pub meta: DocumentMeta,
    /// Heads of the CRDT history, as hex hashes.
    pub heads: Vec<String>,
    /// The text.
    pub text: String,
}

/// What an edit was based on. Empty: the current text, whatever it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base {
    /// The epoch read; a different stored epoch refuses the edit (`StaleEpoch`).
    pub epoch: Option<u64>,
    /// The heads read; the edit is applied to the text as it was then and
    /// merged with what others wrote since. Requires `epoch`.
    pub heads: Option<Vec<String>>,
}

/// The change itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Splices, applied in order.
    Splices(Vec<Splice>),
    /// A whole new text, turned into splices by a diff against the base text.
    Text(String),
}

/// One edit by one actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The agent making it.
    pub actor: String,
    /// What it was based on.
    pub base: Base,
    /// The change.
    pub change: Change,
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EditOutcome {
    /// Metadata after the write (a compaction shows as a new epoch).
    #[serde(flatten)]
    pub meta: DocumentMeta,
    /// Heads after the write.
    pub heads: Vec<String>,
    /// False when the edit changed nothing (and nothing was written).
    pub changed: bool,
    /// Splices applied.
    pub splices: usize,
    /// Characters inserted.
    pub inserted_chars: u64,
    /// Characters deleted.
    pub deleted_chars: u64,
    /// True when this write compacted the document.
    pub compacted: bool,
    /// The actor's undo steps after the write.
    pub undo_depth: usize,
    /// The actor's redo steps after the write.
    pub redo_depth: usize,
}

/// What a log record says was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The document was created.
    Create,
    /// An edit (splices or a new text).
    Edit,
    /// An undo.
    Undo,
    /// A redo.
    Redo,
    /// A manual compaction.
    Compact,
}

/// One attribution record: who changed the document, when, how much.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: Action,
    /// Epoch after the write.
    pub epoch: u64,
    /// Characters inserted.
    pub inserted_chars: u64,
    /// Characters deleted.
    pub deleted_chars: u64,
    /// True when the write compacted the document.
    #[serde(default)]
    pub compacted: bool,
}

/// Undo and redo depth of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UndoDepth {
    /// The actor.
    pub actor: String,
    /// Undo steps kept.
    pub undo: usize,
    /// Redo steps kept.
    pub redo: usize,
}

/// The recent history of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct History {
    /// Metadata.
    #[serde(flatten)]
    pub meta: DocumentMeta,
    /// Attribution records, newest first.
    pub records: Vec<Attribution>,
    /// Undo and redo depth per actor with steps.
    pub undo: Vec<UndoDepth>,
}

/// An open document.
#[derive(Clone, Debug)]
struct Working {
    meta: DocumentMeta,
    crdt: CrdtText,
    undo: UndoState,
}

/// What an operation did to a working document.
#[derive(Debug, Default)]
struct Applied {
    changed: bool,
    force_compact: bool,
    splices: usize,
    inserted_chars: u64,
    deleted_chars: u64,
    /// Text length in bytes after the change.
    text_bytes: u64,
}

/// Documents kept open: name -> (last use, document).
#[derive(Debug, Default)]
struct OpenDocuments {
    tick: u64,
    docs: HashMap<String, (u64, Working)>,
}

/// Context documents over a `Storage`.
pub struct DocumentStore {
    storage: Arc<dyn DocumentStorage>,
    limits: Limits,
    clock: Clock,
    open: Mutex<OpenDocuments>,
}

impl std::fmt::Debug for DocumentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentStore")
            .field("storage", &self.storage)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn hex_heads(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(ToString::to_string).collect()
}

fn parse_heads(heads: &[String]) -> Result<Vec<ChangeHash>> {
    heads
        .iter()
        .map(|h| {
            h.parse()
                .map_err(|_| Error::invalid(format!("{h:?} is not a document head (a hex hash)")))
        })
        .collect()
}

fn chars_and_bytes(splices: &[Splice], inverse: &[Splice]) -> (u64, u64, i64) {
    let inserted: u64 = splices.iter().map(|s| s.inserted_chars() as u64).sum();
    let deleted: u64 = splices.iter().map(|s| s.delete as u64).sum();
    let added_bytes: usize = splices.iter().map(|s| s.insert.len()).sum();
    let removed_bytes: usize = inverse.iter().map(|s| s.insert.len()).sum();
    (inserted, deleted, added_bytes as i64 - removed_bytes as i64)
}

fn corrupt(name: &str, reason: impl Into<String>) -> Error {
    Error::CorruptDocument {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

impl DocumentStore {
    /// A store over `storage`, bounded by `limits`, on the system clock.
    pub fn new(storage: Arc<dyn DocumentStorage>, limits: Limits) -> Self {
        Self::with_clock(storage, limits, Arc::new(timestamp_now))
    }

    /// Like [`DocumentStore::new`], reading the time from `clock`.
    pub fn with_clock(storage: Arc<dyn DocumentStorage>, limits: Limits, clock: Clock) -> Self {
        Self {
            storage,
            limits,
            clock,
            open: Mutex::new(OpenDocuments::default()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Documents held open in memory now (at most `doc_open_max`).
    pub fn open_count(&self) -> usize {
        self.open.lock().map_or(0, |open| open.docs.len())
    }

    /// The most CRDT operations any open document has taken since its last
    /// compaction (below `crdt_compact_every_ops`: reaching it compacts).
    pub fn open_ops_since_compaction_max(&self) -> u64 {
        self.open.lock().map_or(0, |open| {
            open.docs
                .values()
                .map(|(_, w)| w.meta.ops_since_compaction)
                .max()
                .unwrap_or(0)
        })
    }

    fn take(&self, name: &str) -> Option<Working> {
        let mut open = self.open.lock().ok()?;
        open.docs.remove(name).map(|(_, w)| w)
    }

    fn keep(&self, working: Working) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let max = self.limits.doc_open_max as usize;
        if max == 0 {
            return;
        }
        open.tick += 1;
        let tick = open.tick;
        open.docs.remove(&working.meta.name);
        while open.docs.len() >= max {
            let oldest = open
                .docs
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(name, _)| name.clone());
            match oldest {
                Some(name) => open.docs.remove(&name),
                None => break,
            };
        }
        open.docs.insert(working.meta.name.clone(), (tick, working));
    }

    fn check_text(&self, bytes: u64) -> Result<()> {
        if bytes > self.limits.doc_text_bytes_max {
            return Err(Error::invalid(format!(
                "document text would be {bytes} bytes, over the limit of {} (doc_text_bytes_max)",
                self.limits.doc_text_bytes_max
            )));
        }
        Ok(())
    }

    fn check_page(&self, limit: u32) -> Result<()> {
        if limit > self.limits.list_page_rows_max {
            return Err(Error::invalid(format!(
                "limit {limit} is over the page limit of {} (list_page_rows_max)",
                self.limits.list_page_rows_max
            )));
        }
        Ok(())
    }

    /// Creates a document.
    pub async fn create(&self, new: NewDocument) -> Result<DocumentView> {
        validate_document_name(&new.name, &self.limits)?;
        validate_document_title(&new.title, &self.limits)?;
        validate_actor_name(&new.actor, &self.limits)?;
        self.check_text(new.text.len() as u64)?;
        let now = (self.clock)();
        let meta = DocumentMeta {
            name: new.name,
            namespace: new.namespace,
            title: new.title,
            epoch: 0,
            revision: 0,
            ops_since_compaction: 0,
            text_bytes: new.text.len() as u64,
            created_at: now,
            updated_at: now,
            compacted_at: now,
        };
        let mut crdt = CrdtText::new(&new.text);
        let record = Attribution {
            at: now,
            actor: new.actor,
            action: Action::Create,
            epoch: 0,
            inserted_chars: new.text.chars().count() as u64,
            deleted_chars: 0,
            compacted: false,
        };
        let undo = UndoState::default();
        self.storage
            .create_document(&meta, &crdt.save(), &undo.state_json(), &encode(&record)?)
            .await?;
        let view = DocumentView {
            meta: meta.clone(),
            heads: hex_heads(&crdt.heads()),
            text: new.text,
        };
        self.keep(Working { meta, crdt, undo });
        Ok(view)
    }

    async fn load(&self, name: &str) -> Result<Working> {
        let stored = self
            .storage
            .load_document(name)
            .await?
            .ok_or_else(|| Error::DocumentNotFound(name.to_owned()))?;
        let crdt =
            CrdtText::load(&stored.snapshot, &stored.chunks).map_err(|e| corrupt(name, e.0))?;
        let undo = UndoState::from_stored(&stored.state, &stored.undo)
            .map_err(|reason| corrupt(name, reason))?;
        Ok(Working {
            meta: stored.meta,
            crdt,
            undo,
        })
    }

    /// The document as stored now.
    pub async fn read(&self, name: &str) -> Result<DocumentView> {
        let mut working = self.load(name).await?;
        let view = DocumentView {
            meta: working.meta.clone(),
            heads: hex_heads(&working.crdt.heads()),
            text: working.crdt.text(),
        };
        self.keep(working);
        Ok(view)
    }

    /// A page of documents by name, optionally in one namespace (at most
    /// `list_page_rows_max`). Reads no CRDT bytes.
    pub async fn list(
        &self,
        namespace: Option<&Namespace>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DocumentMeta>> {
        self.check_page(limit)?;
        self.storage.list_documents(namespace, limit, offset).await
    }

    /// Attribution records (newest first, at most `limit`) and undo depths.
    pub async fn history(&self, name: &str, limit: u32) -> Result<History> {
        self.check_page(limit)?;
        let working = self.load(name).await?;
        let raw = self.storage.document_log(name, limit).await?;
        let records = raw
            .iter()
            .map(|r| serde_json::from_str(r).map_err(|e| corrupt(name, format!("log record: {e}"))))
            .collect::<Result<Vec<Attribution>>>()?;
        let undo = working
            .undo
            .actors
            .iter()
            .map(|a| UndoDepth {
                actor: a.actor.clone(),
                undo: a.undo.len(),
                redo: a.redo.len(),
            })
            .collect();
        Ok(History {
            meta: working.meta,
            records,
            undo,
        })
    }

    /// Deletes a document with its history; false when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let _ = self.take(name);
        self.storage.delete_document(name).await
    }

    /// Applies an edit. With `base.epoch` set and the document compacted
    /// since, it is refused with `StaleEpoch` and nothing changes.
    pub async fn edit(&self, name: &str, edit: Edit) -> Result<EditOutcome> {
        validate_actor_name(&edit.actor, &self.limits)?;
        let heads = match &edit.base.heads {
            Some(heads) if edit.base.epoch.is_none() => {
                return Err(Error::invalid(format!(
                    "an edit based on heads must name their epoch ({} heads given)",
                    heads.len()
                )));
            }
            Some(heads) => Some(parse_heads(heads)?),
            None => None,
        };
        let limits = self.limits.clone();
        self.mutate(name, &edit.actor, Action::Edit, |w| {
            if let Some(expected) = edit.base.epoch
                && expected != w.meta.epoch
            {
                return Err(Error::StaleEpoch {
                    name: w.meta.name.clone(),
                    expected,
                    actual: w.meta.epoch,
                });
            }
            apply_edit(w, &edit, heads.as_deref(), &limits)
        })
        .await
    }

    /// Replaces the text with `text` (applied as a diff, so concurrent edits
    /// elsewhere in the text survive). Shorthand for [`DocumentStore::edit`].
    pub async fn write_text(
        &self,
        name: &str,
        actor: &str,
        text: String,
        base: Base,
    ) -> Result<EditOutcome> {
        self.edit(
            name,
            Edit {
                actor: actor.to_owned(),
                base,
                change: Change::Text(text),
            },
        )
        .await
    }

    /// Undoes `actor`'s latest edit (or redo) still on its undo stack.
    pub async fn undo(&self, name: &str, actor: &str) -> Result<EditOutcome> {
        self.step(name, actor, Stack::Undo).await
    }

    /// Redoes `actor`'s latest undo.
    pub async fn redo(&self, name: &str, actor: &str) -> Result<EditOutcome> {
        self.step(name, actor, Stack::Redo).await
    }

    async fn step(&self, name: &str, actor: &str, stack: Stack) -> Result<EditOutcome> {
        validate_actor_name(actor, &self.limits)?;
        let limits = self.limits.clone();
        let (verb, action, other) = match stack {
            Stack::Undo => ("undo", Action::Undo, Stack::Redo),
            Stack::Redo => ("redo", Action::Redo, Stack::Undo),
        };
        self.mutate(name, actor, action, |w| {
            let step = w
                .undo
                .peek(actor, stack)
                .cloned()
                .ok_or_else(|| Error::Undo {
                    action: verb,
                    reason: format!("actor {actor} has nothing to {verb} on document {name}"),
                })?;
            let after = step.check(&w.crdt.text()).map_err(|reason| Error::Undo {
                action: verb,
                reason: format!("{reason}; nothing was changed"),
            })?;
            let inverse = w
                .crdt
                .apply(actor, &step.splices)
                .map_err(|reason| Error::Undo {
                    action: verb,
                    reason,
                })?;
            let (inserted_chars, deleted_chars, _) = chars_and_bytes(&step.splices, &inverse);
            w.undo.pop(actor, stack);
            w.undo.push(
                actor,
                other,
                Step::undoing(0, &step.splices, inverse),
                &limits,
            );
            Ok(Applied {
                changed: true,
                splices: step.splices.len(),
                inserted_chars,
                deleted_chars,
                text_bytes: after.len() as u64,
                ..Applied::default()
            })
        })
        .await
    }

    /// Compacts the document now: rebuilt from its current text, history
    /// dropped, epoch bumped. Undo steps survive (positions are unchanged).
    pub async fn compact(&self, name: &str, actor: &str) -> Result<EditOutcome> {
        validate_actor_name(actor, &self.limits)?;
        self.mutate(name, actor, Action::Compact, |w| {
            Ok(Applied {
                force_compact: true,
                text_bytes: w.meta.text_bytes,
                ..Applied::default()
            })
        })
        .await
    }

    /// Loads (or takes the open copy of) the document, runs `op` on it,
    /// applies the compaction policy and saves with a compare-and-set,
    /// retrying from a fresh load when another writer saved first.
    async fn mutate(
        &self,
        name: &str,
        actor: &str,
        action: Action,
        mut op: impl FnMut(&mut Working) -> Result<Applied>,
    ) -> Result<EditOutcome> {
        let mut use_open = true;
        for _ in 0..CONFLICT_RETRIES_MAX {
            let open = if use_open { self.take(name) } else { None };
            let from_open = open.is_some();
            let mut w = match open {
                Some(w) => w,
                None => self.load(name).await?,
            };
            let applied = match op(&mut w) {
                Ok(applied) => applied,
                // The open copy may be behind the database: judge again on a fresh load.
                Err(_) if from_open => {
                    use_open = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !applied.changed && !applied.force_compact {
                let outcome = self.outcome(&mut w, actor, &applied, false, false);
                self.keep(w);
                return Ok(outcome);
            }
            self.check_text(applied.text_bytes)?;
            let now = (self.clock)();
            let ops = w.meta.ops_since_compaction
                + (applied.inserted_chars + applied.deleted_chars).max(1);
            let elapsed_s = (now - w.meta.compacted_at).num_seconds();
            let due = applied.force_compact
                || ops >= u64::from(self.limits.crdt_compact_every_ops)
                || elapsed_s >= i64::try_from(self.limits.crdt_compact_every_s).unwrap_or(i64::MAX);
            let mut meta = w.meta.clone();
            meta.revision += 1;
            meta.updated_at = now;
            meta.text_bytes = applied.text_bytes;
            let body = if due {
                w.crdt = w.crdt.compacted();
                meta.epoch += 1;
                meta.ops_since_compaction = 0;
                meta.compacted_at = now;
                DocumentBody::Replace(w.crdt.save())
            } else {
                meta.ops_since_compaction = ops;
                DocumentBody::Append(w.crdt.save_incremental())
            };
            let record = Attribution {
                at: now,
                actor: actor.to_owned(),
                action,
                epoch: meta.epoch,
                inserted_chars: applied.inserted_chars,
                deleted_chars: applied.deleted_chars,
                compacted: due,
            };
            let save = DocumentSave {
                meta: meta.clone(),
                expected_revision: w.meta.revision,
                body,
                state: w.undo.state_json(),
                undo: w.undo.take_journal(),
                log: Some(encode(&record)?),
                log_keep: self.limits.crdt_attribution_records_max,
            };
            match self.storage.save_document(&save).await {
                Ok(()) => {
                    w.meta = meta;
                    let outcome = self.outcome(&mut w, actor, &applied, true, due);
                    self.keep(w);
                    return Ok(outcome);
                }
                Err(Error::DocumentConflict(_)) => {
                    use_open = false;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::DocumentConflict(name.to_owned()))
    }

    fn outcome(
        &self,
        w: &mut Working,
        actor: &str,
        applied: &Applied,
        changed: bool,
        compacted: bool,
    ) -> EditOutcome {
        let (undo_depth, redo_depth) = w.undo.depths(actor);
        EditOutcome {
            meta: w.meta.clone(),
            heads: hex_heads(&w.crdt.heads()),
            changed: changed && applied.changed,
            splices: applied.splices,
            inserted_chars: applied.inserted_chars,
            deleted_chars: applied.deleted_chars,
            compacted,
            undo_depth,
            redo_depth,
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Storage(format!("cannot encode: {e}")))
}

/// Applies `edit` to `w`: directly when based on the current state, else on
/// a replica at the base heads, merged back.
fn apply_edit(
    w: &mut Working,
    edit: &Edit,
    heads: Option<&[ChangeHash]>,
    limits: &Limits,
) -> Result<Applied> {
    let current = w.crdt.heads();
    let base_is_current = heads.is_none_or(|h| {
        let mut h = h.to_vec();
        let mut c = current.clone();
        h.sort();
        c.sort();
        h == c
    });
    let mut replica = if base_is_current {
        None
    } else {
        Some(
            w.crdt
                .fork_at(heads.unwrap_or_default())
                .map_err(Error::invalid)?,
        )
    };
    let target = replica.as_mut().unwrap_or(&mut w.crdt);
    let splices = match &edit.change {
        Change::Splices(s) => s.clone(),
        Change::Text(text) => {
            if text.len() as u64 > limits.doc_text_bytes_max {
                return Err(Error::invalid(format!(
                    "document text would be {} bytes, over the limit of {} (doc_text_bytes_max)",
                    text.len(),
                    limits.doc_text_bytes_max
                )));
            }
            splices(&target.text(), text)
        }
    };
    if splices.is_empty() || splices.iter().all(|s| s.delete == 0 && s.insert.is_empty()) {
        return Ok(Applied {
            text_bytes: w.meta.text_bytes,
            ..Applied::default()
        });
    }
    let inverse = target
        .apply(&edit.actor, &splices)
        .map_err(Error::invalid)?;
    let (inserted_chars, deleted_chars, delta) = chars_and_bytes(&splices, &inverse);
    let text_bytes = match replica.as_mut() {
        Some(replica) => {
            w.crdt.merge(replica).map_err(Error::invalid)?;
            w.crdt.text().len() as u64
        }
        None => w.meta.text_bytes.saturating_add_signed(delta),
    };
    w.undo.record_edit(&edit.actor, &splices, inverse, limits);
    Ok(Applied {
        changed: true,
        force_compact: false,
        splices: splices.len(),
        inserted_chars,
        deleted_chars,
        text_bytes,
    })
}
