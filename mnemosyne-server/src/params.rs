//! Request arguments, shared by the MCP tools (their JSON schemas, with the
//! descriptions an agent reads) and the HTTP routes (their JSON bodies).
//! Values are checked by the core types' parsers, so an error says what is
//! wrong in the core's words.

use std::str::FromStr;

use mnemosyne_core::{
    Importance, Link, LinkType, ListQuery, ListSort, MemoryId, MemoryPatch, MemoryType, Namespace,
    NewMemory,
};
use mnemosyne_storage::{ContextQuery, RecallMode, RecallQuery};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiError;

/// Arguments of `remember` (MCP) and the body of `POST /v1/memories`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberParams {
    /// The text to remember: a decision, a bug and its fix, a pattern, a fact.
    /// At most `memory_content_bytes_max` bytes (64 KiB by default).
    pub content: String,
    /// Where it lives: "global" (default), "project:NAME" or
    /// "session:PROJECT/ID". A recall in a session also sees its project and global.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A short form of the content (optional).
    #[serde(default)]
    pub summary: Option<String>,
    /// Kind of knowledge: note (default), decision, fact, pattern, bugfix,
    /// preference or context.
    #[serde(default)]
    pub memory_type: Option<String>,
    /// How much it matters, 1 (trivia) to 10 (never forget); default 5.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub importance: Option<u8>,
    /// Labels, e.g. ["sqlite", "locking"]; lower-cased.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Links to existing memories.
    #[serde(default)]
    pub links: Vec<LinkParams>,
}

/// A link to another memory.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkParams {
    /// Id of the memory the link points to.
    pub target: String,
    /// Relation: relates_to (default), depends_on, supersedes, contradicts,
    /// derived_from, fixes or part_of.
    #[serde(default)]
    pub link_type: Option<String>,
}

/// Arguments of `recall` (MCP) and the body of `POST /v1/recall`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallParams {
    /// What to search for, in plain words (operators are not interpreted).
    pub query: String,
    /// Search this namespace and the ones it sees (a session sees its project
    /// and global); default: every namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only memories carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Results wanted; default and maximum `recall_results_max` (100 by default).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// Also search archived (forgotten) memories.
    #[serde(default)]
    pub include_archived: bool,
    /// Signals: hybrid (default: keywords, vectors and links), keyword or vector.
    #[serde(default)]
    pub mode: Option<String>,
    /// Only memories of at least this importance, 1 to 10 (linked ones too).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub min_importance: Option<u8>,
}

/// Arguments of `get`, and of `forget` without `hard`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    /// Memory id (a UUID, as returned by remember or recall).
    pub id: String,
}

/// Fields `update` can change; absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
pub struct UpdateFields {
    /// New content.
    #[serde(default)]
    pub content: Option<String>,
    /// New summary; an empty string removes it.
    #[serde(default)]
    pub summary: Option<String>,
    /// New kind: note, decision, fact, pattern, bugfix, preference or context.
    #[serde(default)]
    pub memory_type: Option<String>,
    /// New importance, 1 to 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub importance: Option<u8>,
    /// Move to this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Replace every tag with these; an empty list removes them all.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// true archives the memory (hidden from recall and list), false restores it.
    #[serde(default)]
    pub archived: Option<bool>,
}

/// Arguments of `update` (MCP): the id and the fields to change.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
pub struct UpdateParams {
    /// Memory id.
    pub id: String,
    /// The changes.
    #[serde(flatten)]
    pub fields: UpdateFields,
}

/// Arguments of `forget`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetParams {
    /// Memory id.
    pub id: String,
    /// Delete it with its links instead of archiving it (default false:
    /// archived memories stay on disk, hidden from recall and list).
    #[serde(default)]
    pub hard: bool,
}

/// Arguments of `link` (MCP).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkMemoriesParams {
    /// Id of the memory the link starts from.
    pub source: String,
    /// Id of the memory it points to.
    pub target: String,
    /// Relation: relates_to (default), depends_on, supersedes, contradicts,
    /// derived_from, fixes or part_of.
    #[serde(default)]
    pub link_type: Option<String>,
}

