//! [`Gauge`]: one figure of a subsystem, as the tracker reads it, a
//! snapshot holds it and the monitor judges it.

use serde::{Deserialize, Serialize};

/// One figure, with the limit it must stay under when it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gauge {
    /// Prometheus-style name, `mnemosyne_` prefix included.
    pub name: String,
    /// What it counts.
    pub help: String,
    /// The value now.
    pub value: u64,
    /// The named limit it must not exceed, if any.
    pub max: Option<u64>,
    /// The structure fills up to `max` in normal work (a cache, a
    /// retention ring, a compaction trigger): being near it is no warning.
    #[serde(default)]
    pub full_by_design: bool,
}

impl Gauge {
    /// A gauge without a limit.
    pub fn new(name: impl Into<String>, help: impl Into<String>, value: u64) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            value,
            max: None,
            full_by_design: false,
        }
    }

    /// The same gauge, bounded by `max`.
    pub fn with_max(mut self, max: u64) -> Self {
        self.max = Some(max);
        self
    }

    /// The same gauge, bounded by `max`, which it reaches in normal work
    /// (the monitor raises an alert only past `max`, not near it).
    pub fn with_cap(mut self, max: u64) -> Self {
        self.max = Some(max);
        self.full_by_design = true;
        self
    }
}
