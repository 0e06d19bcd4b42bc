//! `MemoryStore::context` (a memory with its linked neighbourhood) and the
//! `min_importance` filter of list and recall, on every backend.

use mnemosyne_core::{Error, Importance, Limits, LinkType, ListQuery, MemoryId, NewMemory};
use mnemosyne_storage::{
    ContextEdge, ContextQuery, LinkDirection, MemoryStore, Neighbourhood, RecallMode, RecallQuery,
};

use super::{Backend, fixture, open, open_embedded};

async fn remember(store: &MemoryStore, content: &str, importance: i64) -> MemoryId {
    let new = NewMemory {
        importance: Importance::try_from(importance).unwrap(),
        ..NewMemory::new(content)
    };
    store.remember(new).await.unwrap().id
}

fn query(id: MemoryId, hops: u32) -> ContextQuery {
    ContextQuery {
        hops: Some(hops),
        ..ContextQuery::new(id)
    }
}

fn neighbour_ids(n: &Neighbourhood) -> Vec<(MemoryId, u32, MemoryId)> {
    n.neighbours
        .iter()
        .map(|x| (x.memory.id, x.hop, x.via))
        .collect()
}

fn edge(
    source: MemoryId,
    target: MemoryId,
    link_type: LinkType,
    from: MemoryId,
    direction: LinkDirection,
    hop: u32,
) -> ContextEdge {
    ContextEdge {
        source,
        target,
        link_type,
        from,
        direction,
        hop,
    }
}

/// centre -> a (fixes), b -> centre (depends_on), a -> d, b -> a (a cycle
/// centre-a-b), d -> e: hops, directions and the cycle.
pub async fn context_follows_links_both_ways_hop_by_hop<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        context_hops_max: 3,
        ..Limits::default()
    };
    let store = open::<B>(&f.path, limits).await;
    let centre = remember(&store, "centre: the lease reaper design", 5).await;
    let a = remember(&store, "a: the fix of the reaper deadlock", 8).await;
    let b = remember(&store, "b: the queue depends on the reaper", 6).await;
    let d = remember(&store, "d: the deadlock report", 4).await;
    let e = remember(&store, "e: three hops away", 4).await;
    store.link(centre, a, LinkType::Fixes).await.unwrap();
    store.link(b, centre, LinkType::DependsOn).await.unwrap();
    store.link(a, d, LinkType::RelatesTo).await.unwrap();
    store.link(b, a, LinkType::PartOf).await.unwrap();
    store.link(d, e, LinkType::DerivedFrom).await.unwrap();

    let alone = store.context(query(centre, 0)).await.unwrap();
    assert_eq!(alone.memory.id, centre);
    assert!(alone.neighbours.is_empty() && alone.edges.is_empty());
    assert!(!alone.truncated);
    assert_eq!(alone.memory.access_count, 1, "the centre is read like get");

    let one = store.context(query(centre, 1)).await.unwrap();
    assert_eq!(neighbour_ids(&one), [(a, 1, centre), (b, 1, centre)]);
    assert_eq!(
        one.edges,
        [
            edge(
                centre,
                a,
                LinkType::Fixes,
                centre,
                LinkDirection::Outgoing,
                1
            ),
            edge(
                b,
                centre,
                LinkType::DependsOn,
                centre,
                LinkDirection::Incoming,
                1
            ),
        ]
    );
    assert!(!one.truncated);
    assert_eq!((one.hops, one.fan_out, one.limit), (1, 8, 50));

    // Hop 2: d through a; the cycle's last link (b -> a) is reported once,
    // from a (reached first: more important; b, more important than d,
    // comes first among a's neighbours), and nobody is reached twice.
    let two = store.context(query(centre, 2)).await.unwrap();
    assert_eq!(
        neighbour_ids(&two),
        [(a, 1, centre), (b, 1, centre), (d, 2, a)]
    );
    assert_eq!(
        two.edges[2..],
        [
            edge(b, a, LinkType::PartOf, a, LinkDirection::Incoming, 2),
            edge(a, d, LinkType::RelatesTo, a, LinkDirection::Outgoing, 2),
        ]
    );
    assert_eq!(two.edges.len(), 4);

    let three = store.context(query(centre, 3)).await.unwrap();
    assert_eq!(three.neighbours.len(), 4);
    assert_eq!(neighbour_ids(&three)[3], (e, 3, d));
    assert_eq!(three.edges.len(), 5);
    let default = store.context(ContextQuery::new(centre)).await.unwrap();
    assert_eq!(default.hops, 3, "no hops asked: context_hops_max");
    assert_eq!(neighbour_ids(&default), neighbour_ids(&three));
    assert_eq!(default.edges, three.edges);

    // Seen from d, the same links run the other way.
    let from_d = store.context(query(d, 1)).await.unwrap();
    assert_eq!(
        from_d.edges,
        [
            edge(a, d, LinkType::RelatesTo, d, LinkDirection::Incoming, 1),
            edge(d, e, LinkType::DerivedFrom, d, LinkDirection::Outgoing, 1),
        ]
    );

    // Archived memories are left out unless asked for; the centre is
    // answered archived or not, like get.
    store.forget(a, false).await.unwrap();
    let hidden = store.context(query(centre, 2)).await.unwrap();
    assert_eq!(neighbour_ids(&hidden), [(b, 1, centre)]);
    assert_eq!(hidden.edges.len(), 1);
    let shown = store
        .context(ContextQuery {
            include_archived: true,
            ..query(centre, 1)
        })
        .await
        .unwrap();
    assert_eq!(shown.neighbours.len(), 2);
    let archived_centre = store.context(query(a, 1)).await.unwrap();
    assert!(archived_centre.memory.archived);
    assert_eq!(archived_centre.neighbours.len(), 3, "centre, b and d");
    store.forget(b, true).await.unwrap();
    let deleted = store.context(query(centre, 2)).await.unwrap();
    assert!(deleted.neighbours.is_empty() && deleted.edges.is_empty());
}

