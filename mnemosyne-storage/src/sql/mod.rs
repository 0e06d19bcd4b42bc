//! The operations of the store, written once over a small synchronous
//! connection ([`Conn`]) that each backend adapts its driver to. What
//! differs between backends stays with them: connection set-up, the vector
//! index ([`VectorIndex`]) and the heap figures.

pub mod admin;
pub mod conn;
pub mod documents;
pub mod memories;
pub mod work;

use mnemosyne_core::{Embedding, Result, VectorHit, VectorQuery};

pub use conn::{Conn, DbError, DbErrorKind, Row};

/// Whether a vector replaces one of its own model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameModel {
    /// Replace it (the text changed: an update).
    Replace,
    /// Keep it (it was made from a newer text than this one).
    Keep,
}

/// A backend's index of stored vectors. The operations call it inside their
/// own transactions; a checked vector ([`Embedding::check`]) is all it gets.
pub trait VectorIndex {
    /// The connection it works on.
    type Conn: Conn;

    /// Stores (or replaces) the vector of memory `id` and its index entry;
    /// `Ok(false)` when the memory does not exist, or when it has a vector
    /// of this model and `same_model` keeps it.
    fn store(
        conn: &mut Self::Conn,
        id: &str,
        embedding: &Embedding,
        same_model: SameModel,
    ) -> Result<bool>;

    /// Removes the index entries of memory `id`, which is about to be deleted.
    fn unindex(conn: &mut Self::Conn, id: &str) -> Result<()>;

    /// Nearest stored vectors of the query's model, best first.
    fn search(conn: &mut Self::Conn, query: &VectorQuery) -> Result<Vec<VectorHit>>;
}
