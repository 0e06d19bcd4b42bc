//! Printing data on stdout: JSON (`--json`, one document per line) or text
//! for people. Logs and progress go to stderr, never here.

use std::io::{self, Write};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mnemosyne_core::Memory;
use serde::Serialize;

/// Width used when `COLUMNS` does not say.
const WIDTH_DEFAULT: usize = 80;
/// Narrowest and widest width taken from `COLUMNS`.
const WIDTH_MIN: usize = 40;
const WIDTH_MAX: usize = 240;

/// Where data goes, and in which form.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    /// JSON when `json`, else text.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// True with `--json`.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Prints `value` as one line of JSON, or calls `text` to print it for people.
    pub fn emit<T: Serialize>(
        self,
        value: &T,
        text: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let mut stdout = io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut stdout, value).map_err(io::Error::from)?;
            writeln!(stdout)?;
        } else {
            text(&mut stdout)?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// A progress bar on stderr counting items, shown only to a person
    /// watching a terminal (never with `--json`).
    pub fn progress(self, length: u64, what: &'static str) -> ProgressBar {
        self.bar(length, what, "{human_pos}/{human_len}")
    }

    /// Like [`Output::progress`], counting bytes.
    pub fn progress_bytes(self, length: u64, what: &'static str) -> ProgressBar {
        self.bar(length, what, "{bytes}/{total_bytes}")
    }

    fn bar(self, length: u64, what: &'static str, counter: &str) -> ProgressBar {
        use std::io::IsTerminal;
        if self.json || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        let template = format!("{{msg:>10}} [{{bar:40}}] {counter} ({{eta}} left)");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        bar
    }
}

/// Terminal width for one-line previews: `COLUMNS` if set, else 80.
pub fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .map_or(WIDTH_DEFAULT, |c| c.clamp(WIDTH_MIN, WIDTH_MAX))
}

/// The first line of `text` in at most `chars_max` characters, with `…` when
/// anything was cut; control characters (terminal escapes) become `�`.
pub fn preview(text: &str, chars_max: usize) -> String {
    let trimmed = text.trim();
    let first = trimmed.lines().next().unwrap_or_default();
    let more_lines = first.len() < trimmed.len();
    let clean = |c: char| if c.is_control() { '\u{fffd}' } else { c };
    let chars_max = chars_max.max(2);
    if first.chars().count() > chars_max {
        let mut out: String = first.chars().take(chars_max - 1).map(clean).collect();
        out.push('…');
        out
    } else {
        let mut out: String = first.chars().map(clean).collect();
        if more_lines {
            out.push('…');
        }
        out
    }
}

/// A score with three significant decimals, in scientific form when tiny.
pub fn score(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.001 {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
    }
}

/// Tags as `a, b`, or `-` when there are none.
pub fn tags(memory: &Memory) -> String {
    if memory.tags.is_empty() {
        "-".to_owned()
    } else {
        memory.tags.join(", ")
    }
}

/// Every field of a memory for people, content last and in full.
pub fn write_memory(w: &mut dyn Write, memory: &Memory) -> io::Result<()> {
    writeln!(w, "id          {}", memory.id)?;
    writeln!(w, "namespace   {}", memory.namespace)?;
    writeln!(w, "type        {}", memory.memory_type)?;
    writeln!(w, "importance  {}", memory.importance)?;
    writeln!(w, "tags        {}", tags(memory))?;
    if let Some(summary) = &memory.summary {
        writeln!(w, "summary     {}", preview(summary, usize::MAX))?;
    }
    for link in &memory.links {
        writeln!(w, "link        {} -> {}", link.link_type, link.target)?;
    }
    writeln!(w, "created     {}", memory.created_at.to_rfc3339())?;
    writeln!(w, "updated     {}", memory.updated_at.to_rfc3339())?;
    writeln!(
        w,
        "accessed    {} ({} reads)",
        memory.accessed_at.to_rfc3339(),
        memory.access_count
    )?;
    writeln!(
        w,
        "archived    {}",
        if memory.archived { "yes" } else { "no" }
    )?;
    writeln!(w)?;
    writeln!(w, "{}", memory.content)
}

/// One line saying which signals found a recall hit, e.g.
/// `keyword #1 (bm25 3.20), vector #2 (similarity 0.61), importance x1.08`.
pub fn signals(signals: &mnemosyne_storage::SignalScores) -> String {
    let mut parts = Vec::new();
    if let (Some(rank), Some(bm25)) = (signals.keyword_rank, signals.bm25) {
        parts.push(format!("keyword #{rank} (bm25 {bm25:.2})"));
    }
    if let (Some(rank), Some(similarity)) = (signals.vector_rank, signals.similarity) {
        parts.push(format!("vector #{rank} (similarity {similarity:.2})"));
    }
    if let Some(from) = signals.linked_from {
        parts.push(format!("linked from {from}"));
    }
    parts.push(format!(
        "importance x{:.2}, recency x{:.2}, namespace x{:.2}",
        signals.importance_boost, signals.recency_boost, signals.namespace_boost
    ));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_cuts_and_marks() {
        assert_eq!(preview("short", 10), "short");
        assert_eq!(preview("0123456789abc", 10), "012345678…");
        assert_eq!(preview("first\nsecond", 80), "first…");
        assert_eq!(preview("  \n padded \n", 80), "padded");
        assert_eq!(preview("ééééé", 3), "éé…");
        assert_eq!(score(1.23456), "1.235");
        assert_eq!(score(0.000001), "1.00e-6");
        assert_eq!(score(0.0), "0.000");
        assert_eq!(
            preview("bell\u{7}\u{1b}[31m", 80),
            "bell\u{fffd}\u{fffd}[31m"
        );
    }
}
