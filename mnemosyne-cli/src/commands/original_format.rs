//! A record of the system Mnemosyne replaces (its `mnemosyne export`,
//! `MemoryNote` in its `src/types.rs`) and how it maps to ours.
//!
//! - namespace: `{"type":"global"}`, `{"type":"project","name":N}`,
//!   `{"type":"session","project":P,"session_id":S}` (or the strings
//!   `global`, `project:N`, `session:P:S`, ours `session:P/S`, `session:X`
//!   meaning `session:X/X`) become ours; `{"type":"agent","agent_id":A}`
//!   (`agent:A`, `profile:A`) becomes `project:agent-A`. A name with
//!   characters ours do not take has each run of them replaced by `-` and
//!   is cut to 64 bytes: the namespace is reported as renamed.
//! - memory_type (snake_case, or PascalCase as its debug output prints
//!   it): `architecture_decision` -> decision, `code_pattern` -> pattern,
//!   `bug_fix` -> bugfix, `preference` -> preference, our own names to
//!   themselves; any other -> note, with the original type as a tag.
//! - tags: lower-cased, whitespace runs become `-`, commas and control
//!   characters dropped, cut to `tag_bytes_max`, sorted, unique; past
//!   `memory_tags_max` the last ones are dropped (the type tag first kept).
//! - links: `supersedes`, `contradicts` -> the same; `extends`,
//!   `builds_upon` -> derived_from; `implements`, `references`,
//!   `referenced_by`, `clarifies` and unknown types -> relates_to. Their
//!   strength and reason are dropped. `superseded_by: X` becomes the link
//!   X -> this memory (supersedes).
//! - kept as they are: id, content, summary, importance (1 to 10),
//!   created_at, updated_at, last_accessed_at (our accessed_at),
//!   access_count, is_archived (our archived).
//! - not kept: every other field (keywords, context, confidence,
//!   related_files, expires_at, ...): the report counts them by name.
//!
//! A record whose values break our limits is not mapped (the caller skips
//! it and says why); nothing is cut from content or summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mnemosyne_core::{
    Importance, Limits, Link, LinkType, Memory, MemoryId, MemoryType, NAMESPACE_PART_BYTES_MAX,
    Namespace,
};
use serde::Deserialize;
use serde_json::Value;

use super::import_record::NewIds;

/// Fields of a record that are mapped; any other is counted as not kept.
const MAPPED_FIELDS: [&str; 14] = [
    "id",
    "namespace",
    "content",
    "summary",
    "tags",
    "memory_type",
    "importance",
    "links",
    "created_at",
    "updated_at",
    "last_accessed_at",
    "access_count",
    "is_archived",
    "superseded_by",
];

/// The fields of a record that are mapped (others are ignored, never refused).
#[derive(Debug, Deserialize)]
struct OriginalRecord {
    #[serde(default)]
    id: Option<MemoryId>,
    #[serde(default)]
    namespace: Option<Value>,
    content: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    memory_type: Option<String>,
    #[serde(default)]
    importance: Option<i64>,
    #[serde(default)]
    links: Option<Vec<OriginalLink>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    last_accessed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    access_count: Option<u64>,
    #[serde(default)]
    is_archived: Option<bool>,
    #[serde(default)]
    superseded_by: Option<MemoryId>,
}

/// A link of the original (`MemoryLink`); strength, reason and times are dropped.
#[derive(Debug, Deserialize)]
struct OriginalLink {
    target_id: MemoryId,
    #[serde(default)]
    link_type: Option<String>,
}

/// How one memory type of the original was mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMapping {
    /// The original type, normalised to snake_case (`none` when absent).
    pub original: String,
    /// Ours.
    pub mapped: MemoryType,
    /// The tag keeping the original type, when ours loses it.
    pub tag: Option<String>,
}

impl TypeMapping {
    /// `insight -> note (tag insight)`, `bug_fix -> bugfix`.
    pub fn describe(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{} -> {} (tag {tag})", self.original, self.mapped),
            None => format!("{} -> {}", self.original, self.mapped),
        }
    }
}