/// Arguments of `list` (MCP) and the query of `GET /v1/memories`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this exact namespace; default: all.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only memories carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Rows wanted, 1 to `list_page_rows_max`; default 20.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// Rows to skip (paging).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Order: recent (default, most recently updated first) or importance.
    #[serde(default)]
    pub sort: Option<String>,
    /// Include archived memories.
    #[serde(default)]
    pub include_archived: bool,
    /// Only memories of at least this importance, 1 to 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10))]
    pub min_importance: Option<u8>,
}

/// Arguments of `context` (MCP) and the query of `GET /v1/memories/{id}/context`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextParams {
    /// Id of the memory at the centre (from recall, list or remember).
    pub id: String,
    /// Link hops to follow, 0 (the memory alone) to `context_hops_max` (2 by
    /// default); default: that maximum. More is refused.
    #[serde(default)]
    pub hops: Option<u32>,
    /// Neighbours followed from each memory, most important first, 1 to
    /// `context_fan_out_max` (8 by default); default: that maximum. More is refused.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub fan_out: Option<u32>,
    /// Memories in the answer, the centre included, 1 to
    /// `context_memories_max` (50 by default); default: that maximum. More is refused.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// Follow links to archived (forgotten) memories too.
    #[serde(default)]
    pub include_archived: bool,
}

/// Rows `list` returns when no limit is given.
pub const LIST_ROWS_DEFAULT: u32 = 20;

fn parse<T: FromStr<Err = mnemosyne_core::Error>>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(ApiError::from)
}

fn parse_opt<T: FromStr<Err = mnemosyne_core::Error>>(
    text: Option<&str>,
) -> Result<Option<T>, ApiError> {
    text.map(parse).transpose()
}

/// A memory id from its text.
pub fn memory_id(text: &str) -> Result<MemoryId, ApiError> {
    parse(text)
}

fn importance(value: Option<u8>) -> Result<Option<Importance>, ApiError> {
    value
        .map(|v| Importance::try_from(i64::from(v)).map_err(ApiError::from))
        .transpose()
}

/// A `min_importance` filter, 1 to 10.
fn min_importance(value: Option<u8>) -> Result<Option<Importance>, ApiError> {
    value
        .map(|v| {
            Importance::try_from(i64::from(v)).map_err(|_| {
                ApiError::invalid(format!(
                    "invalid input: min_importance must be between 1 and 10, got {v}"
                ))
            })
        })
        .transpose()
}

/// A link from its parts.
pub fn link(target: &str, link_type: Option<&str>) -> Result<Link, ApiError> {
    Ok(Link {
        target: memory_id(target)?,
        link_type: parse_opt::<LinkType>(link_type)?.unwrap_or_default(),
    })
}

impl RememberParams {
    /// The core request.
    pub fn into_new_memory(self) -> Result<NewMemory, ApiError> {
        let links = self
            .links
            .iter()
            .map(|l| link(&l.target, l.link_type.as_deref()))
            .collect::<Result<_, _>>()?;
        Ok(NewMemory {
            namespace: parse_opt::<Namespace>(self.namespace.as_deref())?.unwrap_or_default(),
            content: self.content,
            summary: self.summary,
            memory_type: parse_opt::<MemoryType>(self.memory_type.as_deref())?.unwrap_or_default(),
            importance: importance(self.importance)?.unwrap_or_default(),
            tags: self.tags,
            links,
        })
    }
}

impl RecallParams {
    /// The core request.
    pub fn into_query(self) -> Result<RecallQuery, ApiError> {
        let mode = match self.mode.as_deref() {
            None | Some("hybrid") => RecallMode::Hybrid,
            Some("keyword") => RecallMode::Keyword,
            Some("vector") => RecallMode::Vector,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "invalid input: mode must be hybrid, keyword or vector, got {other:?}"
                )));
            }
        };
        if self.limit == Some(0) {
            return Err(ApiError::invalid("invalid input: limit must be at least 1"));
        }
        Ok(RecallQuery {
            text: self.query,
            namespace: parse_opt(self.namespace.as_deref())?,
            tags: self.tags,
            limit: self.limit,
            include_archived: self.include_archived,
            mode,
            min_importance: min_importance(self.min_importance)?,
        })
    }
}

