//! The background sweeper in real time, with the Redis queue: nothing is dispatched
//! while every sweeper is stopped, everything is once one starts again, and a lost
//! dispatch comes back within timeout + one sweep interval.

mod common;

use std::time::{Duration, Instant};

use common::{config, databases, drop_table, unique_prefix, Db};
use qtask_core::{Client, Clock, NewTask};
use serde_json::json;

const QUEUE: &str = "SWEEP:Q";
const INTERVAL: Duration = Duration::from_millis(200);

async fn open(db: &Db, redis: &str, prefix: &str, sweeper: bool) -> Client {
    let mut config = config(db, prefix, &Clock::database());
    config.queue = redis.to_string();
    config.redis_prefix = prefix.trim_end_matches('_').to_string();
    config.sweeper = sweeper;
    config.sweep_interval = INTERVAL;
    Client::open(config).await.unwrap()
}

#[tokio::test]
async fn stopped_sweepers_dispatch_nothing_and_a_restarted_one_catches_up() {
    let Some(redis) = common::redis() else { return };
    for db in databases().await {
        let prefix = unique_prefix();
        let producer = open(&db, &redis, &prefix, false).await;
        producer.install().await.unwrap();
        let sweeper = open(&db, &redis, &prefix, true).await;
        let task = NewTask::new("t", json!({}), QUEUE).timeout(Duration::from_secs(30));
        let id = producer.delay(task, Duration::from_secs(1)).await.unwrap().id;
        sweeper.close().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            producer.pop(QUEUE, Duration::ZERO).await.unwrap().is_none(),
            "{}: no sweeper, no dispatch",
            db.name
        );
        let restarted = open(&db, &redis, &prefix, true).await;
        let m = producer.pop(QUEUE, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            m.map(|m| (m.task_id, m.attempt)),
            Some((id, 1)),
            "{}: restarted sweeper dispatched it",
            db.name
        );
        restarted.close().await;
        drop_table(&producer).await;
    }
}

/// Contract 1's bound: a worker that took a task and vanished delays it by at most
/// its timeout plus one sweep interval (plus scheduling slack), not more.
#[tokio::test]
async fn a_lost_dispatch_returns_within_timeout_plus_one_sweep_interval() {
    let Some(redis) = common::redis() else { return };
    for db in databases().await {
        let prefix = unique_prefix();
        let client = open(&db, &redis, &prefix, true).await;
        client.install().await.unwrap();
        let timeout = Duration::from_secs(1);
        let id = client
            .create(NewTask::new("t", json!({}), QUEUE).timeout(timeout))
            .await
            .unwrap()
            .id;
        let first = client
            .pop(QUEUE, Duration::from_secs(2))
            .await
            .unwrap()
            .expect("first dispatch");
        let taken = Instant::now();
        assert!(client.processing(first.task_id).await.unwrap());
        // The worker vanishes here: no finish, no further processing.
        let bound = timeout + INTERVAL + Duration::from_millis(800);
        let again = client.pop(QUEUE, bound).await.unwrap();
        let waited = taken.elapsed();
        assert_eq!(
            again.map(|m| (m.task_id, m.attempt)),
            Some((id, 2)),
            "{}: not back within {bound:?}",
            db.name
        );
        assert!(
            waited >= timeout - Duration::from_millis(50),
            "{}: back after {waited:?}, before its timeout",
            db.name
        );
        drop_table(&client).await;
    }
}