/// A record mapped to our memory, ready to import.
#[derive(Debug)]
pub struct Mapped {
    /// The memory, without links (they are added once every memory is stored).
    pub memory: Memory,
    /// True when the record had no id and this one was made.
    pub id_made: bool,
    /// Its outgoing links, and the link `superseded_by` asks for (from
    /// the newer memory to this one).
    pub links: Vec<(MemoryId, Link)>,
    /// Each original link type with ours (superseded_by counted as `superseded_by`).
    pub link_mappings: Vec<(String, LinkType)>,
    /// Links to itself, dropped.
    pub self_links: u64,
    /// The type mapping.
    pub memory_type: TypeMapping,
    /// The original namespace and ours, when ours is not the same name.
    pub renamed: Option<(String, Namespace)>,
    /// Tags dropped past `memory_tags_max`, or empty once normalised.
    pub tags_dropped: u64,
    /// Fields of the record that are not kept, by name.
    pub ignored_fields: Vec<String>,
}

/// Maps record `number` (1-based) of the file; the error says why it cannot be.
pub fn map_record(
    value: Value,
    number: u64,
    limits: &Limits,
    ids: &NewIds,
) -> Result<Mapped, String> {
    let Value::Object(fields) = &value else {
        return Err(format!("not a JSON object but {}", json_kind(&value)));
    };
    let mut ignored_fields: Vec<String> = fields
        .keys()
        .filter(|key| !MAPPED_FIELDS.contains(&key.as_str()))
        .cloned()
        .collect();
    ignored_fields.sort();
    let record: OriginalRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let (namespace, renamed) = match &record.namespace {
        None | Some(Value::Null) => (Namespace::Global, None),
        Some(original) => map_namespace(original)?,
    };
    let memory_type = map_type(record.memory_type.as_deref(), limits);
    let mut tags: Vec<String> = memory_type.tag.iter().cloned().collect();
    let original_tags = record.tags.unwrap_or_default();
    let mut tags_dropped = 0;
    for tag in &original_tags {
        match normalise_tag(tag, limits) {
            Some(tag) => tags.push(tag),
            None => tags_dropped += 1,
        }
    }
    let mut seen = std::collections::HashSet::new();
    tags.retain(|tag| seen.insert(tag.clone()));
    let tags_max = limits.memory_tags_max as usize;
    if tags.len() > tags_max {
        tags_dropped += (tags.len() - tags_max) as u64;
        tags.truncate(tags_max);
    }
    tags.sort();
    let importance = match record.importance {
        None => Importance::default(),
        Some(value) => Importance::try_from(value).map_err(|e| e.to_string())?,
    };
    let created_at = record.created_at.unwrap_or(ids.started);
    let updated_at = record.updated_at.unwrap_or(created_at);
    let id_made = record.id.is_none();
    let id = record
        .id
        .unwrap_or_else(|| ids.for_line(number, created_at));
    let memory = Memory {
        id,
        namespace,
        content: record.content,
        summary: record.summary.filter(|s| !s.trim().is_empty()),
        memory_type: memory_type.mapped,
        importance,
        tags,
        links: Vec::new(),
        created_at,
        updated_at,
        accessed_at: record.last_accessed_at.unwrap_or(updated_at),
        access_count: record.access_count.unwrap_or(0),
        archived: record.is_archived.unwrap_or(false),
    };
    memory.validate(limits).map_err(|e| e.to_string())?;
    let mut links = Vec::new();
    let mut link_mappings = Vec::new();
    let mut self_links = 0;
    for link in record.links.unwrap_or_default() {
        let original = normalise_name(link.link_type.as_deref().unwrap_or("relates_to"));
        let link_type = map_link_type(&original);
        link_mappings.push((original, link_type));
        if link.target_id == id {
            self_links += 1;
            continue;
        }
        let link = Link {
            target: link.target_id,
            link_type,
        };
        if !links.contains(&(id, link.clone())) {
            links.push((id, link));
        }
    }
    if let Some(newer) = record.superseded_by {
        link_mappings.push(("superseded_by".to_owned(), LinkType::Supersedes));
        if newer == id {
            self_links += 1;
        } else {
            links.push((
                newer,
                Link {
                    target: id,
                    link_type: LinkType::Supersedes,
                },
            ));
        }
    }
    Ok(Mapped {
        memory,
        id_made,
        links,
        link_mappings,
        self_links,
        memory_type,
        renamed,
        tags_dropped,
        ignored_fields,
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Our namespace for the original's, and the original's text when the
/// names had to change.
fn map_namespace(original: &Value) -> Result<(Namespace, Option<(String, Namespace)>), String> {
    let text_field = |fields: &serde_json::Map<String, Value>, name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("namespace: {original} has no text field {name:?}"))
    };
    let (parts, shown): (NamespaceParts, String) = match original {
        Value::String(text) => (parse_namespace_text(text)?, text.clone()),
        Value::Object(fields) => {
            let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
            let parts = match kind {
                "global" => NamespaceParts::Global,
                "project" => NamespaceParts::Project(text_field(fields, "name")?),
                "session" => NamespaceParts::Session(
                    text_field(fields, "project")?,
                    text_field(fields, "session_id")?,
                ),
                "agent" => NamespaceParts::Agent(text_field(fields, "agent_id")?),
                _ => {
                    return Err(format!(
                        "namespace: unknown namespace {original}: expected type global, project, session or agent"
                    ));
                }
            };
            let shown = parts.original_text();
            (parts, shown)
        }
        other => {
            return Err(format!(
                "namespace: expected an object or a string, got {}",
                json_kind(other)
            ));
        }
    };
    let ours = match &parts {
        NamespaceParts::Global => Namespace::Global,
        NamespaceParts::Project(name) => Namespace::Project(sanitise_part(name)),
        NamespaceParts::Session(project, session) => Namespace::Session {
            project: sanitise_part(project),
            session: sanitise_part(session),
        },
        NamespaceParts::Agent(agent) => {
            Namespace::Project(sanitise_part(&format!("agent-{agent}")))
        }
    };
    let unchanged = match (&parts, &ours) {
        (NamespaceParts::Global, _) => true,
        (NamespaceParts::Project(name), Namespace::Project(ours)) => name == ours,
        (NamespaceParts::Session(p, s), Namespace::Session { project, session }) => {
            p == project && s == session
        }
        _ => false,
    };
    let renamed = (!unchanged).then(|| (shown, ours.clone()));
    Ok((ours, renamed))
}

/// A namespace of the original, before its names are made ours.
enum NamespaceParts {
    Global,
    Project(String),
    Session(String, String),
    Agent(String),
}

impl NamespaceParts {
    /// As the original prints it.
    fn original_text(&self) -> String {
        match self {
            Self::Global => "global".to_owned(),
            Self::Project(name) => format!("project:{name}"),
            Self::Session(project, session) => format!("session:{project}:{session}"),
            Self::Agent(agent) => format!("agent:{agent}"),
        }
    }
}

fn parse_namespace_text(text: &str) -> Result<NamespaceParts, String> {
    if text == "global" {
        return Ok(NamespaceParts::Global);
    }
    if let Some(name) = text.strip_prefix("project:") {
        return Ok(NamespaceParts::Project(name.to_owned()));
    }
    if let Some(rest) = text.strip_prefix("session:") {
        return Ok(match rest.split_once([':', '/']) {
            Some((project, session)) => {
                NamespaceParts::Session(project.to_owned(), session.to_owned())
            }
            None => NamespaceParts::Session(rest.to_owned(), rest.to_owned()),
        });
    }
    if let Some(agent) = text
        .strip_prefix("agent:")
        .or_else(|| text.strip_prefix("profile:"))
    {
        return Ok(NamespaceParts::Agent(agent.to_owned()));
    }
    Err(format!(
        "namespace: unknown namespace {text:?}: expected global, project:NAME, session:PROJECT:ID or agent:ID"
    ))
}

/// A name our namespaces take: each run of other characters becomes `-`,
/// cut to [`NAMESPACE_PART_BYTES_MAX`]; an empty name becomes `unnamed`.
fn sanitise_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len().min(NAMESPACE_PART_BYTES_MAX));
    let mut in_run = false;
    for c in part.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out.truncate(NAMESPACE_PART_BYTES_MAX);
    if out.is_empty() {
        "unnamed".to_owned()
    } else {
        out
    }
}

