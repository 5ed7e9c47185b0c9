//! One error type for the whole engine; the bindings map it once each.

use std::time::Duration;

/// Everything qtask can fail with. Bindings map each variant to a C code or a
/// Python exception; the message is for people.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed something qtask refuses (bad JSON, empty name, zero timeout…).
    /// Nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No task with this id (it may have been cleaned up already).
    #[error("task {0} not found")]
    NotFound(i64),

    /// The task exists but its state forbids the operation (finishing a cancelled task…).
    #[error("invalid state: {0}")]
    InvalidState(String),

    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),

    /// The queue (Redis) refused or could not be reached.
    #[error("queue error: {0}")]
    Queue(String),

    /// An operation did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// The client was closed before or during the call.
    #[error("client is closed")]
    Closed,

    /// A bug or an environment qtask cannot work in (used after fork, a panic inside…).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // qtask closes its pools only in `Client::close`: a call that raced it.
            sqlx::Error::PoolClosed => Error::Closed,
            err => Error::Database(err),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Error::Queue(err.to_string())
    }
}

impl Error {
    /// The same error for another caller of one batch (database errors keep their text).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::NotFound(id) => Error::NotFound(*id),
            Error::InvalidState(m) => Error::InvalidState(m.clone()),
            Error::Database(e) => Error::Database(sqlx::Error::Io(std::io::Error::other(e.to_string()))),
            Error::Queue(m) => Error::Queue(m.clone()),
            Error::Timeout(d) => Error::Timeout(*d),
            Error::Closed => Error::Closed,
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}
