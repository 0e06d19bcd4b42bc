use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Limits, MemoryId, Namespace};

/// How much a memory matters, 1 (trivia) to 10 (must never be forgotten).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Importance(u8);

impl Importance {
    /// Lowest importance.
    pub const MIN: u8 = 1;
    /// Highest importance.
    pub const MAX: u8 = 10;

    /// The value, within 1..=10.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Importance {
    fn default() -> Self {
        Self(5)
    }
}

impl TryFrom<i64> for Importance {
    type Error = Error;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as u8))
        } else {
            Err(Error::invalid(format!(
                "importance must be between 1 and 10, got {value}"
            )))
        }
    }
}

impl From<Importance> for u8 {
    fn from(value: Importance) -> Self {
        value.0
    }
}

impl FromStr for Importance {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value: i64 = text.trim().parse().map_err(|_| {
            Error::invalid(format!(
                "importance must be a whole number between 1 and 10, got {text:?}"
            ))
        })?;
        Self::try_from(value)
    }
}

impl fmt::Display for Importance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_enum!(
    /// What kind of knowledge a memory holds.
    MemoryType, "memory type", default = Note, {
        /// Anything else.
        Note => "note",
        /// A choice that was made, and why.
        Decision => "decision",
        /// Something true about the code or the world.
        Fact => "fact",
        /// A recurring way of doing things.
        Pattern => "pattern",
        /// A bug and its fix.
        Bugfix => "bugfix",
        /// How a user or team likes things done.
        Preference => "preference",
        /// Background for a task.
        Context => "context",
    }
);

string_enum!(
    /// How one memory relates to another.
    LinkType, "link type", default = RelatesTo, {
        /// Loosely related.
        RelatesTo => "relates_to",
        /// Needs the target to make sense.
        DependsOn => "depends_on",
        /// Replaces the target.
        Supersedes => "supersedes",
        /// Disagrees with the target.
        Contradicts => "contradicts",
        /// Was derived from the target.
        DerivedFrom => "derived_from",
        /// Fixes what the target describes.
        Fixes => "fixes",
        /// Is a part of the target.
        PartOf => "part_of",
    }
);

/// A typed, directed link from one memory to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    /// The memory this link points to.
    pub target: MemoryId,
    /// The relation.
    #[serde(default)]
    pub link_type: LinkType,
}

/// A stored piece of knowledge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// UUIDv7 id.
    pub id: MemoryId,
    /// Where it lives.
    pub namespace: Namespace,
    /// The text.
    pub content: String,
    /// Optional short form of the text.
    #[serde(default)]
    pub summary: Option<String>,
    /// Kind of knowledge.
    #[serde(default)]
    pub memory_type: MemoryType,
    /// 1..=10.
    #[serde(default)]
    pub importance: Importance,
    /// Free-form labels, sorted and unique.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Outgoing links.
    #[serde(default)]
    pub links: Vec<Link>,
    /// When it was remembered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was last read by id.
    pub accessed_at: DateTime<Utc>,
    /// How many times it was read by id.
    #[serde(default)]
    pub access_count: u64,
    /// Archived memories stay stored but are hidden from recall and list.
    #[serde(default)]
    pub archived: bool,
}

impl Memory {
    /// Checks every field against `limits`; the error names the field and the limit.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        validate_content(&self.content, limits)?;
        if let Some(summary) = &self.summary {
            validate_summary(summary, limits)?;
        }
        validate_tags(&self.tags, limits)?;
        if normalise_tags(self.tags.clone()) != self.tags {
            return Err(Error::invalid(format!(
                "tags must be lower-case, sorted and unique, got {:?}",
                self.tags
            )));
        }
        if self.links.len() > limits.memory_links_max as usize {
            return Err(Error::invalid(format!(
                "a memory has at most {} links (memory_links_max), got {}",
                limits.memory_links_max,
                self.links.len()
            )));
        }
        if self.links.iter().any(|link| link.target == self.id) {
            return Err(Error::invalid("a memory cannot link to itself"));
        }
        Ok(())
    }
}

