//! On SQLite the worker path commits without waiting for fsync; every other commit
//! still waits. `synchronous` is a setting of the one pooled connection, so after
//! each step of the worker path the pool must hand out a durable connection again:
//! otherwise the next create would return before its row reached the disk.

mod common;

use std::time::Duration;

use common::{drop_table, fresh_pair, next, pairs, DbKind};
use qtask_core::{Client, Fenced, NewTask};
use serde_json::json;

const Q: &str = "DURABLE:Q";
/// `PRAGMA synchronous` of a connection that waits for fsync at each commit.
const FULL: i64 = 2;

async fn synchronous(client: &Client) -> i64 {
    qtask_core::sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(client.store().pool())
        .await
        .expect("PRAGMA synchronous")
}

async fn pragma(client: &Client, name: &str) -> i64 {
    qtask_core::sqlx::query_scalar(qtask_core::sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(client.store().pool())
        .await
        .expect("PRAGMA")
}

#[tokio::test]
async fn the_sqlite_worker_path_leaves_every_commit_durable() {
    for pair in pairs()
        .await
        .into_iter()
        .filter(|p| p.db.name == DbKind::Sqlite.name())
    {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        for i in 0..3 {
            c.create(NewTask::new("d", json!({ "i": i }), Q).timeout(Duration::from_secs(10)))
                .await
                .unwrap();
        }
        assert_eq!(synchronous(&c).await, FULL, "{name}: after creates");
        // Checkpoints (each an fsync on the one connection) every 4,000 WAL pages, and a
        // 16 MB page cache: set on the connection, they do not change what commits promise.
        assert_eq!(pragma(&c, "wal_autocheckpoint").await, 4000, "{name}");
        assert_eq!(pragma(&c, "cache_size").await, -16384, "{name}");

        let claimed = next(&c, Q).await;
        assert_eq!(synchronous(&c).await, FULL, "{name}: after a claim");
        assert!(matches!(
            c.renew(claimed.fence()).await.unwrap(),
            Fenced::Current(_)
        ));
        assert_eq!(synchronous(&c).await, FULL, "{name}: after a renewal");
        assert_eq!(
            c.finish_attempt(claimed.fence()).await.unwrap(),
            Fenced::Current(())
        );
        assert_eq!(synchronous(&c).await, FULL, "{name}: after a finish");

        // A batch claim, then the rows are what the relaxed statements wrote.
        let batch = c.fetch(Q, 8, Duration::from_secs(2)).await.unwrap();
        assert!(!batch.is_empty(), "{name}");
        assert_eq!(synchronous(&c).await, FULL, "{name}: after a batch claim");
        for m in &batch {
            c.finish_attempt(m.fence()).await.unwrap();
        }
        let stats = c.stats().await.unwrap();
        assert_eq!(stats.finished, 1 + batch.len() as i64, "{name}: {stats:?}");
        drop_table(&c).await;
    }
}