/// A hub with five spokes of importance 1..=5 and two links to one of them.
async fn hub_and_spokes(store: &MemoryStore) -> (MemoryId, Vec<MemoryId>) {
    let hub = remember(store, "hub", 5).await;
    let mut spokes = Vec::new();
    for importance in 1..=5 {
        let spoke = remember(store, &format!("spoke {importance}"), importance).await;
        if importance % 2 == 0 {
            store.link(spoke, hub, LinkType::PartOf).await.unwrap();
        } else {
            store.link(hub, spoke, LinkType::RelatesTo).await.unwrap();
        }
        spokes.push(spoke);
    }
    store
        .link(hub, spokes[4], LinkType::DependsOn)
        .await
        .unwrap();
    (hub, spokes)
}

pub async fn context_bounds_fan_out_and_total_and_refuses_more<B: Backend>() {
    let f = fixture();
    let store = open::<B>(&f.path, Limits::default()).await;
    let (hub, spokes) = hub_and_spokes(&store).await;
    let ids = |n: &Neighbourhood| n.neighbours.iter().map(|x| x.memory.id).collect::<Vec<_>>();
    let fan = |fan_out: u32| ContextQuery {
        fan_out: Some(fan_out),
        ..query(hub, 1)
    };

    // Fan-out: the most important neighbours; exactly as many is not a cut.
    let four = store.context(fan(4)).await.unwrap();
    assert_eq!(ids(&four), [spokes[4], spokes[3], spokes[2], spokes[1]]);
    assert!(four.truncated, "a fifth neighbour was left");
    let five = store.context(fan(5)).await.unwrap();
    assert_eq!(five.neighbours.len(), 5);
    assert!(!five.truncated);
    // Two links between the hub and spoke 5: both reported.
    assert_eq!(five.edges.len(), 6);
    assert_eq!(
        five.edges[..2],
        [
            edge(
                hub,
                spokes[4],
                LinkType::DependsOn,
                hub,
                LinkDirection::Outgoing,
                1
            ),
            edge(
                hub,
                spokes[4],
                LinkType::RelatesTo,
                hub,
                LinkDirection::Outgoing,
                1
            ),
        ]
    );
    assert_eq!(
        five.edges[2],
        edge(
            spokes[3],
            hub,
            LinkType::PartOf,
            hub,
            LinkDirection::Incoming,
            1
        )
    );

    // Total: the centre counts; exactly enough room is not a cut.
    let total = |limit: u32| ContextQuery {
        limit: Some(limit),
        ..query(hub, 2)
    };
    let three = store.context(total(3)).await.unwrap();
    assert_eq!(ids(&three), [spokes[4], spokes[3]]);
    assert!(three.truncated);
    assert!(
        three
            .edges
            .iter()
            .all(|e| e.source != spokes[2] && e.target != spokes[2]),
        "no link to a memory left out"
    );
    let six = store.context(total(6)).await.unwrap();
    assert_eq!(six.neighbours.len(), 5);
    assert!(!six.truncated);
    let one = store.context(total(1)).await.unwrap();
    assert!(one.neighbours.is_empty() && one.truncated);

    // Over a limit: refused, naming it, never cut.
    let limits = store.limits().clone();
    for (bad, named) in [
        (query(hub, limits.context_hops_max + 1), "context_hops_max"),
        (fan(0), "context_fan_out_max"),
        (fan(limits.context_fan_out_max + 1), "context_fan_out_max"),
        (total(0), "context_memories_max"),
        (
            total(limits.context_memories_max + 1),
            "context_memories_max",
        ),
    ] {
        let error = store.context(bad).await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidInput(m) if m.contains(named)),
            "{error}"
        );
    }
    assert!(store.context(fan(limits.context_fan_out_max)).await.is_ok());
    let missing = MemoryId::new();
    assert!(matches!(
        store.context(ContextQuery::new(missing)).await,
        Err(Error::NotFound(id)) if id == missing
    ));
}

