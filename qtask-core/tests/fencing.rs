//! Dispatch v2 on every database × queue pair: an attempt begins at the claim, only
//! claims count, outcomes are fenced by attempt, a backlog uses no attempt and holds
//! one copy, fetches claim in batches, and one unreadable row does not block a batch.

mod common;

use std::time::Duration;

use common::{drop_table, fresh_pair, fresh_table, pairs, unique_prefix};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Clock, Fenced, Message, NewTask, Status, Worker};
use serde_json::json;

const Q: &str = "V2:Q";

fn task(i: usize) -> NewTask {
    NewTask::new("v2", json!({ "i": i }), Q).timeout(Duration::from_secs(10))
}

/// Pops the next message, sweeping first when the queue needs offers.
async fn next(client: &Client) -> Message {
    client.sweep_once().await.unwrap();
    client
        .pop(Q, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("a message")
}

/// Lets the lease of the running attempt run out (the clock is shifted, not slept).
async fn expire(client: &Client, clock: &Clock) {
    clock.advance(Duration::from_secs(11));
    client.sweep_once().await.unwrap();
}

/// Contract 7: a worker paused past its lease cannot finish, fail, renew or cancel the
/// newer attempt; its outcomes are reported stale and change nothing.
#[tokio::test]
async fn stale_outcomes_change_nothing() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        let first = next(&c).await;
        assert_eq!((first.task_id, first.attempt), (id, 1), "{}", pair.name());
        assert_eq!(first.lease, Duration::from_secs(10));
        expire(&c, &clock).await;
        let second = next(&c).await;
        assert_eq!((second.task_id, second.attempt), (id, 2), "{}", pair.name());

        let old = first.fence();
        assert_eq!(
            c.finish_attempt(old).await.unwrap(),
            Fenced::Stale,
            "{}",
            pair.name()
        );
        assert_eq!(c.fail_attempt(old, "late").await.unwrap(), Fenced::Stale);
        assert_eq!(c.renew(old).await.unwrap(), Fenced::Stale);
        assert_eq!(c.cancel_attempt(old).await.unwrap(), Fenced::Stale);
        let row = c.get(id).await.unwrap();
        assert_eq!(
            (row.status, row.count),
            (Status::Processing, 2),
            "{}",
            pair.name()
        );
        assert_eq!(row.last_error, None, "a stale fail wrote nothing");

        let lease = c.renew(second.fence()).await.unwrap();
        assert_eq!(lease, Fenced::Current(Duration::from_secs(10)));
        assert_eq!(
            c.finish_attempt(second.fence()).await.unwrap(),
            Fenced::Current(())
        );
        assert_eq!(c.get(id).await.unwrap().status, Status::Finished);
        // An ended task: every outcome is stale, and an unknown task is not found.
        assert_eq!(c.fail_attempt(second.fence(), "x").await.unwrap(), Fenced::Stale);
        let mut missing = second.fence();
        missing.task_id += 1000;
        assert!(matches!(
            c.fail_attempt(missing, "x").await,
            Err(qtask_core::Error::NotFound(_))
        ));
        drop_table(&c).await;
    }
}

/// Outcomes keyed by ids test the namespace (inside the fence, statements.rs): a client
/// of another namespace on the same table cannot end or renew an attempt of this one.
#[tokio::test]
async fn another_namespace_cannot_end_an_attempt() {
    for pair in pairs().await {
        let prefix = unique_prefix();
        let (c, _clock) = fresh_table(&pair.db, &prefix, &pair.queue, |_| {}).await;
        let (other, _) = fresh_table(&pair.db, &prefix, &pair.queue, |config| {
            config.namespace = "another".into()
        })
        .await;
        let id = c.create(task(1)).await.unwrap().id;
        let message = next(&c).await;
        let fence = message.fence();
        let finished = other.finish_attempt(fence).await;
        assert!(
            !matches!(finished, Ok(Fenced::Current(_))),
            "{}: {finished:?}",
            pair.name()
        );
        let renewed = other.renew(fence).await;
        assert!(
            !matches!(renewed, Ok(Fenced::Current(_))),
            "{}: {renewed:?}",
            pair.name()
        );
        let row = c.get(id).await.unwrap();
        assert_eq!(
            (row.status, row.count),
            (Status::Processing, 1),
            "{}",
            pair.name()
        );
        assert_eq!(c.finish_attempt(fence).await.unwrap(), Fenced::Current(()));
        other.close().await;
        drop_table(&c).await;
    }
}

