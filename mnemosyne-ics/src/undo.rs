//! Bounded undo and redo: per actor, a stack of inverse splices (never a
//! snapshot of the text), capped in depth (`crdt_undo_depth`), in actors
//! (`crdt_actors_max`) and in bytes of text (`crdt_undo_bytes_max`).

use std::collections::VecDeque;

use mnemosyne_core::{Limits, UndoChange, UndoRow};
use serde::{Deserialize, Serialize};

use crate::Splice;
use crate::diff::apply_to_string;

/// Bytes counted for a splice besides its texts.
const SPLICE_OVERHEAD_BYTES: usize = 24;

/// One undoable step: splices to apply in order, and for each the text it
/// expects to delete (what the undone edit inserted there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Order among every step of the document (oldest is dropped first);
    /// stored as the row's key, not in its JSON.
    #[serde(skip)]
    pub seq: u64,
    /// The splices.
    pub splices: Vec<Splice>,
    /// The text each splice deletes, checked before anything is applied.
    pub expect: Vec<String>,
}

impl Step {
    /// The step that undoes `applied`, given the inverse splices the CRDT
    /// returned for it (in the order to apply them).
    pub fn undoing(seq: u64, applied: &[Splice], inverse: Vec<Splice>) -> Self {
        let expect = applied.iter().rev().map(|s| s.insert.clone()).collect();
        Self {
            seq,
            splices: inverse,
            expect,
        }
    }

    /// Bytes of text this step holds.
    pub fn bytes(&self) -> usize {
        self.splices
            .iter()
            .zip(&self.expect)
            .map(|(s, e)| s.insert.len() + e.len() + SPLICE_OVERHEAD_BYTES)
            .sum()
    }

    /// The text after this step, or why it no longer applies to `text`.
    pub fn check(&self, text: &str) -> Result<String, String> {
        let mut current = text.to_owned();
        for (splice, expect) in self.splices.iter().zip(&self.expect) {
            let found: String = current
                .chars()
                .skip(splice.pos)
                .take(splice.delete)
                .collect();
            if &found != expect {
                return Err(format!(
                    "the text at character {} was changed since (expected {expect:?}, found {found:?})",
                    splice.pos
                ));
            }
            current = apply_to_string(&current, std::slice::from_ref(splice))
                .ok_or("the text is now shorter than the step")?;
        }
        Ok(current)
    }
}

/// The undo and redo stacks of one actor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSteps {
    /// The agent.
    pub actor: String,
    /// Sequence number of its latest step (least recent actors go first).
    pub last_seq: u64,
    /// Undo steps, oldest first.
    pub undo: VecDeque<Step>,
    /// Redo steps, oldest first.
    pub redo: VecDeque<Step>,
}

/// The undo state of one document. Stored as one row per step; the
/// changes since the last save are journaled so a save writes only them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UndoState {
    /// Last step sequence number handed out.
    pub next_seq: u64,
    /// One entry per actor with steps.
    pub actors: Vec<ActorSteps>,
    journal: Vec<UndoChange>,
}

/// The small JSON state stored beside a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateJson {
    /// Last step sequence number handed out.
    pub next_seq: u64,
}

/// Which stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// Undo.
    Undo,
    /// Redo.
    Redo,
}

impl UndoState {
    /// The state stored as `state` (JSON) and `rows`.
    pub fn from_stored(state: &str, rows: &[UndoRow]) -> Result<Self, String> {
        let json: StateJson = serde_json::from_str(state).map_err(|e| format!("state: {e}"))?;
        let mut out = Self {
            next_seq: json.next_seq,
            ..Self::default()
        };
        for row in rows {
            let mut step: Step = serde_json::from_str(&row.step)
                .map_err(|e| format!("undo step {}: {e}", row.seq))?;
            if step.splices.len() != step.expect.len() {
                return Err(format!("undo step {}: splices and texts differ", row.seq));
            }
            step.seq = row.seq;
            out.next_seq = out.next_seq.max(row.seq);
            let entry = match out.actors.iter().position(|a| a.actor == row.actor) {
                Some(i) => &mut out.actors[i],
                None => {
                    out.actors.push(ActorSteps {
                        actor: row.actor.clone(),
                        ..ActorSteps::default()
                    });
                    out.actors.last_mut().expect("just pushed")
                }
            };
            entry.last_seq = entry.last_seq.max(row.seq);
            if row.redo {
                entry.redo.push_back(step);
            } else {
                entry.undo.push_back(step);
            }
        }
        Ok(out)
    }

    /// The JSON stored as the document's `state`.
    pub fn state_json(&self) -> String {
        serde_json::to_string(&StateJson {
            next_seq: self.next_seq,
        })
        .expect("a struct of integers always encodes")
    }

