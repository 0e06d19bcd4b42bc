//! [`LoadError`]: why saved bytes could not be loaded as a document, whether
//! the walk over their chunks or Automerge refused them.

/// Why bytes could not be loaded as a document.
#[derive(Debug)]
pub struct LoadError(pub String);
