//! The store's one error type; each variant maps to one HTTP status at the API edge.

/// What went wrong in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record does not exist.
    #[error("{kind} `{key}` does not exist")]
    NotFound {
        /// `team`, `agent`, …
        kind: &'static str,
        /// Its key as the caller gave it.
        key: String,
    },
    /// The record exists already, or the change conflicts with another record.
    #[error("{0}")]
    Conflict(String),
    /// The database failed or holds something this version cannot read.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        StoreError::Internal(err.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> StoreError {
        StoreError::Internal(format!("stored JSON is unreadable: {err}"))
    }
}
