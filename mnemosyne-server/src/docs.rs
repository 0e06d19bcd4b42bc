//! The context document operations both front ends call, with their
//! arguments: the document store's operation, then a `document_changed`
//! event, then the answer. Documents are safe to share between processes
//! (every save is a compare-and-set), so every server has them.

use std::sync::Arc;

use mnemosyne_core::{DocumentMeta, Namespace};
use mnemosyne_ics::{
    Base, Change, DocumentStore, DocumentView, Edit, EditOutcome, NewDocument, Splice,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::events::{Event, EventBus};

/// Arguments of `doc_read` (and the path of `GET /v1/docs/{name}`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocNameParams {
    /// Document name, e.g. "conventions" or "plan/auth".
    pub name: String,
}

/// Arguments of `doc_write` (and the body of `PUT /v1/docs/{name}`, without `name`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocWriteParams {
    /// Document name; created when missing.
    #[serde(default)]
    pub name: String,
    /// The whole new text; it is applied as a diff, so concurrent edits by others survive.
    pub text: String,
    /// Your agent name (undo is per agent).
    pub actor: String,
    /// The epoch you read; if the document was compacted since, the write is
    /// refused (stale_epoch): read it again.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// Namespace of a new document (default global).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Title of a new document (default: its name).
    #[serde(default)]
    pub title: Option<String>,
}

/// One splice: delete `delete` characters at `pos`, then insert `insert` there.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpliceParams {
    /// Position in Unicode characters from the start.
    pub pos: usize,
    /// Characters to delete.
    #[serde(default)]
    pub delete: usize,
    /// Text to insert.
    #[serde(default)]
    pub insert: String,
}

/// Arguments of `doc_edit` (and the body of `POST /v1/docs/{name}/edit`, without `name`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocEditParams {
    /// Document name.
    #[serde(default)]
    pub name: String,
    /// Your agent name.
    pub actor: String,
    /// The epoch you read (required: positions refer to that text).
    pub epoch: u64,
    /// The heads you read (from doc_read); when given, your splices apply to
    /// that version and merge with what others wrote since.
    #[serde(default)]
    pub heads: Option<Vec<String>>,
    /// Splices, applied in order.
    pub splices: Vec<SpliceParams>,
}

/// Arguments of `doc_undo` (and the body of `POST /v1/docs/{name}/undo`, without `name`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocActorParams {
    /// Document name.
    #[serde(default)]
    pub name: String,
    /// Your agent name: your latest change is undone.
    pub actor: String,
}

/// Arguments of `doc_list` and the query of `GET /v1/docs`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocListParams {
    /// Only documents in this exact namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Documents per page (default 50, at most list_page_rows_max).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Documents to skip.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// What `doc_list` answers.
#[derive(Clone, Debug, Serialize)]
pub struct DocListView {
    /// By name.
    pub documents: Vec<DocumentMeta>,
}

fn namespace(text: Option<&str>) -> Result<Option<Namespace>, ApiError> {
    text.map(|n| n.parse::<Namespace>().map_err(ApiError::from))
        .transpose()
}

/// The document operations (cheap to clone).
#[derive(Clone, Debug)]
pub struct Docs {
    store: Arc<DocumentStore>,
    events: EventBus,
}

impl Docs {
    pub(crate) fn new(store: DocumentStore, events: EventBus) -> Self {
        Self {
            store: Arc::new(store),
            events,
        }
    }

    /// The document store.
    pub fn store(&self) -> &DocumentStore {
        &self.store
    }

    fn changed(&self, outcome: &EditOutcome, actor: &str) {
        if outcome.changed {
            self.events.publish(Event::DocumentChanged {
                name: outcome.meta.name.clone(),
                epoch: outcome.meta.epoch,
                revision: outcome.meta.revision,
                actor: actor.to_owned(),
            });
        }
    }

    /// `doc_list`.
    pub async fn list(&self, params: DocListParams) -> Result<DocListView, ApiError> {
        let namespace = namespace(params.namespace.as_deref())?;
        let documents = self
            .store
            .list(
                namespace.as_ref(),
                params.limit.unwrap_or(50),
                params.offset.unwrap_or(0),
            )
            .await?;
        Ok(DocListView { documents })
    }

    /// `doc_read`.
    pub async fn read(&self, name: &str) -> Result<DocumentView, ApiError> {
        Ok(self.store.read(name).await?)
    }

    /// `doc_write`: the whole text as a diff; creates a missing document.
    pub async fn write(&self, params: DocWriteParams) -> Result<EditOutcome, ApiError> {
        let base = Base {
            epoch: params.epoch,
            heads: None,
        };
        match self
            .store
            .write_text(&params.name, &params.actor, params.text.clone(), base)
            .await
        {
            Ok(outcome) => {
                self.changed(&outcome, &params.actor);
                Ok(outcome)
            }
            Err(mnemosyne_core::Error::DocumentNotFound(_)) if params.epoch.is_none() => {
                let new = NewDocument {
                    title: params.title.clone().unwrap_or_else(|| params.name.clone()),
                    name: params.name,
                    namespace: namespace(params.namespace.as_deref())?.unwrap_or_default(),
                    text: params.text,
                    actor: params.actor.clone(),
                };
                let view = self.store.create(new).await?;
                self.events.publish(Event::DocumentChanged {
                    name: view.meta.name.clone(),
                    epoch: view.meta.epoch,
                    revision: view.meta.revision,
                    actor: params.actor,
                });
                Ok(EditOutcome {
                    inserted_chars: view.text.chars().count() as u64,
                    meta: view.meta,
                    heads: view.heads,
                    changed: true,
                    splices: 0,
                    deleted_chars: 0,
                    compacted: false,
                    undo_depth: 0,
                    redo_depth: 0,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// `doc_edit`: splices against the version read.
    pub async fn edit(&self, params: DocEditParams) -> Result<EditOutcome, ApiError> {
        let edit = Edit {
            actor: params.actor.clone(),
            base: Base {
                epoch: Some(params.epoch),
                heads: params.heads,
            },
            change: Change::Splices(
                params
                    .splices
                    .into_iter()
                    .map(|s| Splice {
                        pos: s.pos,
                        delete: s.delete,
                        insert: s.insert,
                    })
                    .collect(),
            ),
        };
        let outcome = self.store.edit(&params.name, edit).await?;
        self.changed(&outcome, &params.actor);
        Ok(outcome)
    }

    /// `doc_undo`.
    pub async fn undo(&self, params: DocActorParams) -> Result<EditOutcome, ApiError> {
        let outcome = self.store.undo(&params.name, &params.actor).await?;
        self.changed(&outcome, &params.actor);
        Ok(outcome)
    }
}
