//! Issue 10, item 5: `create` never reports an error for a committed task; a racing
//! `close` is `Error::Closed`; on MariaDB the order-number lookup sees committed rows.

mod common;

use std::time::Duration;

use common::{databases, drop_table, fresh};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Config, Error, NewTask, Status};
use serde_json::json;

fn task(n: i64) -> NewTask {
    NewTask::new("create-faults", json!({ "n": n }), "CREATE:FAULTS").timeout(Duration::from_secs(60))
}

/// Redis is down when the task is created: the row is committed, so create succeeds
/// with dispatched = false (a caller that retried on an error would write a duplicate).
#[tokio::test]
async fn create_with_redis_down_returns_ok_and_the_row_is_committed() {
    for db in databases().await {
        let prefix = common::unique_prefix();
        let client = Client::open(Config {
            queue: "redis://127.0.0.1:1/0".into(),
            ..common::config(&db, &prefix, &qtask_core::Clock::database())
        })
        .await
        .expect("open with Redis down");
        client.install().await.unwrap();
        let created = client.create(task(1)).await.expect("create succeeds");
        assert!(!created.dispatched && !created.existing, "{}", db.name);
        let row = client.get(created.id).await.expect("the row is committed");
        assert!(row.status.is_live(), "{}: {:?}", db.name, row.status);
        let many = client
            .create_many(vec![task(2), task(3)])
            .await
            .expect("create_many succeeds");
        assert!(many.iter().all(|c| !c.dispatched), "{}", db.name);
        for c in &many {
            assert!(client.get(c.id).await.is_ok(), "{}", db.name);
        }
        drop_table(&client).await;
    }
}

/// Calls racing `close` fail with `Error::Closed`, never a database error.
#[tokio::test]
async fn calls_racing_close_get_closed() {
    for db in databases().await {
        let prefix = common::unique_prefix();
        let (c, _) = common::fresh_at(&db, &prefix).await;
        let mut calls = Vec::new();
        for worker in 0..8i64 {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                let mut n = worker * 1_000_000;
                loop {
                    n += 1;
                    let result = match n % 3 {
                        0 => c.create(task(n)).await.map(|_| ()),
                        1 => c.pop("CREATE:FAULTS", Duration::ZERO).await.map(|_| ()),
                        _ => c.stats().await.map(|_| ()),
                    };
                    if let Err(err) = result {
                        return err;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.close().await;
        for call in calls {
            let err = call.await.unwrap();
            assert!(matches!(err, Error::Closed), "{}: {err:?}", db.name);
        }
        let cleanup = Client::open(common::config(&db, &prefix, &qtask_core::Clock::database()))
            .await
            .unwrap();
        drop_table(&cleanup).await;
    }
}

/// MariaDB: a transaction that already read (its snapshot is older than another
/// client's committed create) creates the same order number: it gets the existing task.
#[tokio::test]
async fn same_order_no_from_an_older_snapshot_returns_the_existing_task() {
    for db in databases().await {
        let (a, _) = fresh(&db).await;
        let b = a.clone();
        let mut tx = a.store().pool().begin().await.unwrap();
        // The first read fixes the transaction's snapshot (REPEATABLE READ).
        let sql = format!("SELECT COUNT(*) FROM {}", a.store().table());
        tx.execute(AssertSqlSafe(sql)).await.unwrap();
        if db.name == "sqlite" {
            // SQLite has one writer at a time (a client holds one connection): the other
            // create goes first, then the transaction.
            tx.rollback().await.unwrap();
            let first = b.create(task(1).order_no("ORDER-1")).await.unwrap();
            tx = a.store().pool().begin().await.unwrap();
            let (second, _) = a.create_in(&mut tx, task(2).order_no("ORDER-1")).await.unwrap();
            tx.commit().await.unwrap();
            assert_eq!((second.id, second.existing), (first.id, true), "{}", db.name);
            drop_table(&a).await;
            continue;
        }
        let first = b.create(task(1).order_no("ORDER-1")).await.unwrap();
        let (second, _) = a
            .create_in(&mut tx, task(2).order_no("ORDER-1"))
            .await
            .expect("the committed task is found");
        tx.commit().await.unwrap();
        assert_eq!((second.id, second.existing), (first.id, true), "{}", db.name);
        assert_eq!(a.get(first.id).await.unwrap().status, Status::Waiting);
        drop_table(&a).await;
    }
}

/// Two clients create the same order number at once, many times: one task each time.
#[tokio::test]
async fn concurrent_creates_of_one_order_no_make_one_task() {
    for db in databases().await {
        let (a, _) = fresh(&db).await;
        for round in 0..20 {
            let order = format!("ORDER-{round}");
            let (x, y) = tokio::join!(
                a.create(task(1).order_no(&order)),
                a.create(task(2).order_no(&order))
            );
            let (x, y) = (x.expect("first create"), y.expect("second create"));
            assert_eq!(x.id, y.id, "{}: round {round}", db.name);
            assert!(x.existing != y.existing, "{}: round {round}", db.name);
        }
        drop_table(&a).await;
    }
}
