//! The bounded event bus: a `tokio::sync::broadcast` channel of
//! `events_capacity` events. A subscriber that falls more than that many
//! events behind skips ahead to the oldest event still held and is told how
//! many it missed; the server never buffers more than the capacity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mnemosyne_core::{LinkType, MemoryId, Namespace, Phase, WorkItemId, WorkState};
use serde::Serialize;
use tokio::sync::broadcast;

/// Something that happened, as subscribers see it. Events carry ids, not
/// content, so the bus's memory is bounded by its capacity times a small size.
///
/// `#[non_exhaustive]`: the work queue and the documents add their variants.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A memory was stored.
    Remembered {
        /// Its id.
        id: MemoryId,
        /// Its namespace.
        namespace: Namespace,
    },
    /// A memory was changed (restoring an archived one included).
    Updated {
        /// Its id.
        id: MemoryId,
        /// Its namespace after the change.
        namespace: Namespace,
    },
    /// A memory was archived, or deleted (`hard`).
    Forgotten {
        /// Its id.
        id: MemoryId,
        /// Deleted with its links rather than archived.
        hard: bool,
    },
    /// A link was added.
    Linked {
        /// The memory the link starts from.
        source: MemoryId,
        /// The memory it points to.
        target: MemoryId,
        /// The relation.
        link_type: LinkType,
    },
    /// A work item changed state or phase (submitted, claimed, completed...).
    WorkChanged {
        /// The item.
        id: WorkItemId,
        /// Its state now.
        state: WorkState,
        /// Its phase now.
        phase: Phase,
    },
    /// A context document was created or changed.
    DocumentChanged {
        /// The document.
        name: String,
        /// Its epoch now.
        epoch: u64,
        /// Its revision now.
        revision: u64,
        /// Who changed it.
        actor: String,
    },
    /// The resource monitor raised an alert (a limit is close or crossed).
    Alert {
        /// `warn` or `critical`.
        level: String,
        /// What crossed a threshold.
        what: String,
        /// One line for people.
        message: String,
    },
    /// The server is alive: sent every `heartbeat_interval_s`.
    Heartbeat {
        /// Heartbeats sent before this one.
        seq: u64,
        /// Background tasks alive when it was sent.
        tasks_alive: usize,
    },
}

impl Event {
    /// The event's name: the SSE `event:` field and the JSON `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Remembered { .. } => "remembered",
            Self::Updated { .. } => "updated",
            Self::Forgotten { .. } => "forgotten",
            Self::Linked { .. } => "linked",
            Self::WorkChanged { .. } => "work_changed",
            Self::DocumentChanged { .. } => "document_changed",
            Self::Alert { .. } => "alert",
            Self::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// Counters of the bus, shared by its clones.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    lagged: AtomicU64,
}

/// The bounded broadcast of [`Event`]s. Cheap to clone; clones share the channel.
#[derive(Clone, Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    counters: Arc<Counters>,
    capacity: usize,
}

impl EventBus {
    /// A bus holding at most `capacity` events (`events_capacity`; at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Self {
            sender,
            counters: Arc::default(),
            capacity,
        }
    }

    /// Sends `event` to every subscriber; with none, it is dropped.
    pub fn publish(&self, event: Event) {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        // An error only means nobody listens.
        let _ = self.sender.send(event);
    }

    /// A new subscriber: it sees events published from now on.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            receiver: self.sender.subscribe(),
            counters: Arc::clone(&self.counters),
        }
    }

    /// Subscribers alive.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Events published since the bus was made.
    pub fn published_total(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Events that subscribers missed by falling behind, summed over subscribers.
    pub fn lagged_total(&self) -> u64 {
        self.counters.lagged.load(Ordering::Relaxed)
    }

    /// The capacity (`events_capacity`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// What a subscriber receives next.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// The next event.
    Event(Event),
    /// The subscriber fell behind and skipped this many events.
    Lagged(u64),
}

/// One subscription to the [`EventBus`].
#[derive(Debug)]
pub struct Subscriber {
    receiver: broadcast::Receiver<Event>,
    counters: Arc<Counters>,
}

impl Subscriber {
    /// The next event, or how many were missed; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.counters.lagged.fetch_add(missed, Ordering::Relaxed);
                Some(Received::Lagged(missed))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(seq: u64) -> Event {
        Event::Heartbeat {
            seq,
            tasks_alive: 0,
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_skips_ahead_and_is_told_how_many_it_missed() {
        let bus = EventBus::new(4);
        let mut slow = bus.subscribe();
        for seq in 0..10 {
            bus.publish(heartbeat(seq));
        }
        assert_eq!(slow.recv().await, Some(Received::Lagged(6)));
        for seq in 6..10 {
            assert_eq!(slow.recv().await, Some(Received::Event(heartbeat(seq))));
        }
        assert_eq!(bus.lagged_total(), 6);
        assert_eq!(bus.published_total(), 10);
        assert_eq!(bus.subscribers(), 1);
        drop(slow);
        assert_eq!(bus.subscribers(), 0);
    }

    #[test]
    fn events_serialise_with_their_name_as_type() {
        let event = Event::Forgotten {
            id: MemoryId::new(),
            hard: true,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.name());
        assert_eq!(json["hard"], true);
    }
}