impl UpdateFields {
    /// The core patch.
    pub fn into_patch(self) -> Result<MemoryPatch, ApiError> {
        Ok(MemoryPatch {
            content: self.content,
            summary: self
                .summary
                .map(|s| if s.trim().is_empty() { None } else { Some(s) }),
            memory_type: parse_opt(self.memory_type.as_deref())?,
            importance: importance(self.importance)?,
            namespace: parse_opt(self.namespace.as_deref())?,
            tags: self.tags,
            archived: self.archived,
        })
    }
}

impl ListParams {
    /// The core query.
    pub fn into_query(self) -> Result<ListQuery, ApiError> {
        let sort = match self.sort.as_deref() {
            None | Some("recent") => ListSort::Recent,
            Some("importance") => ListSort::Importance,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "invalid input: sort must be recent or importance, got {other:?}"
                )));
            }
        };
        Ok(ListQuery {
            namespace: parse_opt(self.namespace.as_deref())?,
            tags: self.tags,
            sort,
            limit: self.limit.unwrap_or(LIST_ROWS_DEFAULT),
            offset: self.offset.unwrap_or(0),
            after: None,
            include_archived: self.include_archived,
            min_importance: min_importance(self.min_importance)?,
        })
    }
}

impl ContextParams {
    /// The storage request; the bounds are checked against the limits by the store.
    pub fn into_query(self) -> Result<ContextQuery, ApiError> {
        Ok(ContextQuery {
            id: memory_id(&self.id)?,
            hops: self.hops,
            fan_out: self.fan_out,
            limit: self.limit,
            include_archived: self.include_archived,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_invalid_input_in_the_core_words() {
        let params: RememberParams =
            serde_json::from_value(serde_json::json!({"content": "x", "namespace": "nope"}))
                .unwrap();
        let error = params.into_new_memory().unwrap_err();
        assert_eq!(error.code, "invalid_input");
        assert!(error.message.contains("namespace"), "{}", error.message);
        let params: RememberParams =
            serde_json::from_value(serde_json::json!({"content": "x", "importance": 11})).unwrap();
        assert!(
            params
                .into_new_memory()
                .unwrap_err()
                .message
                .contains("between 1 and 10")
        );
        let error = memory_id("not-a-uuid").unwrap_err();
        assert_eq!(error.status, 400);
    }

    #[test]
    fn min_importance_is_1_to_10_and_named_when_refused() {
        for value in [0, 11] {
            let params: ListParams =
                serde_json::from_value(serde_json::json!({"min_importance": value})).unwrap();
            let error = params.into_query().unwrap_err();
            assert_eq!(error.status, 400);
            assert_eq!(
                error.message,
                format!("invalid input: min_importance must be between 1 and 10, got {value}")
            );
            let params: RecallParams =
                serde_json::from_value(serde_json::json!({"query": "x", "min_importance": value}))
                    .unwrap();
            assert!(
                params
                    .into_query()
                    .unwrap_err()
                    .message
                    .contains("min_importance")
            );
        }
        for value in [1, 10] {
            let params: ListParams =
                serde_json::from_value(serde_json::json!({"min_importance": value})).unwrap();
            let query = params.into_query().unwrap();
            assert_eq!(query.min_importance.map(Importance::get), Some(value));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            serde_json::from_value::<RememberParams>(serde_json::json!({"content": "x", "imp": 3}))
                .unwrap_err();
        assert!(error.to_string().contains("imp"), "{error}");
    }

    #[test]
    fn update_fields_map_to_a_patch() {
        let params: UpdateParams = serde_json::from_value(
            serde_json::json!({"id": "x", "summary": "", "tags": [], "importance": 9}),
        )
        .unwrap();
        let patch = params.fields.into_patch().unwrap();
        assert_eq!(patch.summary, Some(None));
        assert_eq!(patch.tags, Some(vec![]));
        assert_eq!(patch.importance.map(Importance::get), Some(9));
    }
}
