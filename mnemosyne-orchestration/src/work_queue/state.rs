//! The queue's rules on its in-memory state: synchronous and free of I/O, so
//! every rule is testable without a runtime or a database.
//!
//! Every transition validates everything first and mutates only when it
//! cannot fail any more, so an error leaves the state untouched. A
//! transition returns the snapshots of the items it changed; the caller
//! persists them (in order) before it acknowledges.
//!
//! Indexes, each bounded by the active items (`work_items_max`), except the
//! finished set (`work_completed_retained_max`):
//! - `ready`: pending items whose dependencies are all done, ordered by
//!   priority then id (UUIDv7, so oldest first): claim is a `pop_first`, O(log n);
//! - `waiting_on`: active dependency → the pending items waiting for it;
//! - `leases`: claimed items by lease deadline: the reaper reads the first.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mnemosyne_core::{Error, Limits, Phase, Requirement, Result, WorkItem, WorkItemId, WorkState};
use tokio::time::Instant;

use super::gauges::WorkQueueGauges;
use super::requests::{Completion, NewWorkItem, Review};

/// The limits the rules use, copied out of [`Limits`].
#[derive(Clone, Debug)]
pub(crate) struct QueueRules {
    pub items_max: u32,
    pub retained_max: u32,
    pub attempts_max: u32,
    pub lease: Duration,
    pub text_bytes_max: u32,
    pub entries_max: u32,
}

impl QueueRules {
    pub fn from_limits(limits: &Limits) -> Self {
        Self {
            items_max: limits.work_items_max,
            retained_max: limits.work_completed_retained_max,
            attempts_max: limits.work_attempts_max,
            lease: Duration::from_secs(limits.work_lease_s),
            text_bytes_max: limits.work_text_bytes_max,
            entries_max: limits.work_item_entries_max,
        }
    }

    fn check_text(&self, what: &str, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            return Err(Error::invalid(format!("{what} is empty")));
        }
        if text.len() > self.text_bytes_max as usize {
            return Err(Error::invalid(format!(
                "{what} is {} bytes, over work_text_bytes_max ({})",
                text.len(),
                self.text_bytes_max
            )));
        }
        Ok(())
    }

    fn check_entries(&self, what: &str, count: usize) -> Result<()> {
        if count > self.entries_max as usize {
            return Err(Error::invalid(format!(
                "{count} {what}, over work_item_entries_max ({})",
                self.entries_max
            )));
        }
        Ok(())
    }

    /// Agent names are short labels: non-empty, no control characters.
    pub fn check_agent(&self, agent: &str) -> Result<()> {
        self.check_text("agent name", agent)?;
        if agent.chars().any(char::is_control) {
            return Err(Error::invalid("agent name holds a control character"));
        }
        Ok(())
    }
}

/// What is known of ids that are neither active nor retained: looked up in
/// storage, `None` when storage does not know the id either.
pub(crate) type LookedUp = HashMap<WorkItemId, Option<WorkState>>;

/// Result of [`QueueState::submit`].
#[derive(Debug)]
pub(crate) enum Submit {
    /// Accepted: the new items, in the order given.
    Accepted(Vec<WorkItem>),
    /// These ids must be looked up in storage first; nothing changed.
    LookUp(Vec<WorkItemId>),
}

#[derive(Debug)]
struct Active {
    item: WorkItem,
    /// Dependencies not done yet.
    unmet: usize,
    lease_deadline: Option<Instant>,
}

type ReadyKey = (Reverse<i32>, WorkItemId);

fn ready_key(item: &WorkItem) -> ReadyKey {
    (Reverse(item.priority), item.id)
}

/// Active items and their indexes, plus the recently finished items.
#[derive(Debug)]
pub(crate) struct QueueState {
    rules: QueueRules,
    active: HashMap<WorkItemId, Active>,
    ready: BTreeSet<ReadyKey>,
    waiting_on: HashMap<WorkItemId, HashSet<WorkItemId>>,
    leases: BTreeSet<(Instant, WorkItemId)>,
    finished: HashMap<WorkItemId, WorkState>,
    finished_order: VecDeque<WorkItemId>,
}