    /// The changes to the stored rows since the last call.
    pub fn take_journal(&mut self) -> Vec<UndoChange> {
        std::mem::take(&mut self.journal)
    }

    fn journal_insert(journal: &mut Vec<UndoChange>, actor: &str, redo: bool, step: &Step) {
        journal.push(UndoChange::Insert(UndoRow {
            seq: step.seq,
            actor: actor.to_owned(),
            redo,
            step: serde_json::to_string(step).expect("splices and strings always encode"),
        }));
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn actor_mut(&mut self, actor: &str, limits: &Limits) -> &mut ActorSteps {
        if let Some(i) = self.actors.iter().position(|a| a.actor == actor) {
            return &mut self.actors[i];
        }
        // Make room: the least recently active actor loses its history.
        while self.actors.len() >= limits.crdt_actors_max as usize {
            let oldest = self
                .actors
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| a.last_seq)
                .map(|(i, _)| i)
                .expect("at least one actor when at the cap");
            let gone = self.actors.remove(oldest);
            for step in gone.undo.iter().chain(&gone.redo) {
                self.journal.push(UndoChange::Delete(step.seq));
            }
        }
        self.actors.push(ActorSteps {
            actor: actor.to_owned(),
            ..ActorSteps::default()
        });
        self.actors.last_mut().expect("just pushed")
    }

    /// Records a new edit by `actor`: its undo step is pushed, its redo
    /// stack cleared, and every cap enforced.
    pub fn record_edit(
        &mut self,
        actor: &str,
        applied: &[Splice],
        inverse: Vec<Splice>,
        limits: &Limits,
    ) {
        let seq = self.seq();
        let step = Step::undoing(seq, applied, inverse);
        Self::journal_insert(&mut self.journal, actor, false, &step);
        let entry = self.actor_mut(actor, limits);
        let cleared: Vec<u64> = entry.redo.drain(..).map(|s| s.seq).collect();
        entry.last_seq = seq;
        entry.undo.push_back(step);
        self.journal
            .extend(cleared.into_iter().map(UndoChange::Delete));
        self.enforce(limits);
    }

    /// Pushes `step` (renumbered) on `actor`'s `stack` and enforces the caps.
    pub fn push(&mut self, actor: &str, stack: Stack, mut step: Step, limits: &Limits) {
        step.seq = self.seq();
        let seq = step.seq;
        Self::journal_insert(&mut self.journal, actor, stack == Stack::Redo, &step);
        let entry = self.actor_mut(actor, limits);
        entry.last_seq = seq;
        match stack {
            Stack::Undo => entry.undo.push_back(step),
            Stack::Redo => entry.redo.push_back(step),
        }
        self.enforce(limits);
    }

    /// The newest step of `actor`'s `stack`, left in place.
    pub fn peek(&self, actor: &str, stack: Stack) -> Option<&Step> {
        let entry = self.actors.iter().find(|a| a.actor == actor)?;
        match stack {
            Stack::Undo => entry.undo.back(),
            Stack::Redo => entry.redo.back(),
        }
    }

    /// Removes the newest step of `actor`'s `stack`.
    pub fn pop(&mut self, actor: &str, stack: Stack) -> Option<Step> {
        let entry = self.actors.iter_mut().find(|a| a.actor == actor)?;
        let step = match stack {
            Stack::Undo => entry.undo.pop_back(),
            Stack::Redo => entry.redo.pop_back(),
        }?;
        self.journal.push(UndoChange::Delete(step.seq));
        Some(step)
    }

    /// `(undo, redo)` depths of `actor`.
    pub fn depths(&self, actor: &str) -> (usize, usize) {
        self.actors
            .iter()
            .find(|a| a.actor == actor)
            .map_or((0, 0), |a| (a.undo.len(), a.redo.len()))
    }

    /// Bytes of text held by every step.
    pub fn bytes(&self) -> usize {
        self.actors
            .iter()
            .flat_map(|a| a.undo.iter().chain(&a.redo))
            .map(Step::bytes)
            .sum()
    }

