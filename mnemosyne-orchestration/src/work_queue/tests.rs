//! The queue's rules on the in-memory state alone.

use std::time::Duration;

use chrono::Utc;
use mnemosyne_core::{Error, Phase, WorkItemId, WorkState};
use tokio::time::Instant;

use super::requests::{Completion, NewWorkItem, Review};
use super::state::{LookedUp, QueueRules, QueueState, Submit};

fn rules(items_max: u32, retained_max: u32) -> QueueRules {
    QueueRules {
        items_max,
        retained_max,
        attempts_max: 3,
        lease: Duration::from_secs(60),
        text_bytes_max: 1_000,
        entries_max: 10,
    }
}

fn submit(state: &mut QueueState, new: Vec<NewWorkItem>) -> Result<Vec<WorkItemId>, Error> {
    match state.submit(new, &LookedUp::new(), Utc::now())? {
        Submit::Accepted(items) => Ok(items.iter().map(|i| i.id).collect()),
        Submit::LookUp(ids) => panic!("unexpected look-up of {ids:?}"),
    }
}

fn claim(state: &mut QueueState, agent: &str) -> Option<WorkItemId> {
    state
        .claim(agent, Utc::now(), Instant::now())
        .unwrap()
        .0
        .map(|i| i.id)
}

fn complete(state: &mut QueueState, id: WorkItemId) {
    state
        .complete(id, &Completion::default(), Utc::now())
        .unwrap();
}

#[test]
fn claims_by_priority_then_age() {
    let mut state = QueueState::new(rules(10, 10));
    let mut low = NewWorkItem::new("low");
    low.priority = -1;
    let mut high = NewWorkItem::new("high");
    high.priority = 5;
    let ids = submit(
        &mut state,
        vec![
            low,
            NewWorkItem::new("first"),
            high,
            NewWorkItem::new("second"),
        ],
    )
    .unwrap();
    let order: Vec<WorkItemId> = std::iter::from_fn(|| claim(&mut state, "a")).collect();
    assert_eq!(order, [ids[2], ids[1], ids[3], ids[0]]);
}

#[test]
fn capacity_refuses_the_batch_that_does_not_fit_and_changes_nothing() {
    let mut state = QueueState::new(rules(3, 10));
    submit(
        &mut state,
        vec![NewWorkItem::new("a"), NewWorkItem::new("b")],
    )
    .unwrap();
    let err = submit(
        &mut state,
        vec![NewWorkItem::new("c"), NewWorkItem::new("d")],
    )
    .unwrap_err();
    assert!(matches!(err, Error::WorkQueueFull { capacity: 3 }), "{err}");
    assert_eq!(state.gauges().active, 2);
    submit(&mut state, vec![NewWorkItem::new("c")]).unwrap();
    let err = submit(&mut state, vec![NewWorkItem::new("e")]).unwrap_err();
    assert!(matches!(err, Error::WorkQueueFull { .. }));
    assert_eq!(state.gauges().active, 3);
}

#[test]
fn dependencies_gate_readiness_and_failure_cascades() {
    let mut state = QueueState::new(rules(10, 10));
    let base = submit(&mut state, vec![NewWorkItem::new("base")]).unwrap()[0];
    let mut child = NewWorkItem::new("child");
    child.dependencies = vec![base];
    let child = submit(&mut state, vec![child]).unwrap()[0];
    let mut grandchild = NewWorkItem::new("grandchild");
    grandchild.dependencies = vec![child];
    let grandchild = submit(&mut state, vec![grandchild]).unwrap()[0];
    assert_eq!(state.gauges().waiting, 2);

    assert_eq!(claim(&mut state, "a"), Some(base));
    assert_eq!(claim(&mut state, "b"), None, "children wait for base");
    complete(&mut state, base);
    assert_eq!(claim(&mut state, "b"), Some(child));
    let changed = state.fail(child, Some("b"), "broken", Utc::now()).unwrap();
    assert_eq!(changed.len(), 2, "the grandchild fails with its dependency");
    assert_eq!(state.finished_state(grandchild), Some(WorkState::Failed));
    assert!(
        changed[1]
            .failure_reason
            .as_deref()
            .unwrap()
            .contains(&child.to_string())
    );
    assert_eq!(state.gauges().active, 0);

    let mut late = NewWorkItem::new("late");
    late.dependencies = vec![child];
    let err = submit(&mut state, vec![late]).unwrap_err().to_string();
    assert!(err.contains("can never be done"), "{err}");
}