impl QueueState {
    pub fn new(rules: QueueRules) -> Self {
        Self {
            rules,
            active: HashMap::new(),
            ready: BTreeSet::new(),
            waiting_on: HashMap::new(),
            leases: BTreeSet::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
        }
    }

    pub fn rules(&self) -> &QueueRules {
        &self.rules
    }

    /// Rebuilds the state from the active items in storage. `dependency_states`
    /// holds the stored state of every dependency that is not itself active.
    /// Items that can never become ready (a dependency failed, was cancelled
    /// or is missing) fail now; their snapshots are returned to be persisted.
    /// Claims keep their remaining lease.
    pub fn load(
        rules: QueueRules,
        items: Vec<WorkItem>,
        dependency_states: &HashMap<WorkItemId, WorkState>,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> (Self, Vec<WorkItem>) {
        let mut state = Self::new(rules);
        for item in items {
            let lease_deadline = (item.state == WorkState::Claimed).then(|| {
                let left_ms = item
                    .lease_expires_at
                    .map_or(0, |at| (at - now).num_milliseconds().max(0));
                now_instant + Duration::from_millis(left_ms.unsigned_abs())
            });
            state.active.insert(
                item.id,
                Active {
                    item,
                    unmet: 0,
                    lease_deadline,
                },
            );
        }
        let mut doomed: Vec<(WorkItemId, String)> = Vec::new();
        let ids: Vec<WorkItemId> = state.active.keys().copied().collect();
        for id in ids {
            let dependencies = state.active[&id].item.dependencies.clone();
            let mut unmet = 0;
            for dependency in dependencies {
                if state.active.contains_key(&dependency) {
                    unmet += 1;
                    state.waiting_on.entry(dependency).or_default().insert(id);
                    continue;
                }
                match dependency_states.get(&dependency) {
                    Some(WorkState::Done) => {}
                    Some(other) => {
                        doomed.push((id, format!("dependency {dependency} is {other}")));
                    }
                    None => doomed.push((id, format!("dependency {dependency} is missing"))),
                }
            }
            let entry = state.active.get_mut(&id).expect("loaded above");
            entry.unmet = unmet;
            match entry.lease_deadline {
                Some(deadline) => {
                    state.leases.insert((deadline, id));
                }
                None if unmet == 0 => {
                    state.ready.insert(ready_key(&entry.item));
                }
                None => {}
            }
        }
        let mut changed = Vec::new();
        for (id, reason) in doomed {
            if state.active.contains_key(&id) {
                state.finish(id, WorkState::Failed, Some(reason), now, &mut changed);
            }
        }
        (state, changed)
    }

    /// The ids among `new`'s dependencies and chosen ids that only storage
    /// can tell about.
    pub fn unresolved(&self, new: &[NewWorkItem], looked_up: &LookedUp) -> Vec<WorkItemId> {
        let in_batch: HashSet<WorkItemId> = new.iter().filter_map(|n| n.id).collect();
        let mut ids: Vec<WorkItemId> = new
            .iter()
            .flat_map(|n| n.dependencies.iter().chain(n.id.iter()))
            .copied()
            .filter(|id| {
                !self.active.contains_key(id)
                    && !self.finished.contains_key(id)
                    && !looked_up.contains_key(id)
                    && !in_batch.contains(id)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Adds `new` as pending items, all or none.
    pub fn submit(
        &mut self,
        new: Vec<NewWorkItem>,
        looked_up: &LookedUp,
        now: DateTime<Utc>,
    ) -> Result<Submit> {
        if new.is_empty() {
            return Err(Error::invalid("nothing to submit"));
        }
        for item in &new {
            self.validate_new(item)?;
        }
        let ids: Vec<WorkItemId> = new
            .iter()
            .map(|n| n.id.unwrap_or_else(WorkItemId::new))
            .collect();
        let mut in_batch: HashSet<WorkItemId> = HashSet::with_capacity(ids.len());
        for id in &ids {
            if !in_batch.insert(*id) {
                return Err(Error::invalid(format!(
                    "work item {id} is given twice in one submission"
                )));
            }
        }

        // Resolve every id against memory, then against what storage said.
        let mut look_up = Vec::new();
        for (item, id) in new.iter().zip(&ids) {
            if item.id.is_some() {
                if self.active.contains_key(id) || self.finished.contains_key(id) {
                    return Err(Error::invalid(format!("work item {id} already exists")));
                }
                match looked_up.get(id) {
                    Some(None) => {}
                    Some(Some(_)) => {
                        return Err(Error::invalid(format!("work item {id} already exists")));
                    }
                    None => look_up.push(*id),
                }
            }
            for dependency in &item.dependencies {
                if in_batch.contains(dependency) || self.active.contains_key(dependency) {
                    continue;
                }
                let state = match self.finished.get(dependency) {
                    Some(state) => Some(*state),
                    None => match looked_up.get(dependency) {
                        Some(Some(state)) if !state.is_active() => Some(*state),
                        // Active in storage but not here: its newest change
                        // is still being written; look again.
                        Some(Some(_)) | None => {
                            look_up.push(*dependency);
                            continue;
                        }
                        Some(None) => {
                            return Err(Error::invalid(format!(
                                "unknown dependency {dependency} of work item {id} \
                                 (never submitted, or finished and pruned past \
                                 work_finished_stored_max)"
                            )));
                        }
                    },
                };
                match state {
                    Some(WorkState::Done) | None => {}
                    Some(other) => {
                        return Err(Error::invalid(format!(
                            "dependency {dependency} of work item {id} is {other}: it can never be done"
                        )));
                    }
                }
            }
        }
        if !look_up.is_empty() {
            look_up.sort_unstable();
            look_up.dedup();
            return Ok(Submit::LookUp(look_up));
        }
        check_acyclic(&new, &ids, &in_batch)?;
        if self.active.len() + new.len() > self.rules.items_max as usize {
            return Err(Error::WorkQueueFull {
                capacity: self.rules.items_max,
            });
        }

        // Nothing can fail from here on.
        let mut created = Vec::with_capacity(new.len());
        for (item, id) in new.into_iter().zip(ids) {
            let mut dependencies = item.dependencies;
            dedup_keep_order(&mut dependencies);
            let mut unmet = 0;
            for dependency in &dependencies {
                if in_batch.contains(dependency) || self.active.contains_key(dependency) {
                    unmet += 1;
                    self.waiting_on.entry(*dependency).or_default().insert(id);
                }
            }
            let work = WorkItem {
                id,
                description: item.description,
                phase: item.phase,
                state: WorkState::Pending,
                priority: item.priority,
                dependencies,
                requirements: item
                    .requirements
                    .into_iter()
                    .map(|text| Requirement { text, met: false })
                    .collect(),
                review_required: item.review_required,
                evidence: Vec::new(),
                review_feedback: Vec::new(),
                suggested_tests: item.suggested_tests,
                claimant: None,
                lease_expires_at: None,
                attempts: 0,
                failure_reason: None,
                created_at: now,
                updated_at: now,
            };
            if unmet == 0 {
                self.ready.insert(ready_key(&work));
            }
            created.push(work.clone());
            self.active.insert(
                id,
                Active {
                    item: work,
                    unmet,
                    lease_deadline: None,
                },
            );
        }
        assert!(
            self.active.len() <= self.rules.items_max as usize,
            "work queue holds {} active items, over work_items_max {}",
            self.active.len(),
            self.rules.items_max
        );
        Ok(Submit::Accepted(created))
    }

    fn validate_new(&self, item: &NewWorkItem) -> Result<()> {
        self.rules.check_text("description", &item.description)?;
        if item.phase == Phase::Done {
            return Err(Error::invalid(
                "a work item cannot be submitted in phase done; submit it in spec, plan, implement or review",
            ));
        }
        self.rules
            .check_entries("dependencies", item.dependencies.len())?;
        self.rules
            .check_entries("requirements", item.requirements.len())?;
        self.rules
            .check_entries("suggested tests", item.suggested_tests.len())?;
        for text in &item.requirements {
            self.rules.check_text("requirement", text)?;
        }
        for text in &item.suggested_tests {
            self.rules.check_text("suggested test", text)?;
        }
        if let Some(id) = item.id
            && item.dependencies.contains(&id)
        {
            return Err(Error::invalid(format!(
                "dependency cycle: work item {id} depends on itself"
            )));
        }
        Ok(())
    }

    /// Claims the ready item with the highest priority (oldest first among
    /// equals) for `agent`, after returning expired claims to the queue.
    /// Returns the claimed item (if any) and every changed snapshot.
    pub fn claim(
        &mut self,
        agent: &str,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> Result<(Option<WorkItem>, Vec<WorkItem>)> {
        self.rules.check_agent(agent)?;
        let mut changed = self.reap_expired(now, now_instant);
        let Some((_, id)) = self.ready.pop_first() else {
            return Ok((None, changed));
        };
        let lease = self.rules.lease;
        let entry = self.active.get_mut(&id).expect("ready items are active");
        debug_assert_eq!(entry.item.state, WorkState::Pending);
        debug_assert_eq!(entry.unmet, 0);
        let deadline = now_instant + lease;
        entry.item.state = WorkState::Claimed;
        entry.item.claimant = Some(agent.to_owned());
        entry.item.lease_expires_at = Some(lease_expiry(now, lease));
        entry.item.updated_at = now;
        entry.lease_deadline = Some(deadline);
        self.leases.insert((deadline, id));
        let claimed = entry.item.clone();
        changed.push(claimed.clone());
        Ok((Some(claimed), changed))
    }

    /// Renews the lease of a claimed item.
    pub fn heartbeat(
        &mut self,
        id: WorkItemId,
        agent: Option<&str>,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> Result<WorkItem> {
        let lease = self.rules.lease;
        let entry = self.claimed_by(id, agent, "renew")?;
        let old = entry.lease_deadline.replace(now_instant + lease);
        entry.item.lease_expires_at = Some(lease_expiry(now, lease));
        entry.item.updated_at = now;
        let item = entry.item.clone();
        if let Some(old) = old {
            self.leases.remove(&(old, id));
        }
        self.leases.insert((now_instant + lease, id));
        Ok(item)
    }

    /// Finishes the current phase of a claimed item: spec → plan →
    /// implement → review (when the item requires review) → done.
    pub fn complete(
        &mut self,
        id: WorkItemId,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkItem>> {
        let entries_max = self.rules.entries_max as usize;
        let entry = self.claimed_by(id, completion.agent.as_deref(), "complete")?;
        if entry.item.phase == Phase::Review {
            return Err(Error::InvalidTransition(format!(
                "work item {id} is in review: approve or reject it with review"
            )));
        }
        let requirements = entry.item.requirements.len();
        if let Some(bad) = completion.met.iter().find(|&&index| index >= requirements) {
            return Err(Error::invalid(format!(
                "work item {id} has {requirements} requirements; there is no requirement {bad}"
            )));
        }
        let mut evidence = entry.item.evidence.clone();
        for memory in &completion.evidence {
            if !evidence.contains(memory) {
                evidence.push(*memory);
            }
        }
        if evidence.len() > entries_max {
            return Err(Error::invalid(format!(
                "{} evidence entries, over work_item_entries_max ({entries_max})",
                evidence.len()
            )));
        }

        let entry = self.active.get_mut(&id).expect("checked above");
        entry.item.evidence = evidence;
        for &index in &completion.met {
            entry.item.requirements[index].met = true;
        }
        let next = match entry.item.phase {
            Phase::Spec => Phase::Plan,
            Phase::Plan => Phase::Implement,
            Phase::Implement if entry.item.review_required => Phase::Review,
            Phase::Implement | Phase::Review | Phase::Done => Phase::Done,
        };
        let mut changed = Vec::new();
        if next == Phase::Done {
            self.finish(id, WorkState::Done, None, now, &mut changed);
        } else {
            self.requeue(id, next, now);
            changed.push(self.active[&id].item.clone());
        }
        Ok(changed)
    }

    /// Approves (→ done) or rejects (→ implement, pending again) an item in review.
    pub fn review(
        &mut self,
        id: WorkItemId,
        review: &Review,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkItem>> {
        let entry = self.active_entry(id)?;
        if entry.item.phase != Phase::Review {
            return Err(Error::InvalidTransition(format!(
                "work item {id} is in phase {}, not review",
                entry.item.phase
            )));
        }
        check_claimant(&entry.item, review.agent.as_deref(), "review")?;
        match review.feedback.as_deref() {
            Some(text) => self.rules.check_text("review feedback", text)?,
            None if !review.approve => {
                return Err(Error::invalid(
                    "a rejection needs feedback saying what to change",
                ));
            }
            None => {}
        }
        for text in &review.suggested_tests {
            self.rules.check_text("suggested test", text)?;
        }
        let entries_max = self.rules.entries_max as usize;
        let mut suggested = entry.item.suggested_tests.clone();
        suggested.extend(review.suggested_tests.iter().cloned());
        dedup_keep_order(&mut suggested);
        if suggested.len() > entries_max {
            return Err(Error::invalid(format!(
                "{} suggested tests, over work_item_entries_max ({entries_max})",
                suggested.len()
            )));
        }

        let entry = self.active.get_mut(&id).expect("checked above");
        entry.item.suggested_tests = suggested;
        if let Some(text) = &review.feedback {
            entry.item.review_feedback.push(text.clone());
            let excess = entry.item.review_feedback.len().saturating_sub(entries_max);
            entry.item.review_feedback.drain(..excess);
        }
        let mut changed = Vec::new();
        if review.approve {
            self.finish(id, WorkState::Done, None, now, &mut changed);
        } else {
            self.requeue(id, Phase::Implement, now);
            changed.push(self.active[&id].item.clone());
        }
        Ok(changed)
    }

    /// Gives up on an active item; items waiting for it fail too.
    pub fn fail(
        &mut self,
        id: WorkItemId,
        agent: Option<&str>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkItem>> {
        self.rules.check_text("failure reason", reason)?;
        let entry = self.active_entry(id)?;
        check_claimant(&entry.item, agent, "fail")?;
        let mut changed = Vec::new();
        self.finish(
            id,
            WorkState::Failed,
            Some(reason.to_owned()),
            now,
            &mut changed,
        );
        Ok(changed)
    }

    /// Withdraws an active item; items waiting for it are cancelled too.
    pub fn cancel(&mut self, id: WorkItemId, now: DateTime<Utc>) -> Result<Vec<WorkItem>> {
        self.active_entry(id)?;
        let mut changed = Vec::new();
        self.finish(id, WorkState::Cancelled, None, now, &mut changed);
        Ok(changed)
    }

    /// Returns every claim whose lease ran out to the queue with one more
    /// attempt; an item out of attempts fails (and its dependents with it).
    pub fn reap_expired(&mut self, now: DateTime<Utc>, now_instant: Instant) -> Vec<WorkItem> {
        let mut changed = Vec::new();
        while let Some(&(deadline, id)) = self.leases.first() {
            if deadline > now_instant {
                break;
            }
            self.leases.pop_first();
            let attempts_max = self.rules.attempts_max;
            let entry = self.active.get_mut(&id).expect("leased items are active");
            entry.lease_deadline = None;
            entry.item.attempts += 1;
            let claimant = entry.item.claimant.clone().unwrap_or_default();
            if entry.item.attempts >= attempts_max {
                let reason = format!(
                    "lease expired {} times (work_attempts_max {attempts_max}), last held by {claimant}",
                    entry.item.attempts
                );
                self.finish(id, WorkState::Failed, Some(reason), now, &mut changed);
            } else {
                let phase = entry.item.phase;
                self.requeue(id, phase, now);
                changed.push(self.active[&id].item.clone());
            }
        }
        changed
    }

    /// When the next lease runs out, if any item is claimed.
    pub fn next_lease_deadline(&self) -> Option<Instant> {
        self.leases.first().map(|(deadline, _)| *deadline)
    }

    /// The active item with this id.
    pub fn active_item(&self, id: WorkItemId) -> Option<&WorkItem> {
        self.active.get(&id).map(|entry| &entry.item)
    }

    /// The state of a finished item still held in memory.
    #[cfg(test)]
    pub fn finished_state(&self, id: WorkItemId) -> Option<WorkState> {
        self.finished.get(&id).copied()
    }

    pub fn gauges(&self) -> WorkQueueGauges {
        let claimed = self.leases.len();
        WorkQueueGauges {
            active: self.active.len(),
            ready: self.ready.len(),
            claimed,
            waiting: self.active.len() - self.ready.len() - claimed,
            finished_retained: self.finished.len(),
            capacity: self.rules.items_max,
            finished_retained_max: self.rules.retained_max,
            write_backlog: 0,
            finished_stored: 0,
            finished_stored_max: 0,
        }
    }

    fn active_entry(&self, id: WorkItemId) -> Result<&Active> {
        self.active
            .get(&id)
            .ok_or_else(|| match self.finished.get(&id) {
                Some(state) => Error::InvalidTransition(format!("work item {id} is {state}")),
                None => Error::WorkItemNotFound(id),
            })
    }

    fn claimed_by(
        &mut self,
        id: WorkItemId,
        agent: Option<&str>,
        action: &str,
    ) -> Result<&mut Active> {
        let entry = self.active_entry(id)?;
        if entry.item.state != WorkState::Claimed {
            return Err(Error::InvalidTransition(format!(
                "cannot {action} work item {id}: it is {}, not claimed",
                entry.item.state
            )));
        }
        check_claimant(&entry.item, agent, action)?;
        Ok(self.active.get_mut(&id).expect("checked above"))
    }

    /// Puts an active item back to pending in `phase`, releasing any claim.
    fn requeue(&mut self, id: WorkItemId, phase: Phase, now: DateTime<Utc>) {
        let entry = self.active.get_mut(&id).expect("requeued items are active");
        if let Some(deadline) = entry.lease_deadline.take() {
            self.leases.remove(&(deadline, id));
        }
        entry.item.phase = phase;
        entry.item.state = WorkState::Pending;
        entry.item.claimant = None;
        entry.item.lease_expires_at = None;
        entry.item.updated_at = now;
        if entry.unmet == 0 {
            self.ready.insert(ready_key(&entry.item));
        }
    }

    /// Moves an active item to a final state and settles everything that
    /// waited for it: done releases its dependents, failed or cancelled ends
    /// them the same way (transitively). Pushes every changed snapshot.
    fn finish(
        &mut self,
        id: WorkItemId,
        state: WorkState,
        reason: Option<String>,
        now: DateTime<Utc>,
        changed: &mut Vec<WorkItem>,
    ) {
        debug_assert!(!state.is_active());
        let mut settle = vec![(id, state, reason)];
        while let Some((id, state, reason)) = settle.pop() {
            let Some(mut entry) = self.remove_active(id) else {
                continue;
            };
            entry.item.state = state;
            if state == WorkState::Done {
                entry.item.phase = Phase::Done;
            }
            entry.item.failure_reason = reason;
            entry.item.claimant = None;
            entry.item.lease_expires_at = None;
            entry.item.updated_at = now;
            self.retain_finished(id, state);
            changed.push(entry.item);
            for dependent in self.waiting_on.remove(&id).unwrap_or_default() {
                let Some(waiting) = self.active.get_mut(&dependent) else {
                    continue;
                };
                match state {
                    WorkState::Done => {
                        waiting.unmet -= 1;
                        if waiting.unmet == 0 && waiting.item.state == WorkState::Pending {
                            waiting.item.updated_at = now;
                            self.ready.insert(ready_key(&waiting.item));
                            changed.push(waiting.item.clone());
                        }
                    }
                    WorkState::Cancelled => settle.push((
                        dependent,
                        WorkState::Cancelled,
                        Some(format!("dependency {id} was cancelled")),
                    )),
                    _ => settle.push((
                        dependent,
                        WorkState::Failed,
                        Some(format!("dependency {id} failed")),
                    )),
                }
            }
        }
    }

    /// Takes an item out of the active set and every index.
    fn remove_active(&mut self, id: WorkItemId) -> Option<Active> {
        let entry = self.active.remove(&id)?;
        self.ready.remove(&ready_key(&entry.item));
        if let Some(deadline) = entry.lease_deadline {
            self.leases.remove(&(deadline, id));
        }
        for dependency in &entry.item.dependencies {
            if let Some(waiters) = self.waiting_on.get_mut(dependency) {
                waiters.remove(&id);
                if waiters.is_empty() {
                    self.waiting_on.remove(dependency);
                }
            }
        }
        Some(entry)
    }

    /// Remembers a finished item; the oldest leave memory past
    /// `work_completed_retained_max` (storage still knows them).
    fn retain_finished(&mut self, id: WorkItemId, state: WorkState) {
        self.finished.insert(id, state);
        self.finished_order.push_back(id);
        while self.finished_order.len() > self.rules.retained_max as usize {
            if let Some(oldest) = self.finished_order.pop_front() {
                self.finished.remove(&oldest);
            }
        }
        assert!(self.finished.len() <= self.rules.retained_max as usize);
    }
}

/// Refuses `action` by `agent` on an item another agent holds.
fn check_claimant(item: &WorkItem, agent: Option<&str>, action: &str) -> Result<()> {
    match (agent, item.claimant.as_deref()) {
        (Some(agent), Some(claimant)) if agent != claimant => {
            Err(Error::InvalidTransition(format!(
                "cannot {action} work item {}: it is claimed by {claimant}, not {agent}",
                item.id
            )))
        }
        _ => Ok(()),
    }
}

fn lease_expiry(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

fn dedup_keep_order<T: PartialEq + Clone>(list: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(list.len());
    for value in list.drain(..) {
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    *list = kept;
}

/// Refuses a submission whose items depend on each other in a cycle
/// (dependencies outside the batch exist already, so they cannot close one).
fn check_acyclic(
    new: &[NewWorkItem],
    ids: &[WorkItemId],
    in_batch: &HashSet<WorkItemId>,
) -> Result<()> {
    let index: HashMap<WorkItemId, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut blocking = vec![0usize; new.len()];
    let mut unblocks: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    for (i, item) in new.iter().enumerate() {
        let mut seen = HashSet::new();
        for dependency in item.dependencies.iter().filter(|d| in_batch.contains(d)) {
            if seen.insert(*dependency) {
                blocking[i] += 1;
                unblocks[index[dependency]].push(i);
            }
        }
    }
    let mut free: Vec<usize> = (0..new.len()).filter(|&i| blocking[i] == 0).collect();
    let mut ordered = 0;
    while let Some(i) = free.pop() {
        ordered += 1;
        for &next in &unblocks[i] {
            blocking[next] -= 1;
            if blocking[next] == 0 {
                free.push(next);
            }
        }
    }
    if ordered < new.len() {
        let stuck = (0..new.len())
            .find(|&i| blocking[i] > 0)
            .expect("some item is left");
        return Err(Error::invalid(format!(
            "dependency cycle: work item {} depends on itself through other items of this submission",
            ids[stuck]
        )));
    }
    Ok(())
}
