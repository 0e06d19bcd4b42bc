//! The text a hook adds: short lines, within a byte budget.
//!
//! What memories hold was written by agents and tools and is read back as
//! context, so each line is flattened (no control characters, no line
//! breaks of its own) and cut: a memory can neither run past its line nor
//! past the budget.

use chrono::{DateTime, Utc};
use mnemosyne_core::{Memory, WorkItem};

/// Characters of a memory's summary or first line shown in its line.
pub const MEMORY_TEXT_CHARS_MAX: usize = 200;
/// Characters of a work item's description shown in its line.
pub const WORK_TEXT_CHARS_MAX: usize = 160;

/// Lines added while they fit in `bytes_max` bytes (newlines counted).
#[derive(Debug)]
pub struct Budget {
    text: String,
    bytes_max: usize,
}

impl Budget {
    pub fn new(bytes_max: u32) -> Self {
        Self {
            text: String::new(),
            bytes_max: bytes_max as usize,
        }
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.bytes_max.saturating_sub(self.text.len())
    }

    /// Adds `line` and a newline if both fit; says whether they did.
    pub fn push(&mut self, line: &str) -> bool {
        if line.len() + 1 > self.remaining() {
            return false;
        }
        self.text.push_str(line);
        self.text.push('\n');
        true
    }

    /// Adds as much of `line` as fits (cut on a character boundary, marked
    /// with `…`); says whether anything was added.
    pub fn push_cut(&mut self, line: &str) -> bool {
        if self.push(line) {
            return true;
        }
        let room = self.remaining().saturating_sub(1 + '…'.len_utf8());
        if room == 0 {
            return false;
        }
        let cut = cut_bytes(line, room);
        if cut.is_empty() {
            return false;
        }
        self.push(&format!("{cut}…"))
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// The longest prefix of `text` of at most `bytes` bytes, on a character boundary.
pub fn cut_bytes(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` on one line: control characters and runs of whitespace become one
/// space, and at most `chars_max` characters are kept (`…` marks a cut).
pub fn one_line(text: &str, chars_max: usize) -> String {
    let mut line = String::new();
    let mut chars = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !line.is_empty();
            continue;
        }
        if chars + usize::from(space) >= chars_max {
            line.push('…');
            return line;
        }
        if space {
            line.push(' ');
            chars += 1;
            space = false;
        }
        line.push(c);
        chars += 1;
    }
    line
}

/// "today", "yesterday", "5 days ago", "3 months ago", "2 years ago".
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let days = (now - then).num_days().max(0);
    match days {
        0 => "today".into(),
        1 => "yesterday".into(),
        2..=59 => format!("{days} days ago"),
        60..=729 => format!("{} months ago", days / 30),
        _ => format!("{} years ago", days / 365),
    }
}

/// One memory: its type, summary (or first line of its content), id,
/// namespace, importance and age.
pub fn memory_line(memory: &Memory, now: DateTime<Utc>) -> String {
    let text = memory
        .summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| {
            memory
                .content
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
        });
    format!(
        "- {}: {} (id {}, {}, importance {}, {})",
        memory.memory_type,
        one_line(text, MEMORY_TEXT_CHARS_MAX),
        memory.id,
        memory.namespace,
        memory.importance,
        age(memory.updated_at, now)
    )
}

/// One open work item: state, priority, description's first line, id.
pub fn work_line(item: &WorkItem) -> String {
    format!(
        "- {}, priority {}: {} (id {})",
        item.state,
        item.priority,
        one_line(&item.description, WORK_TEXT_CHARS_MAX),
        item.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_lines_while_they_fit_and_cuts_on_character_boundaries() {
        let mut budget = Budget::new(12);
        assert!(budget.push("hello"));
        assert_eq!(budget.remaining(), 6);
        assert!(
            !budget.push("world!"),
            "6 bytes and a newline do not fit in 6"
        );
        assert!(budget.push_cut("ééééé"), "cut to what fits");
        let text = budget.into_text();
        assert!(text.len() <= 12, "{text:?}");
        assert_eq!(text, "hello\né…\n");
        let mut full = Budget::new(4);
        assert!(full.push("abc"));
        assert!(
            !full.push_cut("xyz"),
            "no room for a character and its mark"
        );
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\n\n b\t\u{7}c  ", 100), "a b c");
        assert_eq!(one_line("  lead", 100), "lead");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("日本語テキスト", 2), "日本…");
        assert_eq!(one_line("", 5), "");
    }

    #[test]
    fn cut_bytes_never_splits_a_character() {
        assert_eq!(cut_bytes("aé", 2), "a");
        assert_eq!(cut_bytes("aé", 3), "aé");
        assert_eq!(cut_bytes("🦀🦀", 5), "🦀");
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        let now = Utc::now();
        assert_eq!(age(now, now), "today");
        assert_eq!(age(now - chrono::Duration::days(1), now), "yesterday");
        assert_eq!(age(now - chrono::Duration::days(12), now), "12 days ago");
        assert_eq!(age(now - chrono::Duration::days(95), now), "3 months ago");
        assert_eq!(age(now - chrono::Duration::days(800), now), "2 years ago");
        assert_eq!(age(now + chrono::Duration::days(3), now), "today");
    }
}
