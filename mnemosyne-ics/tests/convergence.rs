//! Random concurrent edits from 2 to 4 actors converge: every replica ends
//! with the same text, whatever order it merges the others in.

use mnemosyne_ics::{CrdtText, Splice, apply_to_string};
use proptest::prelude::*;

/// One edit as random seeds, turned into a valid splice against the
/// replica's current length when applied.
#[derive(Clone, Debug)]
struct Seed {
    pos: usize,
    delete: usize,
    insert: String,
}

fn seed() -> impl Strategy<Value = Seed> {
    (0usize..1_000, 0usize..4, "[a-zé中\n]{0,4}").prop_map(|(pos, delete, insert)| Seed {
        pos,
        delete,
        insert,
    })
}

fn splice_for(seed: &Seed, len: usize) -> Splice {
    let pos = seed.pos % (len + 1);
    Splice {
        pos,
        delete: seed.delete.min(len - pos),
        insert: seed.insert.clone(),
    }
}

/// One actor: its edits, and the order in which it merges the others.
type Actor = (Vec<Seed>, Vec<usize>);

/// The base text and every actor.
fn scenario() -> impl Strategy<Value = (String, Vec<Actor>)> {
    (2usize..=4).prop_flat_map(|actors| {
        let order = Just((0..actors).collect::<Vec<_>>()).prop_shuffle();
        (
            "[a-z ]{0,20}",
            proptest::collection::vec((proptest::collection::vec(seed(), 0..12), order), actors),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn concurrent_edits_converge_in_any_merge_order((base_text, actors) in scenario()) {
        let mut base = CrdtText::new(&base_text);
        // Each actor edits its own replica of the same base, concurrently.
        let mut edited: Vec<CrdtText> = Vec::new();
        for (i, (seeds, _)) in actors.iter().enumerate() {
            let mut replica = base.fork();
            let mut expected = replica.text();
            for seed in seeds {
                let splice = splice_for(seed, replica.len_chars());
                replica.apply(&format!("actor-{i}"), std::slice::from_ref(&splice)).unwrap();
                expected = apply_to_string(&expected, &[splice]).unwrap();
                // Alone, a replica is exactly a plain string under the same splices.
                prop_assert_eq!(replica.text(), expected.clone());
            }
            edited.push(replica);
        }
        // Every actor merges every other replica, in its own order.
        let mut finals = Vec::new();
        for (i, (_, order)) in actors.iter().enumerate() {
            let mut mine = edited[i].clone();
            for &j in order {
                if j != i {
                    let mut theirs = edited[j].clone();
                    mine.merge(&mut theirs).unwrap();
                }
            }
            finals.push(mine.text());
        }
        for text in &finals[1..] {
            prop_assert_eq!(text, &finals[0]);
        }
        // What an actor that never deletes inserted survives the merge:
        // concurrent deletes only reach text their author had seen.
        let mut kept = std::collections::HashMap::<char, usize>::new();
        for (seeds, _) in &actors {
            if seeds.iter().all(|s| s.delete == 0) {
                for c in seeds.iter().flat_map(|s| s.insert.chars()) {
                    *kept.entry(c).or_default() += 1;
                }
            }
        }
        for (c, n) in kept {
            let found = finals[0].chars().filter(|&f| f == c).count();
            prop_assert!(found >= n, "{:?}: {} in the merge, {} inserted", c, found, n);
        }
        // Merging is idempotent: merging again changes nothing.
        let mut again = edited[0].clone();
        for other in &edited {
            let mut other = other.clone();
            again.merge(&mut other).unwrap();
        }
        let mut other = edited[1].clone();
        again.merge(&mut other).unwrap();
        prop_assert_eq!(again.text(), finals[0].clone());
    }
}
