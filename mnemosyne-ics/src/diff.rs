//! A whole new text turned into character splices against the old one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use similar::{Algorithm, DiffOp, TextDiff};

/// One edit of a text: at character `pos`, delete `delete` characters, then
/// insert `insert`. Positions count Unicode code points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splice {
    /// Where, in characters from the start.
    pub pos: usize,
    /// Characters removed at `pos`.
    pub delete: usize,
    /// Text inserted at `pos` after the removal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub insert: String,
}

impl Splice {
    /// Characters inserted.
    pub fn inserted_chars(&self) -> usize {
        self.insert.chars().count()
    }
}

/// Time the diff may spend looking for the smallest edit; past it the
/// splices are still correct, only possibly larger than minimal.
const DIFF_TIMEOUT_MS: u64 = 500;

/// Splices that turn `old` into `new`, to apply in order (each position is
/// relative to the text left by the previous splices). Equal texts give none.
pub fn splices(old: &str, new: &str) -> Vec<Splice> {
    if old == new {
        return Vec::new();
    }
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(Duration::from_millis(DIFF_TIMEOUT_MS))
        .diff_chars(old, new);
    let new_chars: Vec<char> = new.chars().collect();
    let mut out: Vec<Splice> = Vec::new();
    for op in diff.ops() {
        if matches!(op, DiffOp::Equal { .. }) {
            continue;
        }
        let old_range = op.old_range();
        let new_range = op.new_range();
        let insert: String = new_chars[new_range.clone()].iter().collect();
        // Earlier ops are applied already, so the text before this point is
        // the new text's: the position is the new index.
        let pos = new_range.start;
        match out.last_mut() {
            // Adjacent delete + insert become one replacement.
            Some(last) if last.pos + last.inserted_chars() == pos => {
                last.delete += old_range.len();
                last.insert.push_str(&insert);
            }
            _ => out.push(Splice {
                pos,
                delete: old_range.len(),
                insert,
            }),
        }
    }
    out
}

/// Applies splices to a plain string (the reference the CRDT must agree
/// with); `None` when a splice is out of range.
pub fn apply_to_string(text: &str, splices: &[Splice]) -> Option<String> {
    let mut chars: Vec<char> = text.chars().collect();
    for splice in splices {
        let end = splice.pos.checked_add(splice.delete)?;
        if end > chars.len() {
            return None;
        }
        chars.splice(splice.pos..end, splice.insert.chars());
    }
    Some(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn small_changes_give_small_splices() {
        assert!(splices("same", "same").is_empty());
        let s = splices("the quick brown fox", "the quick red fox");
        let touched: usize = s.iter().map(|s| s.delete + s.inserted_chars()).sum();
        assert!(touched <= 8, "{s:?}");
        assert!(s.iter().all(|s| s.pos >= 10), "{s:?}");
        let s = splices("ab", "aXb");
        assert_eq!(
            s,
            [Splice {
                pos: 1,
                delete: 0,
                insert: "X".into()
            }]
        );
    }

    proptest! {
        #[test]
        fn splices_turn_old_into_new(old in "[a-cé\n]{0,40}", new in "[a-cé\n]{0,40}") {
            let s = splices(&old, &new);
            prop_assert_eq!(apply_to_string(&old, &s).unwrap(), new);
        }
    }
}