pub async fn min_importance_filters_list_and_recall<B: Backend>() {
    let f = fixture();
    let store = open_embedded::<B>(&f.path).await;
    let low = remember(&store, "deploy checklist low", 3).await;
    let mid = remember(&store, "deploy checklist mid", 5).await;
    let high = remember(&store, "deploy checklist high", 8).await;
    let linked_low = remember(&store, "rollback notes", 2).await;
    store
        .link(high, linked_low, LinkType::RelatesTo)
        .await
        .unwrap();
    let at_least = |n: i64| Some(Importance::try_from(n).unwrap());

    let list = |min| ListQuery {
        min_importance: min,
        ..ListQuery::default()
    };
    let mut listed: Vec<MemoryId> = store
        .list(list(at_least(5)))
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    listed.sort();
    assert_eq!(listed, [mid, high]);
    assert_eq!(store.list(list(at_least(8))).await.unwrap().len(), 1);
    assert!(store.list(list(at_least(9))).await.unwrap().is_empty());
    assert_eq!(store.list(list(None)).await.unwrap().len(), 4);

    for mode in [RecallMode::Keyword, RecallMode::Vector, RecallMode::Hybrid] {
        let recall = |min| RecallQuery {
            text: "deploy checklist".into(),
            mode,
            min_importance: min,
            ..RecallQuery::default()
        };
        let ids: Vec<MemoryId> = store
            .recall(recall(at_least(5)))
            .await
            .unwrap()
            .hits
            .iter()
            .map(|h| h.memory.id)
            .collect();
        assert!(ids.contains(&mid) && ids.contains(&high), "{mode:?}");
        assert!(
            !ids.contains(&low) && !ids.contains(&linked_low),
            "{mode:?}: below the minimum"
        );
        let all = store.recall(recall(None)).await.unwrap();
        assert!(all.hits.iter().any(|h| h.memory.id == low), "{mode:?}");
    }
    // Link expansion brings the linked memory only when it passes.
    let hybrid = store
        .recall(RecallQuery {
            text: "deploy checklist high".into(),
            min_importance: at_least(2),
            ..RecallQuery::default()
        })
        .await
        .unwrap();
    assert!(hybrid.hits.iter().any(|h| h.memory.id == linked_low));
}