/// `ArchitectureDecision`, `architecture-decision`, ` Bug Fix ` ->
/// `architecture_decision`, `architecture_decision`, `bug_fix`.
fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.trim().chars() {
        if c.is_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            previous_lower = false;
        } else if c == '-' || c.is_whitespace() {
            if !out.ends_with('_') {
                out.push('_');
            }
            previous_lower = false;
        } else {
            out.push(c);
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

fn map_type(original: Option<&str>, limits: &Limits) -> TypeMapping {
    let Some(original) = original.map(normalise_name).filter(|t| !t.is_empty()) else {
        return TypeMapping {
            original: "none".to_owned(),
            mapped: MemoryType::Note,
            tag: None,
        };
    };
    let one_to_one = match original.as_str() {
        "architecture_decision" => Some(MemoryType::Decision),
        "code_pattern" => Some(MemoryType::Pattern),
        "bug_fix" => Some(MemoryType::Bugfix),
        ours => ours.parse::<MemoryType>().ok(),
    };
    match one_to_one {
        Some(mapped) => TypeMapping {
            original,
            mapped,
            tag: None,
        },
        None => TypeMapping {
            tag: normalise_tag(&original, limits),
            original,
            mapped: MemoryType::Note,
        },
    }
}

fn map_link_type(original: &str) -> LinkType {
    match original {
        "supersedes" => LinkType::Supersedes,
        "contradicts" => LinkType::Contradicts,
        "extends" | "builds_upon" => LinkType::DerivedFrom,
        ours => ours.parse().unwrap_or(LinkType::RelatesTo),
    }
}

/// A tag as ours are: lower case, whitespace runs as `-`, no commas or
/// control characters, at most `tag_bytes_max` bytes; `None` when nothing is left.
fn normalise_tag(tag: &str, limits: &Limits) -> Option<String> {
    let mut out = String::with_capacity(tag.len());
    for word in tag
        .split(char::is_whitespace)
        .map(|w| w.replace(|c: char| c == ',' || c.is_control(), ""))
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word.to_lowercase());
    }
    let max = limits.tag_bytes_max as usize;
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    (!out.is_empty()).then_some(out)
}

