//! What Claude Code sends a hook on stdin, read leniently: unknown fields and
//! unknown `source` values are ignored, the size is bounded.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The events `mnemosyne hook` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    SessionStart,
    UserPromptSubmit,
}

impl Event {
    /// `SessionStart`, `session-start`, `session_start` (any case); `None`
    /// for any other event.
    pub fn parse(text: &str) -> Option<Self> {
        let folded: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        match folded.as_str() {
            "sessionstart" => Some(Self::SessionStart),
            "userpromptsubmit" => Some(Self::UserPromptSubmit),
            _ => None,
        }
    }

    /// The name Claude Code uses (and wants back in `hookEventName`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SessionStart => "SessionStart",
            Self::UserPromptSubmit => "UserPromptSubmit",
        }
    }
}

/// The fields of a hook's input that the hooks use.
#[derive(Debug, Default, Deserialize)]
pub struct HookInput {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub hook_event_name: Option<String>,
    /// SessionStart: startup, resume, clear, compact, fork (or newer ones).
    #[serde(default)]
    pub source: Option<String>,
    /// UserPromptSubmit: what the user typed.
    #[serde(default)]
    pub prompt: Option<String>,
}

impl HookInput {
    /// The JSON in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).context("the hook input is not UTF-8")?;
        if text.trim().is_empty() {
            bail!("the hook input is empty (expected Claude Code's JSON on stdin)");
        }
        serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("the hook input is not a hook's JSON object: {e}"))
    }
}

/// Reads stdin up to `bytes_max` bytes; more is an error.
pub fn read_stdin(bytes_max: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(u64::from(bytes_max) + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the hook input from stdin")?;
    if bytes.len() > bytes_max as usize {
        bail!("the hook input is over {bytes_max} bytes (hook_input_bytes_max)");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_in_any_spelling() {
        for text in [
            "SessionStart",
            "session-start",
            "session_start",
            "SESSIONSTART",
        ] {
            assert_eq!(Event::parse(text), Some(Event::SessionStart), "{text}");
        }
        assert_eq!(
            Event::parse("UserPromptSubmit"),
            Some(Event::UserPromptSubmit)
        );
        assert_eq!(
            Event::parse("user-prompt-submit"),
            Some(Event::UserPromptSubmit)
        );
        assert_eq!(Event::parse("PreCompact"), None);
        assert_eq!(Event::parse(""), None);
    }

    #[test]
    fn input_is_read_leniently() {
        let input = HookInput::parse(
            br#"{"session_id":"s1","cwd":"/tmp/p","hook_event_name":"SessionStart","source":"fork","model":{"id":"x"},"new_field":[1]}"#,
        )
        .unwrap();
        assert_eq!(input.session_id.as_deref(), Some("s1"));
        assert_eq!(input.source.as_deref(), Some("fork"));
        assert!(HookInput::parse(b"").is_err());
        assert!(HookInput::parse(b"[1,2]").is_err());
        assert!(HookInput::parse(b"\xff\xfe").is_err());
        let err = HookInput::parse(br#"{"session_id": 5}"#).unwrap_err();
        assert!(
            err.to_string().contains("not a hook's JSON object"),
            "{err}"
        );
    }
}