/// What a caller gives to remember something; the store fills in id and times.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewMemory {
    /// Where it lives.
    pub namespace: Namespace,
    /// The text.
    pub content: String,
    /// Optional short form.
    pub summary: Option<String>,
    /// Kind of knowledge.
    pub memory_type: MemoryType,
    /// 1..=10.
    pub importance: Importance,
    /// Labels.
    pub tags: Vec<String>,
    /// Outgoing links.
    pub links: Vec<Link>,
}

impl NewMemory {
    /// A note in `global` with default importance.
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    /// The validated memory, with a fresh id and `now` as every time stamp.
    pub fn into_memory(self, limits: &Limits, now: DateTime<Utc>) -> Result<Memory, Error> {
        let memory = Memory {
            id: MemoryId::new(),
            namespace: self.namespace,
            content: self.content,
            summary: self.summary.filter(|s| !s.trim().is_empty()),
            memory_type: self.memory_type,
            importance: self.importance,
            tags: normalise_tags(self.tags),
            links: dedup_links(self.links),
            created_at: now,
            updated_at: now,
            accessed_at: now,
            access_count: 0,
            archived: false,
        };
        memory.validate(limits)?;
        Ok(memory)
    }
}

/// A change to some fields of a memory; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryPatch {
    /// New text.
    pub content: Option<String>,
    /// New summary; `Some(None)` clears it.
    pub summary: Option<Option<String>>,
    /// New kind.
    pub memory_type: Option<MemoryType>,
    /// New importance.
    pub importance: Option<Importance>,
    /// New namespace.
    pub namespace: Option<Namespace>,
    /// Replaces every tag.
    pub tags: Option<Vec<String>>,
    /// Archive (`true`) or restore (`false`).
    pub archived: Option<bool>,
}

impl MemoryPatch {
    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Normalises tags and checks every given field against `limits`.
    pub fn validated(mut self, limits: &Limits) -> Result<Self, Error> {
        if self.is_empty() {
            return Err(Error::invalid(
                "nothing to update: give at least one field to change",
            ));
        }
        if let Some(content) = &self.content {
            validate_content(content, limits)?;
        }
        if let Some(Some(summary)) = &self.summary {
            if summary.trim().is_empty() {
                self.summary = Some(None);
            } else {
                validate_summary(summary, limits)?;
            }
        }
        if let Some(tags) = self.tags.take() {
            let tags = normalise_tags(tags);
            validate_tags(&tags, limits)?;
            self.tags = Some(tags);
        }
        Ok(self)
    }

    /// Applies the patch to `memory` (no validation; see [`MemoryPatch::validated`]).
    pub fn apply_to(&self, memory: &mut Memory, now: DateTime<Utc>) {
        if let Some(content) = &self.content {
            memory.content.clone_from(content);
        }
        if let Some(summary) = &self.summary {
            memory.summary.clone_from(summary);
        }
        if let Some(memory_type) = self.memory_type {
            memory.memory_type = memory_type;
        }
        if let Some(importance) = self.importance {
            memory.importance = importance;
        }
        if let Some(namespace) = &self.namespace {
            memory.namespace = namespace.clone();
        }
        if let Some(tags) = &self.tags {
            memory.tags.clone_from(tags);
        }
        if let Some(archived) = self.archived {
            memory.archived = archived;
        }
        memory.updated_at = now;
    }
}

fn validate_content(content: &str, limits: &Limits) -> Result<(), Error> {
    if content.trim().is_empty() {
        return Err(Error::invalid("content is empty"));
    }
    if content.len() > limits.memory_content_bytes_max as usize {
        return Err(Error::invalid(format!(
            "content is {} bytes, over the limit of {} bytes (memory_content_bytes_max)",
            content.len(),
            limits.memory_content_bytes_max
        )));
    }
    Ok(())
}

fn validate_summary(summary: &str, limits: &Limits) -> Result<(), Error> {
    if summary.len() > limits.memory_summary_bytes_max as usize {
        return Err(Error::invalid(format!(
            "summary is {} bytes, over the limit of {} bytes (memory_summary_bytes_max)",
            summary.len(),
            limits.memory_summary_bytes_max
        )));
    }
    Ok(())
}

