//! How long a commit waits for the disk. Every commit is safe from a crash of the
//! process; most also wait for fsync, so that a power cut loses nothing they wrote.
//! On SQLite the worker path's commits (claims, lease renewals, fenced finishes) do
//! not wait: each fsync there costs most of a millisecond on the one connection, and
//! a power cut that rolls back the last of them only makes their tasks run again,
//! which at-least-once delivery already allows. Creates, unfenced calls, fails,
//! cancels and operators' changes still wait.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection};

use super::{Dialect, Store};
use crate::error::Result;

/// Whether a commit waits for fsync before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Lost by nothing: the default.
    Durable,
    /// Claims and attempt-bound outcomes: on SQLite, written to the WAL without fsync
    /// (`synchronous = NORMAL`); the next durable commit or checkpoint syncs them.
    Relaxed,
}

/// `sql` (one statement that commits on its own, outside a transaction) committed
/// without waiting for fsync; the connection is durable again after it.
pub(crate) fn relax(sql: &str) -> String {
    format!("PRAGMA synchronous = NORMAL; {sql}; PRAGMA synchronous = FULL")
}

/// A pooled connection for a [`Commit`]. On SQLite, a relaxed statement's text sets
/// `synchronous = NORMAL` before it and `FULL` after it, in the same trip to the
/// database's thread. Dropped before [`ConnFor::ran`] (the statement failed or was cut
/// short), the connection may still be relaxed: it is closed instead of pooled, so
/// that no durable write ever runs relaxed.
pub(crate) struct ConnFor {
    conn: PoolConnection<Any>,
    relaxed: bool,
}

impl Store {
    /// A connection for `commit`: relaxed only on SQLite, where it pays.
    pub(crate) async fn conn_for(&self, commit: Commit) -> Result<ConnFor> {
        Ok(ConnFor {
            conn: self.pool.acquire().await?,
            relaxed: commit == Commit::Relaxed && self.dialect == Dialect::Sqlite,
        })
    }
}

impl ConnFor {
    /// Whether statements on this connection are to be sent through [`relax`].
    pub(crate) fn relaxed(&self) -> bool {
        self.relaxed
    }

    /// Every wrapped statement ran whole: the connection is durable again.
    pub(crate) fn ran(mut self) {
        self.relaxed = false;
    }
}

impl Deref for ConnFor {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for ConnFor {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for ConnFor {
    fn drop(&mut self) {
        if self.relaxed {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use super::*;
    use crate::config::Config;

    async fn synchronous(store: &Store) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .expect("PRAGMA synchronous")
    }

    /// `synchronous` is per connection: a relaxed one that went back to the pool would
    /// let the next create return before fsync. SQLite's pool holds one connection, so
    /// each check reads the connection that was relaxed, or its replacement.
    #[tokio::test]
    async fn a_relaxed_connection_never_goes_back_to_the_pool_relaxed() {
        let file = std::env::temp_dir().join(format!("qtask-durability-{}.db", std::process::id()));
        let config = Config {
            db: format!("sqlite://{}", file.display()),
            ..Config::default()
        };
        let store = Store::connect(&config).await.expect("connect");
        const FULL: i64 = 2;
        assert_eq!(synchronous(&store).await, FULL);

        // Ran whole: the wrapped text made it durable again.
        let mut conn = store.conn_for(Commit::Relaxed).await.expect("acquire");
        assert!(conn.relaxed());
        let rows = conn
            .execute(sqlx::AssertSqlSafe(relax("SELECT 1")))
            .await
            .expect("relaxed select");
        assert_eq!(rows.rows_affected(), 0);
        conn.ran();
        assert_eq!(synchronous(&store).await, FULL);

        // Cut short after its first pragma: closed, and a fresh connection takes its place.
        let mut conn = store.conn_for(Commit::Relaxed).await.expect("acquire");
        conn.execute("PRAGMA synchronous = NORMAL").await.expect("pragma");
        drop(conn);
        assert_eq!(synchronous(&store).await, FULL);

        // Durable work never relaxes.
        let conn = store.conn_for(Commit::Durable).await.expect("acquire");
        assert!(!conn.relaxed());
        drop(conn);
        store.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
}
