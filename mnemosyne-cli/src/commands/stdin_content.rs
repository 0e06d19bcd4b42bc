//! Content given on the command line or on stdin.

use std::io::Read;

use anyhow::{Context, Result, bail};
use mnemosyne_core::Limits;

/// The text of `arg`, or stdin when it is `-` (one trailing newline removed),
/// read no further than the content limit allows.
pub(super) fn content_arg(arg: String, limits: &Limits) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let max = u64::from(limits.memory_content_bytes_max);
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the content from stdin")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.len() as u64 > max {
        bail!(
            "invalid input: content on stdin is over the limit of {max} bytes (memory_content_bytes_max)"
        );
    }
    String::from_utf8(bytes).context("content on stdin is not valid UTF-8")
}