/// The current time at the precision stored (milliseconds), so what a write
/// returns equals what a later read returns.
pub fn timestamp_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Checks tag count, length and characters (no whitespace, no control characters, no commas).
pub fn validate_tags(tags: &[String], limits: &Limits) -> Result<(), Error> {
    if tags.len() > limits.memory_tags_max as usize {
        return Err(Error::invalid(format!(
            "a memory has at most {} tags (memory_tags_max), got {}",
            limits.memory_tags_max,
            tags.len()
        )));
    }
    for tag in tags {
        if tag.is_empty() || tag.len() > limits.tag_bytes_max as usize {
            return Err(Error::invalid(format!(
                "tag {tag:?} must be 1 to {} bytes (tag_bytes_max)",
                limits.tag_bytes_max
            )));
        }
        if tag
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        {
            return Err(Error::invalid(format!(
                "tag {tag:?} must not contain whitespace, control characters or commas"
            )));
        }
    }
    Ok(())
}

/// Tags as stored: trimmed, lower-case, sorted, unique.
pub fn normalise_tags(tags: Vec<String>) -> Vec<String> {
    let mut tags: Vec<String> = tags.into_iter().map(|t| t.trim().to_lowercase()).collect();
    tags.sort();
    tags.dedup();
    tags
}

fn dedup_links(mut links: Vec<Link>) -> Vec<Link> {
    let mut seen = std::collections::HashSet::new();
    links.retain(|link| seen.insert(link.clone()));
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_accepts_1_to_10_only() {
        assert!("0".parse::<Importance>().is_err());
        assert!("11".parse::<Importance>().is_err());
        assert!("x".parse::<Importance>().is_err());
        assert_eq!("1".parse::<Importance>().unwrap().get(), 1);
        assert_eq!("10".parse::<Importance>().unwrap().get(), 10);
        assert!(serde_json::from_str::<Importance>("11").is_err());
        assert_eq!(serde_json::from_str::<Importance>("7").unwrap().get(), 7);
    }

    #[test]
    fn content_limit_is_inclusive_and_names_itself() {
        let limits = Limits {
            memory_content_bytes_max: 10,
            ..Limits::default()
        };
        let now = Utc::now();
        assert!(
            NewMemory::new("0123456789")
                .into_memory(&limits, now)
                .is_ok()
        );
        let err = NewMemory::new("0123456789a")
            .into_memory(&limits, now)
            .unwrap_err();
        assert!(
            err.to_string().contains("memory_content_bytes_max"),
            "{err}"
        );
        let err = NewMemory::new("  \n")
            .into_memory(&limits, now)
            .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn tags_are_normalised_and_bounded() {
        let limits = Limits {
            memory_tags_max: 2,
            ..Limits::default()
        };
        let now = Utc::now();
        let mut new = NewMemory::new("x");
        new.tags = vec!["B".into(), "a".into(), "b".into()];
        assert_eq!(new.into_memory(&limits, now).unwrap().tags, ["a", "b"]);
        let mut new = NewMemory::new("x");
        new.tags = vec!["a".into(), "b".into(), "c".into()];
        assert!(
            new.into_memory(&limits, now)
                .unwrap_err()
                .to_string()
                .contains("memory_tags_max")
        );
        let mut new = NewMemory::new("x");
        new.tags = vec!["has space".into()];
        assert!(new.into_memory(&Limits::default(), now).is_err());
    }

    #[test]
    fn enums_round_trip_and_reject_unknown() {
        for t in MemoryType::ALL {
            assert_eq!(t.as_str().parse::<MemoryType>().unwrap(), *t);
        }
        for t in LinkType::ALL {
            assert_eq!(t.as_str().parse::<LinkType>().unwrap(), *t);
        }
        let err = "wisdom".parse::<MemoryType>().unwrap_err().to_string();
        assert!(
            err.contains("unknown memory type") && err.contains("decision"),
            "{err}"
        );
    }

    #[test]
    fn empty_patch_is_refused() {
        assert!(
            MemoryPatch::default()
                .validated(&Limits::default())
                .is_err()
        );
    }
}
