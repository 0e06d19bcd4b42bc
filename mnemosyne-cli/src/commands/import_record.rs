//! One line of an `import` file: what `export` writes, or a record from
//! another tool that carries only some of the fields.
//!
//! Only `content` is required. A record without `id` gets a new one (see
//! [`NewIds`]); without `namespace` it goes to `global`; without times it
//! was created when the import started, and `updated_at` and `accessed_at`
//! default to `created_at`. A field this format does not know is an error
//! naming it: ignoring it would drop what the other tool stored there.

use chrono::{DateTime, Utc};
use mnemosyne_core::{Importance, Link, Memory, MemoryId, MemoryType, Namespace};
use serde::Deserialize;
use uuid::Uuid;

/// A memory as an import file may give it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    #[serde(default)]
    id: Option<MemoryId>,
    #[serde(default)]
    namespace: Namespace,
    content: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    memory_type: MemoryType,
    #[serde(default)]
    importance: Importance,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    accessed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    access_count: u64,
    #[serde(default)]
    archived: bool,
}

impl ImportRecord {
    /// The memory of line `line`; `new_id` is true when its id was made here.
    pub fn into_memory(self, line: u64, ids: &NewIds) -> (Memory, bool) {
        let created_at = self.created_at.unwrap_or(ids.started);
        let updated_at = self.updated_at.unwrap_or(created_at);
        let made = self.id.is_none();
        let memory = Memory {
            id: self.id.unwrap_or_else(|| ids.for_line(line, created_at)),
            namespace: self.namespace,
            content: self.content,
            summary: self.summary,
            memory_type: self.memory_type,
            importance: self.importance,
            tags: self.tags,
            links: self.links,
            created_at,
            updated_at,
            accessed_at: self.accessed_at.unwrap_or(updated_at),
            access_count: self.access_count,
            archived: self.archived,
        };
        (memory, made)
    }
}

/// The fields the link pass needs; the rest of the line is ignored (the
/// first pass checked it).
#[derive(Debug, Deserialize)]
pub struct LinksOnly {
    #[serde(default)]
    id: Option<MemoryId>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl LinksOnly {
    /// The id of line `line`: its own, or the one the memory pass made.
    pub fn id(&self, line: u64, ids: &NewIds) -> MemoryId {
        self.id
            .unwrap_or_else(|| ids.for_line(line, self.created_at.unwrap_or(ids.started)))
    }
}

/// The ids of one import run for records without one: a UUIDv7 whose time
/// is the record's `created_at` (ids sort by creation time) and whose other
/// bits are a random number of this run and the line number. Each pass
/// makes the same id for the same line, so the passes need not remember the
/// ids they made; another run makes others.
#[derive(Debug)]
pub struct NewIds {
    /// When the import started: the creation time of records without one.
    pub started: DateTime<Utc>,
    run: [u8; 5],
}

impl NewIds {
    pub fn new(started: DateTime<Utc>) -> Self {
        let random = Uuid::new_v4().into_bytes();
        Self {
            started,
            run: [random[0], random[1], random[2], random[3], random[4]],
        }
    }

    pub fn for_line(&self, line: u64, created_at: DateTime<Utc>) -> MemoryId {
        let millis = u64::try_from(created_at.timestamp_millis()).unwrap_or(0);
        let mut bytes = [0u8; 10];
        bytes[..5].copy_from_slice(&self.run);
        // 40 bits of line number: a trillion lines.
        bytes[5..].copy_from_slice(&line.to_be_bytes()[3..]);
        MemoryId::from(uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_stable_per_line_and_run_and_distinct_otherwise() {
        let started = Utc::now();
        let ids = NewIds::new(started);
        assert_eq!(ids.for_line(7, started), ids.for_line(7, started));
        assert_ne!(ids.for_line(7, started), ids.for_line(8, started));
        assert_ne!(
            ids.for_line(7, started),
            NewIds::new(started).for_line(7, started)
        );
        let uuid = ids.for_line(7, started).as_uuid();
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, _) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, started.timestamp().unsigned_abs());
    }
}