#[test]
fn cycles_and_unknown_dependencies_are_refused() {
    let mut state = QueueState::new(rules(10, 10));
    let (a, b, c) = (WorkItemId::new(), WorkItemId::new(), WorkItemId::new());
    let item = |id, deps: Vec<WorkItemId>| NewWorkItem {
        id: Some(id),
        dependencies: deps,
        ..NewWorkItem::new("x")
    };
    let looked_up: LookedUp = [(a, None), (b, None), (c, None)].into_iter().collect();
    let err = state
        .submit(
            vec![item(a, vec![c]), item(b, vec![a]), item(c, vec![b])],
            &looked_up,
            Utc::now(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("dependency cycle"), "{err}");
    let err = state
        .submit(vec![item(a, vec![a])], &looked_up, Utc::now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("depends on itself"), "{err}");
    assert_eq!(state.gauges().active, 0);

    let unknown = WorkItemId::new();
    let mut new = NewWorkItem::new("y");
    new.dependencies = vec![unknown];
    match state
        .submit(vec![new.clone()], &LookedUp::new(), Utc::now())
        .unwrap()
    {
        Submit::LookUp(ids) => assert_eq!(ids, [unknown]),
        Submit::Accepted(_) => panic!("an unknown dependency needs a look-up"),
    }
    let absent: LookedUp = [(unknown, None)].into_iter().collect();
    let err = state
        .submit(vec![new], &absent, Utc::now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown dependency"), "{err}");

    // A batch in dependency order is fine.
    let accepted = state
        .submit(
            vec![item(a, vec![]), item(b, vec![a]), item(c, vec![a, b])],
            &looked_up,
            Utc::now(),
        )
        .unwrap();
    assert!(matches!(accepted, Submit::Accepted(items) if items.len() == 3));
    assert_eq!(state.gauges().ready, 1);
}

#[test]
fn phases_run_in_order_and_review_decides() {
    let mut state = QueueState::new(rules(10, 10));
    let mut new = NewWorkItem::new("feature");
    new.phase = Phase::Spec;
    new.review_required = true;
    new.requirements = vec!["fast".into()];
    let id = submit(&mut state, vec![new]).unwrap()[0];
    for expected in [Phase::Plan, Phase::Implement, Phase::Review] {
        assert_eq!(claim(&mut state, "dev"), Some(id));
        complete(&mut state, id);
        let item = state.active_item(id).unwrap();
        assert_eq!((item.phase, item.state), (expected, WorkState::Pending));
    }
    assert_eq!(claim(&mut state, "reviewer"), Some(id));
    let err = state
        .complete(id, &Completion::default(), Utc::now())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTransition(_)), "{err}");
    let reject_without_feedback = Review::default();
    assert!(
        state
            .review(id, &reject_without_feedback, Utc::now())
            .is_err()
    );
    let reject = Review {
        agent: Some("reviewer".into()),
        feedback: Some("too slow".into()),
        ..Review::default()
    };
    state.review(id, &reject, Utc::now()).unwrap();
    let item = state.active_item(id).unwrap();
    assert_eq!(
        (item.phase, item.state),
        (Phase::Implement, WorkState::Pending)
    );
    assert_eq!(item.review_feedback, ["too slow"]);

    assert_eq!(claim(&mut state, "dev"), Some(id));
    let completion = Completion {
        met: vec![0],
        ..Completion::default()
    };
    state.complete(id, &completion, Utc::now()).unwrap();
    let approve = Review {
        approve: true,
        ..Review::default()
    };
    let changed = state.review(id, &approve, Utc::now()).unwrap();
    assert_eq!(
        (changed[0].phase, changed[0].state),
        (Phase::Done, WorkState::Done)
    );
    assert!(changed[0].requirements[0].met);
}