    fn enforce(&mut self, limits: &Limits) {
        let depth = limits.crdt_undo_depth as usize;
        for entry in &mut self.actors {
            for stack in [&mut entry.undo, &mut entry.redo] {
                while stack.len() > depth {
                    if let Some(step) = stack.pop_front() {
                        self.journal.push(UndoChange::Delete(step.seq));
                    }
                }
            }
        }
        let max = usize::try_from(limits.crdt_undo_bytes_max).unwrap_or(usize::MAX);
        let mut total = self.bytes();
        while total > max {
            // Drop the oldest step of any actor, undo or redo.
            let journal = &mut self.journal;
            let oldest = self
                .actors
                .iter_mut()
                .flat_map(|a| [&mut a.undo, &mut a.redo])
                .filter(|stack| !stack.is_empty())
                .min_by_key(|stack| stack.front().map_or(u64::MAX, |s| s.seq));
            let Some(stack) = oldest else { break };
            if let Some(step) = stack.pop_front() {
                total -= step.bytes();
                journal.push(UndoChange::Delete(step.seq));
            }
        }
        self.actors
            .retain(|a| !a.undo.is_empty() || !a.redo.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn insert(pos: usize, text: &str) -> (Vec<Splice>, Vec<Splice>) {
        let applied = vec![Splice {
            pos,
            delete: 0,
            insert: text.into(),
        }];
        let inverse = vec![Splice {
            pos,
            delete: text.chars().count(),
            insert: String::new(),
        }];
        (applied, inverse)
    }

    #[test]
    fn a_step_checks_the_text_it_removes() {
        let (applied, inverse) = insert(2, "XY");
        let step = Step::undoing(1, &applied, inverse);
        assert_eq!(step.check("abXYcd").unwrap(), "abcd");
        let err = step.check("abXZcd").unwrap_err();
        assert!(err.contains("changed since"), "{err}");
        assert!(step.check("a").is_err());
    }

    #[test]
    fn the_least_recent_actor_is_dropped_at_the_actor_cap() {
        let limits = Limits {
            crdt_actors_max: 2,
            ..Limits::default()
        };
        let mut state = UndoState::default();
        for actor in ["a", "b", "a", "c"] {
            let (applied, inverse) = insert(0, "x");
            state.record_edit(actor, &applied, inverse, &limits);
        }
        let actors: Vec<&str> = state.actors.iter().map(|a| a.actor.as_str()).collect();
        assert_eq!(actors, ["a", "c"]);
    }

    #[test]
    fn the_byte_cap_drops_the_oldest_steps() {
        let limits = Limits {
            crdt_undo_bytes_max: 200,
            ..Limits::default()
        };
        let mut state = UndoState::default();
        for i in 0..10 {
            let (applied, inverse) = insert(i, &"z".repeat(30));
            state.record_edit(
                if i % 2 == 0 { "a" } else { "b" },
                &applied,
                inverse,
                &limits,
            );
            assert!(state.bytes() <= 200, "{}", state.bytes());
        }
        // The newest step survives.
        assert_eq!(state.peek("b", Stack::Undo).unwrap().splices[0].pos, 9);
    }

    proptest! {
        #[test]
        fn undo_depth_never_exceeds_its_cap(
            depth in 0u32..6,
            ops in proptest::collection::vec((0usize..3, 0u8..3), 0..80),
        ) {
            let limits = Limits { crdt_undo_depth: depth, ..Limits::default() };
            let mut state = UndoState::default();
            // What the database holds: the journal replayed after each save.
            let mut rows = std::collections::BTreeMap::new();
            let actors = ["a", "b", "c"];
            for (actor, kind) in ops {
                let actor = actors[actor];
                match kind {
                    0 => {
                        let (applied, inverse) = insert(0, "q");
                        state.record_edit(actor, &applied, inverse, &limits);
                    }
                    1 => if let Some(step) = state.pop(actor, Stack::Undo) {
                        state.push(actor, Stack::Redo, step, &limits);
                    },
                    _ => if let Some(step) = state.pop(actor, Stack::Redo) {
                        state.push(actor, Stack::Undo, step, &limits);
                    },
                }
                for entry in &state.actors {
                    prop_assert!(entry.undo.len() <= depth as usize);
                    prop_assert!(entry.redo.len() <= depth as usize);
                }
                for change in state.take_journal() {
                    match change {
                        UndoChange::Insert(row) => { rows.insert(row.seq, row); }
                        UndoChange::Delete(seq) => { prop_assert!(rows.remove(&seq).is_some()); }
                    }
                }
            }
            let rows: Vec<UndoRow> = rows.into_values().collect();
            let reloaded = UndoState::from_stored(&state.state_json(), &rows).unwrap();
            for actor in actors {
                let seqs = |s: &UndoState, stack| -> Vec<u64> {
                    s.actors.iter().filter(|a| a.actor == actor).flat_map(|a| match stack {
                        Stack::Undo => a.undo.iter().map(|s| s.seq).collect::<Vec<_>>(),
                        Stack::Redo => a.redo.iter().map(|s| s.seq).collect(),
                    }).collect()
                };
                prop_assert_eq!(seqs(&reloaded, Stack::Undo), seqs(&state, Stack::Undo));
                prop_assert_eq!(seqs(&reloaded, Stack::Redo), seqs(&state, Stack::Redo));
            }
        }
    }
}
