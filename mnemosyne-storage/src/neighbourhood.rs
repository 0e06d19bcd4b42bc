//! `MemoryStore::context`: one memory with its linked neighbourhood.
//!
//! Breadth-first over links in both directions, from the asked-for memory:
//! at most `hops` hops (`context_hops_max`), the `fan_out` most important
//! neighbours of each memory reached (`context_fan_out_max`; memories
//! reached before count among them, so their links are reported too), and
//! at most `limit` memories in all (`context_memories_max`, the asked-for
//! one included). A memory is reached once, so cycles end. Each link
//! followed is reported once, typed and directed, with the memory it was
//! followed from. Archived memories are left out unless asked for, as in
//! recall; the asked-for memory is read like `get` (archived or not, and
//! the read counts as an access). Like `get`, ids cross namespaces.

use std::collections::{HashMap, HashSet};

use mnemosyne_core::{Error, LinkType, Memory, MemoryId, Result};
use serde::{Deserialize, Serialize};

use crate::store::MemoryStore;

/// Which way a link runs, seen from the memory it was followed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkDirection {
    /// The link starts at the memory it was followed from.
    Outgoing,
    /// The link points to the memory it was followed from.
    Incoming,
}

/// A context request: a memory and how far around it to look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextQuery {
    /// The memory at the centre.
    pub id: MemoryId,
    /// Hops to follow, 0 to `context_hops_max` (`None`: that maximum).
    pub hops: Option<u32>,
    /// Neighbours followed from each memory, 1 to `context_fan_out_max`
    /// (`None`: that maximum).
    pub fan_out: Option<u32>,
    /// Memories in the answer, the centre included, 1 to
    /// `context_memories_max` (`None`: that maximum).
    pub limit: Option<u32>,
    /// Follow links to archived memories too.
    pub include_archived: bool,
}

impl ContextQuery {
    /// The neighbourhood of `id` with every bound at its maximum.
    pub fn new(id: MemoryId) -> Self {
        Self {
            id,
            hops: None,
            fan_out: None,
            limit: None,
            include_archived: false,
        }
    }
}

/// A memory of the neighbourhood other than the centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The memory.
    pub memory: Memory,
    /// Hops from the centre (1 for a memory linked to it).
    pub hop: u32,
    /// The memory it was first reached from.
    pub via: MemoryId,
}

/// One link followed: typed, directed, and seen from the memory it was
/// followed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEdge {
    /// Where the link starts.
    pub source: MemoryId,
    /// Where it points.
    pub target: MemoryId,
    /// The relation.
    pub link_type: LinkType,
    /// The memory it was followed from (its source or its target).
    pub from: MemoryId,
    /// `outgoing` when `from` is the source, `incoming` when it is the target.
    pub direction: LinkDirection,
    /// The hop it was followed at (1: from the centre).
    pub hop: u32,
}

/// The answer to a context request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbourhood {
    /// The memory asked for, whole.
    pub memory: Memory,
    /// The memories reached, nearest first, in the order they were reached
    /// (from each memory, its most important neighbours first).
    pub neighbours: Vec<Neighbour>,
    /// Every link followed between two memories of the answer, once.
    pub edges: Vec<ContextEdge>,
    /// The hops that applied.
    pub hops: u32,
    /// The fan-out that applied.
    pub fan_out: u32,
    /// The most memories the answer could hold, the centre included.
    pub limit: u32,
    /// True when a memory had more neighbours than `fan_out`, or a memory
    /// was reached past `limit`: there is more within `hops`.
    pub truncated: bool,
}

/// The bounds of one request, checked against the limits.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    hops: u32,
    fan_out: u32,
    limit: u32,
}

fn bounded(value: Option<u32>, min: u32, max: u32, what: &str, limit: &str) -> Result<u32> {
    let value = value.unwrap_or(max);
    if value < min || value > max {
        return Err(Error::invalid(format!(
            "{what} must be between {min} and {max} ({limit}), got {value}"
        )));
    }
    Ok(value)
}