#[test]
fn expired_leases_requeue_then_fail_after_the_attempts() {
    let mut state = QueueState::new(rules(10, 10));
    let id = submit(&mut state, vec![NewWorkItem::new("flaky")]).unwrap()[0];
    let start = Instant::now();
    for attempt in 1..=3u32 {
        let (claimed, _) = state.claim("a", Utc::now(), start).unwrap();
        assert_eq!(claimed.map(|i| i.id), Some(id));
        assert!(state.reap_expired(Utc::now(), start).is_empty(), "not yet");
        let later = start + Duration::from_secs(61) * attempt;
        let changed = state.reap_expired(Utc::now(), later);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].attempts, attempt);
        if attempt < 3 {
            assert_eq!(changed[0].state, WorkState::Pending);
        } else {
            assert_eq!(changed[0].state, WorkState::Failed);
        }
    }
    assert_eq!(state.gauges().active, 0);
}

#[test]
fn heartbeat_moves_the_lease_and_only_the_claimant_may_act() {
    let mut state = QueueState::new(rules(10, 10));
    let id = submit(&mut state, vec![NewWorkItem::new("long")]).unwrap()[0];
    let start = Instant::now();
    state.claim("a", Utc::now(), start).unwrap();
    let err = state
        .heartbeat(id, Some("b"), Utc::now(), start)
        .unwrap_err()
        .to_string();
    assert!(err.contains("claimed by a"), "{err}");
    state
        .heartbeat(id, Some("a"), Utc::now(), start + Duration::from_secs(50))
        .unwrap();
    assert!(
        state
            .reap_expired(Utc::now(), start + Duration::from_secs(100))
            .is_empty(),
        "the renewed lease runs to 110 s"
    );
    assert_eq!(
        state
            .reap_expired(Utc::now(), start + Duration::from_secs(111))
            .len(),
        1
    );
}

#[test]
fn finished_retention_is_capped_oldest_first() {
    let mut state = QueueState::new(rules(10, 5));
    let mut finished = Vec::new();
    for i in 0..50 {
        let id = submit(&mut state, vec![NewWorkItem::new(format!("job {i}"))]).unwrap()[0];
        assert_eq!(claim(&mut state, "a"), Some(id));
        complete(&mut state, id);
        finished.push(id);
        assert!(state.gauges().finished_retained <= 5);
    }
    assert_eq!(state.finished_state(finished[49]), Some(WorkState::Done));
    assert_eq!(state.finished_state(finished[0]), None, "evicted");
    // An evicted dependency needs storage's word, and done is enough.
    let mut new = NewWorkItem::new("after");
    new.dependencies = vec![finished[0]];
    let looked_up: LookedUp = [(finished[0], Some(WorkState::Done))].into_iter().collect();
    assert!(matches!(
        state.submit(vec![new], &looked_up, Utc::now()).unwrap(),
        Submit::Accepted(_)
    ));
    assert_eq!(state.gauges().ready, 1);
}

#[test]
fn bad_text_is_refused() {
    let mut state = QueueState::new(rules(10, 10));
    let err = submit(&mut state, vec![NewWorkItem::new("  ")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("description is empty"), "{err}");
    let err = submit(&mut state, vec![NewWorkItem::new("x".repeat(1_001))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("work_text_bytes_max"), "{err}");
    let mut done = NewWorkItem::new("done already");
    done.phase = Phase::Done;
    assert!(submit(&mut state, vec![done]).is_err());
    let mut many = NewWorkItem::new("many");
    many.requirements = (0..11).map(|i| format!("r{i}")).collect();
    let err = submit(&mut state, vec![many]).unwrap_err().to_string();
    assert!(err.contains("work_item_entries_max"), "{err}");
    assert!(
        state
            .claim("bad\nname", Utc::now(), Instant::now())
            .is_err()
    );
    assert_eq!(state.gauges().active, 0);
}