/// Contract 4: attempts count claims only. A task nobody takes stays waiting with no
/// attempt used however long it waits, and a queue holds one copy of it; each claim
/// then gets the next number, and after max_count claims the task fails.
#[tokio::test]
async fn a_backlog_uses_no_attempt_and_holds_one_copy() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let t = NewTask::new("v2", json!({}), Q)
            .timeout(Duration::from_secs(1))
            .max_count(3);
        let id = c.create(t).await.unwrap().id;
        // Seven timeouts pass with no worker; the sweeper offers it again each time.
        for _ in 0..7 {
            clock.advance(Duration::from_millis(1100));
            let report = c.sweep_once().await.unwrap();
            assert_eq!(report.gave_up, 0, "{}", pair.name());
        }
        let row = c.get(id).await.unwrap();
        assert_eq!((row.status, row.count), (Status::Waiting, 0), "{}", pair.name());
        if pair.carries_offers() {
            assert_eq!(offers_on_queue(&c).await, 1, "{}: one copy", pair.name());
        }
        for attempt in 1..=3 {
            let m = next(&c).await;
            assert_eq!((m.task_id, m.attempt), (id, attempt), "{}", pair.name());
            // The worker dies: the lease runs out.
            clock.advance(Duration::from_millis(1100));
        }
        let report = c.sweep_once().await.unwrap();
        assert_eq!(report.gave_up, 1, "{}", pair.name());
        let row = c.get(id).await.unwrap();
        assert_eq!((row.status, row.count), (Status::Failed, 3), "{}", pair.name());
        assert!(row.last_error.unwrap().contains("max_count"));
        assert!(c.pop(Q, Duration::from_millis(100)).await.unwrap().is_none());
        drop_table(&c).await;
    }
}

