//! Pausing a queue that Redis carries: fetches take nothing from it, even offers already
//! on Redis (the sweeper still offers its due tasks: an offer uses no attempt and stays
//! one copy); after the resume its tasks are delivered, each as attempt 1.

mod common;

use std::time::Duration;

use qtask_core::NewTask;
use serde_json::json;

use common::{redis_url, DbKind, Setup};

/// The shared Redis database of tests that do not flush.
const SHARED_DB: u8 = 12;
const Q: &str = "ADMIN:PAUSED";
const OTHER: &str = "ADMIN:OTHER";

fn task(queue: &str) -> NewTask {
    NewTask::new("pause test", json!({}), queue).timeout(Duration::from_secs(30))
}

async fn paused_queue_on_redis(kind: DbKind) {
    let Some(setup) = Setup::new(kind, &redis_url(SHARED_DB)).await else {
        return;
    };
    let c = &setup.client;
    let pushed = c.create(task(Q)).await.unwrap();
    assert!(pushed.dispatched);
    c.pause_queue(Q).await.unwrap();
    let delayed = c.delay(task(Q), Duration::from_secs(10)).await.unwrap().id;
    let other = c.delay(task(OTHER), Duration::from_secs(10)).await.unwrap().id;
    setup.clock.advance(Duration::from_secs(11));

    let report = c.sweep_once().await.unwrap();
    assert_eq!(
        report.dispatched,
        2,
        "{}: both delayed tasks are offered",
        kind.name()
    );
    assert_eq!(
        c.pop(OTHER, Duration::ZERO).await.unwrap().map(|m| m.task_id),
        Some(other)
    );
    assert!(
        c.pop(Q, Duration::ZERO).await.unwrap().is_none(),
        "{}",
        kind.name()
    );

    c.resume_queue(Q).await.unwrap();
    assert_eq!(
        c.sweep_once().await.unwrap().dispatched,
        0,
        "their offers still stand"
    );
    let mut got = Vec::new();
    while let Some(m) = c.pop(Q, Duration::from_millis(200)).await.unwrap() {
        assert!(c.processing(m.task_id).await.unwrap());
        c.finish(m.task_id).await.unwrap();
        got.push((m.task_id, m.attempt));
    }
    got.sort();
    assert_eq!(got, [(pushed.id, 1), (delayed, 1)], "{}", kind.name());

    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_on_redis_sqlite() {
    paused_queue_on_redis(DbKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_on_redis_postgres() {
    paused_queue_on_redis(DbKind::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_on_redis_mariadb() {
    paused_queue_on_redis(DbKind::MariaDb).await
}