impl MemoryStore {
    /// The memory `query.id` with its linked neighbourhood (see the module
    /// documentation). An unknown id is [`Error::NotFound`]; a bound over
    /// its limit is refused, never cut.
    pub async fn context(&self, query: ContextQuery) -> Result<Neighbourhood> {
        let limits = self.limits();
        let bounds = Bounds {
            hops: bounded(
                query.hops,
                0,
                limits.context_hops_max,
                "hops",
                "context_hops_max",
            )?,
            fan_out: bounded(
                query.fan_out,
                1,
                limits.context_fan_out_max,
                "fan_out",
                "context_fan_out_max",
            )?,
            limit: bounded(
                query.limit,
                1,
                limits.context_memories_max,
                "limit",
                "context_memories_max",
            )?,
        };
        let centre = self.get(query.id).await?;
        let mut walk = Walk::new(&centre, bounds);
        let mut frontier = vec![centre.clone()];
        for hop in 1..=bounds.hops {
            if frontier.is_empty() {
                break;
            }
            let ids: Vec<MemoryId> = frontier.iter().map(|m| m.id).collect();
            // One more than the fan-out tells whether a memory has more.
            let linked = self
                .storage()
                .linked_memories(&ids, bounds.fan_out + 1, query.include_archived)
                .await?;
            let mut by_origin: HashMap<MemoryId, Vec<Memory>> = HashMap::new();
            for link in linked {
                by_origin.entry(link.from).or_default().push(link.memory);
            }
            let mut next = Vec::new();
            for origin in &frontier {
                let reached = by_origin.remove(&origin.id).unwrap_or_default();
                next.extend(walk.follow(origin, reached, hop));
            }
            frontier = next;
        }
        Ok(walk.into_neighbourhood(centre))
    }
}

/// The state of one breadth-first walk: what was reached and reported.
struct Walk {
    bounds: Bounds,
    reached: HashSet<MemoryId>,
    edges_seen: HashSet<(MemoryId, MemoryId, LinkType)>,
    neighbours: Vec<Neighbour>,
    edges: Vec<ContextEdge>,
    truncated: bool,
}

impl Walk {
    fn new(centre: &Memory, bounds: Bounds) -> Self {
        Self {
            bounds,
            reached: HashSet::from([centre.id]),
            edges_seen: HashSet::new(),
            neighbours: Vec::new(),
            edges: Vec::new(),
            truncated: false,
        }
    }

    /// Follows the links from `origin` to `linked` (its neighbours, most
    /// important first, one more than the fan-out when it has more) at
    /// `hop`; returns the memories reached for the first time.
    fn follow(&mut self, origin: &Memory, mut linked: Vec<Memory>, hop: u32) -> Vec<Memory> {
        if linked.len() > self.bounds.fan_out as usize {
            linked.truncate(self.bounds.fan_out as usize);
            self.truncated = true;
        }
        let mut new = Vec::new();
        for other in linked {
            if !self.reached.contains(&other.id) {
                if self.reached.len() >= self.bounds.limit as usize {
                    self.truncated = true;
                    continue;
                }
                self.reached.insert(other.id);
                new.push(other.clone());
                self.neighbours.push(Neighbour {
                    memory: other.clone(),
                    hop,
                    via: origin.id,
                });
            }
            self.add_edges(origin, &other, hop);
        }
        new
    }

    /// The links between `origin` and `other`, each reported once.
    fn add_edges(&mut self, origin: &Memory, other: &Memory, hop: u32) {
        let outgoing = origin
            .links
            .iter()
            .filter(|link| link.target == other.id)
            .map(|link| (origin.id, other.id, link.link_type, LinkDirection::Outgoing));
        let incoming = other
            .links
            .iter()
            .filter(|link| link.target == origin.id)
            .map(|link| (other.id, origin.id, link.link_type, LinkDirection::Incoming));
        for (source, target, link_type, direction) in outgoing.chain(incoming) {
            if self.edges_seen.insert((source, target, link_type)) {
                self.edges.push(ContextEdge {
                    source,
                    target,
                    link_type,
                    from: origin.id,
                    direction,
                    hop,
                });
            }
        }
    }

    fn into_neighbourhood(self, memory: Memory) -> Neighbourhood {
        Neighbourhood {
            memory,
            neighbours: self.neighbours,
            edges: self.edges,
            hops: self.bounds.hops,
            fan_out: self.bounds.fan_out,
            limit: self.bounds.limit,
            truncated: self.truncated,
        }
    }
}
