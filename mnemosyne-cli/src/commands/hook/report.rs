//! What a failed hook says.

/// The one line a failed hook writes (stderr goes to Claude Code's debug log).
pub fn report(error: &anyhow::Error) {
    let message = format!("{error:#}").replace(['\n', '\r'], " ");
    eprintln!("mnemosyne hook: {message}");
}