/// Counts by name, at most `names_max` names; the rest are counted together.
#[derive(Debug, Default, serde::Serialize)]
pub struct BoundedCounts {
    /// Count per name.
    #[serde(flatten)]
    counts: BTreeMap<String, u64>,
    /// Counted beyond `names_max` names.
    #[serde(skip_serializing_if = "is_zero")]
    others: u64,
    #[serde(skip)]
    names_max: usize,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BoundedCounts {
    pub fn new(names_max: usize) -> Self {
        Self {
            counts: BTreeMap::new(),
            others: 0,
            names_max,
        }
    }

    pub fn add(&mut self, name: &str, n: u64) {
        if let Some(count) = self.counts.get_mut(name) {
            *count += n;
        } else if self.counts.len() < self.names_max {
            self.counts.insert(name.to_owned(), n);
        } else {
            self.others += n;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.counts.iter()
    }

    pub fn others(&self) -> u64 {
        self.others
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.others
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Result<Mapped, String> {
        map_record(value, 1, &Limits::default(), &NewIds::new(Utc::now()))
    }

    #[test]
    fn every_type_of_the_original_maps() {
        let limits = Limits::default();
        for (original, mapped, tag) in [
            ("architecture_decision", "decision", None),
            ("ArchitectureDecision", "decision", None),
            ("code_pattern", "pattern", None),
            ("CodePattern", "pattern", None),
            ("bug_fix", "bugfix", None),
            ("BugFix", "bugfix", None),
            ("preference", "preference", None),
            ("Preference", "preference", None),
            ("configuration", "note", Some("configuration")),
            ("constraint", "note", Some("constraint")),
            ("entity", "note", Some("entity")),
            ("insight", "note", Some("insight")),
            ("reference", "note", Some("reference")),
            ("task", "note", Some("task")),
            ("agent_event", "note", Some("agent_event")),
            ("AgentEvent", "note", Some("agent_event")),
            ("constitution", "note", Some("constitution")),
            ("feature_spec", "note", Some("feature_spec")),
            ("implementation_plan", "note", Some("implementation_plan")),
            ("task_breakdown", "note", Some("task_breakdown")),
            ("quality_checklist", "note", Some("quality_checklist")),
            ("clarification", "note", Some("clarification")),
            ("decision", "decision", None),
            ("context", "context", None),
            ("Wisdom Nugget", "note", Some("wisdom_nugget")),
        ] {
            let mapping = map_type(Some(original), &limits);
            assert_eq!(mapping.mapped.as_str(), mapped, "{original}");
            assert_eq!(mapping.tag.as_deref(), tag, "{original}");
        }
        assert_eq!(map_type(None, &limits).describe(), "none -> note");
        assert_eq!(
            map_type(Some("insight"), &limits).describe(),
            "insight -> note (tag insight)"
        );
    }

    #[test]
    fn every_link_type_of_the_original_maps() {
        for (original, ours) in [
            ("supersedes", LinkType::Supersedes),
            ("contradicts", LinkType::Contradicts),
            ("extends", LinkType::DerivedFrom),
            ("builds_upon", LinkType::DerivedFrom),
            ("implements", LinkType::RelatesTo),
            ("references", LinkType::RelatesTo),
            ("referenced_by", LinkType::RelatesTo),
            ("clarifies", LinkType::RelatesTo),
            ("fixes", LinkType::Fixes),
            ("likes", LinkType::RelatesTo),
        ] {
            assert_eq!(map_link_type(&normalise_name(original)), ours, "{original}");
        }
        assert_eq!(
            map_link_type(&normalise_name("BuildsUpon")),
            LinkType::DerivedFrom
        );
    }

    #[test]
    fn namespaces_map_and_bad_names_are_renamed() {
        let ns = |value: Value| {
            map_namespace(&value).map(|(ns, renamed)| {
                (
                    ns.to_string(),
                    renamed.map(|(from, to)| (from, to.to_string())),
                )
            })
        };
        assert_eq!(
            ns(json!({"type": "global"})).unwrap(),
            ("global".into(), None)
        );
        assert_eq!(
            ns(json!({"type": "project", "name": "atlas"})).unwrap(),
            ("project:atlas".into(), None)
        );
        assert_eq!(
            ns(json!({"type": "session", "project": "atlas", "session_id": "abc-1"})).unwrap(),
            ("session:atlas/abc-1".into(), None)
        );
        assert_eq!(
            ns(json!("session:atlas:abc")).unwrap().0,
            "session:atlas/abc"
        );
        assert_eq!(
            ns(json!("session:atlas/abc")).unwrap().0,
            "session:atlas/abc"
        );
        assert_eq!(ns(json!("session:solo")).unwrap().0, "session:solo/solo");
        assert_eq!(
            ns(json!({"type": "project", "name": "My App (café)"})).unwrap(),
            (
                "project:My-App-caf-".into(),
                Some(("project:My App (café)".into(), "project:My-App-caf-".into()))
            )
        );
        assert_eq!(
            ns(json!({"type": "agent", "agent_id": "hermes-local"})).unwrap(),
            (
                "project:agent-hermes-local".into(),
                Some((
                    "agent:hermes-local".into(),
                    "project:agent-hermes-local".into()
                ))
            )
        );
        let long = "x".repeat(NAMESPACE_PART_BYTES_MAX + 1);
        assert_eq!(
            ns(json!({"type": "project", "name": long})).unwrap().0,
            format!("project:{}", "x".repeat(NAMESPACE_PART_BYTES_MAX))
        );
        assert_eq!(
            ns(json!({"type": "project", "name": "日本"})).unwrap().0,
            "project:-"
        );
        assert_eq!(
            ns(json!({"type": "project", "name": ""})).unwrap().0,
            "project:unnamed"
        );
        assert!(
            ns(json!({"type": "team", "name": "x"}))
                .unwrap_err()
                .contains("unknown namespace")
        );
        assert!(
            ns(json!({"type": "project"}))
                .unwrap_err()
                .contains("\"name\"")
        );
        assert!(
            ns(json!("team:x"))
                .unwrap_err()
                .contains("unknown namespace")
        );
        assert!(ns(json!(5)).unwrap_err().contains("a number"));
    }

    #[test]
    fn tags_are_normalised_and_bounded_with_the_type_tag_kept() {
        let limits = Limits {
            memory_tags_max: 3,
            tag_bytes_max: 8,
            ..Limits::default()
        };
        let ids = NewIds::new(Utc::now());
        let mapped = map_record(
            json!({"content": "x", "memory_type": "insight",
                   "tags": ["Error  Handling", "a,b", "A,B", " ", "\u{7}", "zzz", "overflowing tag"]}),
            1,
            &limits,
            &ids,
        )
        .unwrap();
        assert_eq!(mapped.memory.tags, ["ab", "error-ha", "insight"]);
        assert_eq!(mapped.tags_dropped, 4, "two empty, two past the cap");
    }

    #[test]
    fn a_full_record_maps_its_fields_links_and_superseded_by() {
        let me = "6f1c4a3e-8a0e-4c55-9d0c-3b2a1f0e9d8c";
        let other = "0b9f2e1d-7c6b-4a59-8e8d-1c2b3a4f5e6d";
        let newer = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
        let mapped = map(json!({
            "id": me,
            "namespace": {"type": "session", "project": "atlas", "session_id": "s1"},
            "created_at": "2025-10-28T15:46:55.123456789Z",
            "updated_at": "2025-10-29T10:00:00Z",
            "last_accessed_at": "2025-10-30T10:00:00.5Z",
            "content": "use WAL", "summary": "wal", "keywords": ["wal"], "tags": ["SQLite"],
            "context": "why", "memory_type": "code_pattern", "importance": 7, "confidence": 0.9,
            "links": [
                {"target_id": other, "link_type": "extends", "strength": 0.5, "reason": "r",
                 "created_at": "2025-10-28T15:46:55Z", "last_traversed_at": null, "user_created": true},
                {"target_id": other, "link_type": "builds_upon"},
                {"target_id": me, "link_type": "references"}
            ],
            "related_files": [], "related_entities": [], "access_count": 4, "expires_at": null,
            "is_archived": true, "superseded_by": newer, "embedding_model": "voyage-2",
            "provenance": null
        }))
        .unwrap();
        let m = &mapped.memory;
        assert_eq!(m.id.to_string(), me);
        assert_eq!(m.namespace.to_string(), "session:atlas/s1");
        assert_eq!(m.memory_type, MemoryType::Pattern);
        assert_eq!(m.importance.get(), 7);
        assert_eq!(m.tags, ["sqlite"]);
        assert_eq!(m.summary.as_deref(), Some("wal"));
        assert_eq!(m.access_count, 4);
        assert!(m.archived);
        assert_eq!(m.created_at.timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(m.accessed_at.to_rfc3339(), "2025-10-30T10:00:00.500+00:00");
        assert!(!mapped.id_made);
        let other: MemoryId = other.parse().unwrap();
        let newer: MemoryId = newer.parse().unwrap();
        assert_eq!(
            mapped.links,
            [
                (
                    m.id,
                    Link {
                        target: other,
                        link_type: LinkType::DerivedFrom
                    }
                ),
                (
                    newer,
                    Link {
                        target: m.id,
                        link_type: LinkType::Supersedes
                    }
                ),
            ]
        );
        assert_eq!(mapped.self_links, 1);
        assert_eq!(mapped.link_mappings.len(), 4);
        assert_eq!(
            mapped.ignored_fields,
            [
                "confidence",
                "context",
                "embedding_model",
                "expires_at",
                "keywords",
                "provenance",
                "related_entities",
                "related_files"
            ]
        );
    }

    #[test]
    fn records_that_break_our_rules_are_not_mapped_and_say_why() {
        let big = "x".repeat(64 * 1024 + 1);
        for (record, reason) in [
            (json!({"content": "  "}), "content is empty"),
            (json!({"content": big}), "memory_content_bytes_max"),
            (
                json!({"content": "x", "summary": "s".repeat(1025)}),
                "memory_summary_bytes_max",
            ),
            (
                json!({"content": "x", "importance": 11}),
                "between 1 and 10",
            ),
            (json!({"content": "x", "importance": 2.5}), "invalid type"),
            (json!({"content": "x", "id": "nope"}), "UUID"),
            (json!({"memory_type": "insight"}), "missing field `content`"),
            (json!({"content": "x", "tags": "a"}), "invalid type"),
            (json!(["content"]), "not a JSON object but an array"),
        ] {
            let error = map(record.clone()).unwrap_err();
            assert!(error.contains(reason), "{record}: {error}");
        }
        assert!(map(json!({"content": "x", "tags": null, "links": null})).is_ok());
    }

    #[test]
    fn bounded_counts_keep_their_first_names_and_count_the_rest() {
        let mut counts = BoundedCounts::new(2);
        for name in ["a", "b", "c", "a", "d"] {
            counts.add(name, 1);
        }
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [(&"a".to_owned(), &2), (&"b".to_owned(), &1)]
        );
        assert_eq!((counts.others(), counts.total()), (2, 5));
    }
}