/// How many offers the Redis queue of `Q` holds.
async fn offers_on_queue(c: &Client) -> i64 {
    let config = c.config();
    let key = qtask_core::queue::offers_key(&config.redis_prefix, &config.namespace, Q);
    let redis = redis::Client::open(config.queue.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ZCARD").arg(key).query_async(&mut conn).await.unwrap()
}

/// A fetch claims as many tasks as asked in one call, each once, each attempt 1.
#[tokio::test]
async fn a_fetch_claims_a_batch() {
    for pair in pairs().await {
        let (c, _clock) = fresh_pair(&pair).await;
        let created = c.create_many((0..50).map(task).collect()).await.unwrap();
        let batch = c.fetch(Q, 32, Duration::from_secs(1)).await.unwrap();
        assert_eq!(batch.len(), 32, "{}", pair.name());
        let rest = c.fetch(Q, 32, Duration::from_secs(1)).await.unwrap();
        assert_eq!(rest.len(), 18, "{}", pair.name());
        let mut ids: Vec<i64> = batch.iter().chain(&rest).map(|m| m.task_id).collect();
        ids.sort_unstable();
        let expected: Vec<i64> = created.iter().map(|c| c.id).collect();
        assert_eq!(ids, expected, "{}", pair.name());
        assert!(batch.iter().chain(&rest).all(|m| m.attempt == 1));
        assert_eq!(c.stats().await.unwrap().processing, 50);
        drop_table(&c).await;
    }
}

/// A row whose payload cannot be read fails with its reason; the rest of its batch is
/// delivered.
#[tokio::test]
async fn an_unreadable_row_fails_alone() {
    for pair in pairs().await {
        let (c, _clock) = fresh_pair(&pair).await;
        let ids: Vec<i64> = c
            .create_many((0..3).map(task).collect())
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        let sql = format!(
            "UPDATE {} SET payload = '{{\"i\": [[[' WHERE id = {}",
            c.store().table(),
            ids[1]
        );
        c.store().pool().execute(AssertSqlSafe(sql)).await.unwrap();
        let mut got = c.fetch(Q, 3, Duration::from_secs(1)).await.unwrap();
        if got.len() < 2 {
            got.extend(c.fetch(Q, 3, Duration::from_secs(1)).await.unwrap());
        }
        let mut delivered: Vec<i64> = got.iter().map(|m| m.task_id).collect();
        delivered.sort_unstable();
        assert_eq!(delivered, vec![ids[0], ids[2]], "{}", pair.name());
        let bad = c.get(ids[1]).await;
        // `get` cannot parse it either; the row says why it failed.
        assert!(bad.is_err(), "{}", pair.name());
        let sql = format!(
            "SELECT status, last_error FROM {} WHERE id = {}",
            c.store().table(),
            ids[1]
        );
        let row = qtask_core::sqlx::query(AssertSqlSafe(sql))
            .fetch_one(c.store().pool())
            .await
            .unwrap();
        use qtask_core::sqlx::Row;
        assert_eq!(row.get::<i64, _>(0), 90, "{}", pair.name());
        assert!(row.get::<String, _>(1).contains("payload"), "{}", pair.name());
        drop_table(&c).await;
    }
}

/// The worker loop: a handler whose attempt went stale is counted as skipped, and the
/// newer attempt's outcome stands.
#[tokio::test]
async fn the_worker_counts_a_stale_attempt_as_skipped() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let gates = std::sync::Mutex::new(Some((started_tx, released)));
        let gates = std::sync::Arc::new(gates);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q).concurrency(1);
        let handler_gates = gates.clone();
        let running = tokio::spawn(worker.run(
            move |_m: Message| {
                let gate = handler_gates.lock().unwrap().take();
                async move {
                    if let Some((started, released)) = gate {
                        let _ = started.send(());
                        let _ = released.await;
                    }
                    Ok(())
                }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        c.sweep_once().await.unwrap();
        started.await.unwrap();
        // The first attempt hangs past its lease; the second is taken and finished here.
        expire(&c, &clock).await;
        let second = loop {
            if let Some(m) = c.pop(Q, Duration::from_millis(200)).await.unwrap() {
                break m;
            }
            c.sweep_once().await.unwrap();
        };
        assert_eq!((second.task_id, second.attempt), (id, 2), "{}", pair.name());
        c.fail_attempt(second.fence(), "second attempt failed")
            .await
            .unwrap();
        release.send(()).unwrap();
        // Give the first attempt's finish time to land (it must change nothing).
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!(
            (report.finished, report.skipped),
            (0, 1),
            "{}: {report:?}",
            pair.name()
        );
        let row = c.get(id).await.unwrap();
        assert_eq!(row.status, Status::Waiting, "{}", pair.name());
        assert_eq!(row.last_error.as_deref(), Some("second attempt failed"));
        drop_table(&c).await;
    }
}

/// PostgreSQL with the `db` queue: a task created due now sends a notification that
/// wakes waiting fetchers (on the table's channel, with the queue as payload); a
/// delayed one does not.
#[tokio::test]
async fn postgres_notifies_fetchers_of_new_tasks() {
    for pair in pairs().await {
        if pair.db.name != "postgres" || pair.carries_offers() {
            continue;
        }
        let (c, _clock) = fresh_pair(&pair).await;
        let mut listener = qtask_core::sqlx::postgres::PgListener::connect(&pair.db.url)
            .await
            .unwrap();
        listener
            .listen(&format!("{}_due", c.store().table()))
            .await
            .unwrap();
        c.create(task(1)).await.unwrap();
        c.delay(task(0), Duration::from_secs(60)).await.unwrap();
        let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        assert_eq!(note.payload(), Q);
        let more = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
        assert!(more.is_err(), "the delayed task sent none: {more:?}");
        drop_table(&c).await;
    }
}
