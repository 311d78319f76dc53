//! The client's one error type.

use crate::transport::TransportError;

/// Why a request failed (after the retries that were safe).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server answered with an error: its status and its JSON body
    /// `{"error": "<sentence>", "code": "<slug>"}`.
    #[error("{node}: {status} {code}: {message}")]
    Http {
        /// Base URL of the node that answered.
        node: String,
        /// HTTP status.
        status: u16,
        /// The server's slug (`quorum_not_met`, `stale`, `bad_context`, ...).
        code: String,
        /// The server's sentence.
        message: String,
    },
    /// No answer: see [`TransportError`] for whether it may have been applied.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// `modify` met a concurrent writer on every attempt; its last value is
    /// stored as a sibling beside theirs.
    #[error("modify of {key:?} still met concurrent writes after {attempts} attempts")]
    Conflict {
        /// The key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer was not what the API promises (unparseable body).
    #[error("unexpected answer from {node}: {detail}")]
    Protocol {
        /// Base URL of the node that answered.
        node: String,
        /// What was wrong.
        detail: String,
    },
    /// The client was built or called with something unusable (a bad URL,
    /// an empty key, no node to ask).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of a server error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error slug, when it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Http { code, .. } => Some(code),
            _ => None,
        }
    }
}
