//! DESIGN.md's contract on every database × queue pair (SQLite, PostgreSQL, MariaDB
//! × the `db` queue and Redis). Where a step differs by queue the tests branch on
//! `pair.carries_offers()`: Redis hands out only what a create or a sweep offered, so
//! a task that became due again (a lease ran out, a backoff or a delay passed) is
//! swept before it is popped; the `db` queue's pop claims due rows by itself.
//! Time is driven by each test's clock (an offset on the database's clock), not sleeps.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{drop_table, fresh_pair, pairs, pop_due};
use qtask_core::{Client, Error, Fenced, NewTask, Status};
use serde_json::json;

const NO_WAIT: Duration = Duration::ZERO;
/// Where a message is expected, pop waits a little: InnoDB's SKIP LOCKED may pass over
/// a row for a moment right after another transaction committed it.
const WAIT: Duration = Duration::from_secs(2);

const Q: &str = "ORDER:BIND";

fn task(n: i64) -> NewTask {
    NewTask::new("订单绑定任务", json!({"order": n}), Q).timeout(Duration::from_secs(60))
}

#[tokio::test]
async fn full_cycle_delivers_input_with_task_id_and_attempt() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let created = c.create(task(7)).await.unwrap();
        assert!(created.dispatched && !created.existing, "{}", pair.name());
        let m = pop_due(&pair, &c, Q, WAIT).await.expect("message");
        assert_eq!(
            m.to_json(),
            json!({"order": 7, "task_id": created.id, "attempt": 1}),
            "{}",
            pair.name()
        );
        assert!(c.processing(m.task_id).await.unwrap());
        assert_eq!(c.get(m.task_id).await.unwrap().status, Status::Processing);
        let lease = c.processing_lease(m.task_id).await.unwrap();
        assert_eq!(
            lease,
            Some(Duration::from_secs(60)),
            "{}: the lease is the task's timeout",
            pair.name()
        );
        c.finish(m.task_id).await.unwrap();
        assert_eq!(c.get(m.task_id).await.unwrap().status, Status::Finished);
        assert!(pop_due(&pair, &c, Q, NO_WAIT).await.is_none(), "{}", pair.name());
        drop_table(&c).await;
    }
}

/// Contract 1: an unfinished task comes back after its timeout, and only then.
#[tokio::test]
async fn unfinished_task_is_dispatched_again_after_its_timeout() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        let first = pop_due(&pair, &c, Q, WAIT).await.unwrap();
        assert!(c.processing(id).await.unwrap());
        clock.advance(Duration::from_secs(59));
        assert!(
            pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
            "{}: leased",
            pair.name()
        );
        clock.advance(Duration::from_secs(2));
        let second = pop_due(&pair, &c, Q, WAIT).await.expect("re-dispatch");
        assert_eq!(
            (second.task_id, first.attempt, second.attempt),
            (id, 1, 2),
            "{}",
            pair.name()
        );
        assert_eq!(c.stats().await.unwrap().redispatched, 1);
        drop_table(&c).await;
    }
}

/// `processing` again extends the lease: a long job needs no special timeout.
#[tokio::test]
async fn processing_again_extends_the_lease() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        pop_due(&pair, &c, Q, WAIT).await.unwrap();
        clock.advance(Duration::from_secs(50));
        assert!(c.processing(id).await.unwrap());
        clock.advance(Duration::from_secs(50));
        assert!(pop_due(&pair, &c, Q, NO_WAIT).await.is_none(), "{}", pair.name());
        drop_table(&c).await;
    }
}

/// Contract 2: finished, failed and cancelled tasks are never dispatched again,
/// and `processing` tells a holder of a stale duplicate to skip.
#[tokio::test]
async fn ended_tasks_are_never_dispatched_and_processing_refuses_them() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let finished = c
            .create(task(1).delete_deadline(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id;
        let cancelled = c.create(task(2)).await.unwrap().id;
        let failed = c.create(task(3).max_count(1)).await.unwrap().id;
        let mut popped = HashSet::new();
        for _ in 0..3 {
            popped.insert(pop_due(&pair, &c, Q, WAIT).await.expect("dispatch").task_id);
        }
        assert_eq!(popped.len(), 3, "{}", pair.name());
        c.finish(finished).await.unwrap();
        c.cancel(cancelled).await.unwrap();
        clock.advance(Duration::from_secs(61));
        assert_eq!(c.sweep_once().await.unwrap().gave_up, 1, "{}", pair.name());
        assert_eq!(c.get(failed).await.unwrap().status, Status::Failed);
        clock.advance(Duration::from_secs(600));
        assert!(pop_due(&pair, &c, Q, NO_WAIT).await.is_none(), "{}", pair.name());
        for id in [finished, cancelled, failed] {
            assert!(!c.processing(id).await.unwrap(), "{}: task {id}", pair.name());
        }
        if pair.carries_offers() {
            // A stale duplicate of each ended task's offer is taken and dropped: the
            // claim refuses it, so no worker is handed the task.
            for id in [finished, cancelled, failed] {
                common::offer_copy(&c, Q, id).await;
            }
            assert!(
                c.pop(Q, Duration::from_millis(200)).await.unwrap().is_none(),
                "{}: a stale offer was handed out",
                pair.name()
            );
        }
        assert!(
            !c.processing(987_654_321).await.unwrap(),
            "a deleted task is skipped too"
        );
        assert!(matches!(c.finish(cancelled).await, Err(Error::InvalidState(_))));
        assert!(matches!(c.cancel(finished).await, Err(Error::InvalidState(_))));
        assert!(matches!(c.finish(987_654_321).await, Err(Error::NotFound(_))));
        c.finish(finished).await.expect("finishing twice is fine");
        drop_table(&c).await;
    }
}

/// Contract 4: at most max_count dispatches, then failed with the reason kept.
#[tokio::test]
async fn max_count_ends_in_failed_with_reason() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1).max_count(2)).await.unwrap().id;
        for attempt in 1..=2 {
            let m = pop_due(&pair, &c, Q, WAIT).await.expect("dispatch");
            assert_eq!(m.attempt, attempt);
            clock.advance(Duration::from_secs(61));
        }
        assert!(
            pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
            "{}: third dispatch",
            pair.name()
        );
        c.sweep_once().await.unwrap();
        let t = c.get(id).await.unwrap();
        assert_eq!((t.status, t.count), (Status::Failed, 2), "{}", pair.name());
        assert!(t.last_error.unwrap().contains("max_count"));
        drop_table(&c).await;
    }
}

/// Contract 4: never dispatched after its deadline, then failed with the reason and
/// the worker's last error kept.
#[tokio::test]
async fn deadline_ends_in_failed_and_keeps_the_last_error() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c
            .create(
                task(1)
                    .timeout(Duration::from_secs(5))
                    .deadline(Duration::from_secs(8)),
            )
            .await
            .unwrap()
            .id;
        pop_due(&pair, &c, Q, WAIT).await.unwrap();
        assert!(c.processing(id).await.unwrap());
        assert_eq!(
            c.fail(id, "payment gateway said no").await.unwrap(),
            Status::Waiting
        );
        clock.advance(Duration::from_secs(9));
        assert!(!c.processing(id).await.unwrap(), "{}: past deadline", pair.name());
        assert!(c.pop(Q, NO_WAIT).await.unwrap().is_none(), "{}", pair.name());
        assert_eq!(c.sweep_once().await.unwrap().gave_up, 1, "{}", pair.name());
        assert!(
            pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
            "{}: dispatched after its deadline",
            pair.name()
        );
        let t = c.get(id).await.unwrap();
        assert_eq!(t.status, Status::Failed);
        let reason = t.last_error.unwrap();
        assert!(
            reason.contains("deadline") && reason.contains("payment gateway said no"),
            "{reason}"
        );
        drop_table(&c).await;
    }
}

/// Contract 7: a worker paused past its lease holds a stale attempt; its finish, fail
/// and renewal are reported stale and neither end nor re-queue the newer attempt.
#[tokio::test]
async fn a_stale_attempt_cannot_end_or_requeue_the_newer_one() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        let paused = pop_due(&pair, &c, Q, WAIT).await.expect("first attempt");
        clock.advance(Duration::from_secs(61));
        let newer = pop_due(&pair, &c, Q, WAIT).await.expect("second attempt");
        assert_eq!((newer.task_id, newer.attempt), (id, 2), "{}", pair.name());
        let old = paused.fence();
        assert_eq!(
            c.finish_attempt(old).await.unwrap(),
            Fenced::Stale,
            "{}",
            pair.name()
        );
        assert_eq!(c.fail_attempt(old, "late").await.unwrap(), Fenced::Stale);
        assert_eq!(c.renew(old).await.unwrap(), Fenced::Stale);
        let row = c.get(id).await.unwrap();
        assert_eq!(
            (row.status, row.count),
            (Status::Processing, 2),
            "{}",
            pair.name()
        );
        assert!(
            pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
            "{}: re-queued",
            pair.name()
        );
        assert_eq!(
            c.finish_attempt(newer.fence()).await.unwrap(),
            Fenced::Current(())
        );
        assert_eq!(c.get(id).await.unwrap().status, Status::Finished);
        drop_table(&c).await;
    }
}

/// `fail` retries after a backoff that doubles per attempt.
#[tokio::test]
async fn fail_retries_with_growing_backoff() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        for (attempt, backoff) in [(1, 1), (2, 2), (3, 4)] {
            let m = pop_due(&pair, &c, Q, WAIT).await;
            let t = c.get(id).await.unwrap();
            let m = m.unwrap_or_else(|| panic!("{}: attempt {attempt} not dispatched: {t:?}", pair.name()));
            assert_eq!(m.attempt, attempt, "{}", pair.name());
            assert_eq!(c.fail(id, "boom").await.unwrap(), Status::Waiting);
            clock.advance(Duration::from_millis(backoff * 1000 - 300));
            assert!(
                pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
                "{}: early retry",
                pair.name()
            );
            clock.advance(Duration::from_millis(backoff * 100 + 400));
        }
        assert_eq!(c.get(id).await.unwrap().last_error.as_deref(), Some("boom"));
        drop_table(&c).await;
    }
}

/// Contract 5: a delayed task is not dispatched before its delay, and is right after.
#[tokio::test]
async fn delayed_task_is_not_dispatched_early() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let created = c.delay(task(1), Duration::from_secs(60)).await.unwrap();
        assert!(!created.dispatched);
        assert!(pop_due(&pair, &c, Q, NO_WAIT).await.is_none());
        clock.advance(Duration::from_secs(59));
        assert!(
            pop_due(&pair, &c, Q, NO_WAIT).await.is_none(),
            "{}: early",
            pair.name()
        );
        clock.advance(Duration::from_secs(2));
        let m = pop_due(&pair, &c, Q, WAIT).await.expect("due");
        assert_eq!((m.task_id, m.attempt), (created.id, 1));
        drop_table(&c).await;
    }
}

/// Contract 6: cleanup deletes only rows whose delete_at has passed.
#[tokio::test]
async fn cleanup_deletes_only_expired_rows() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let now = c.create(task(1)).await.unwrap().id;
        let later = c
            .create(task(2).delete_deadline(Duration::from_secs(100)))
            .await
            .unwrap()
            .id;
        let live = c.create(task(3)).await.unwrap().id;
        let delayed = c.delay(task(4), Duration::from_secs(3600)).await.unwrap().id;
        for id in [now, later] {
            c.finish(id).await.unwrap();
        }
        assert_eq!(c.sweep_once().await.unwrap().deleted, 1, "{}", pair.name());
        assert!(matches!(c.get(now).await, Err(Error::NotFound(_))));
        clock.advance(Duration::from_secs(99));
        assert_eq!(c.sweep_once().await.unwrap().deleted, 0, "{}", pair.name());
        clock.advance(Duration::from_secs(2));
        assert_eq!(c.sweep_once().await.unwrap().deleted, 1, "{}", pair.name());
        for id in [live, delayed] {
            assert!(
                c.get(id).await.unwrap().status.is_live(),
                "{}: live task {id} kept",
                pair.name()
            );
        }
        drop_table(&c).await;
    }
}

/// A live task with the same queue and order number is returned instead of a second one.
#[tokio::test]
async fn order_no_deduplicates_live_tasks_only() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let first = c.create(task(1).order_no("8973097380045")).await.unwrap();
        let again = c.create(task(1).order_no("8973097380045")).await.unwrap();
        assert_eq!(
            (again.id, again.existing, again.dispatched),
            (first.id, true, false),
            "{}",
            pair.name()
        );
        let other_queue = c
            .create(NewTask::new("x", json!({}), "OTHER").order_no("8973097380045"))
            .await
            .unwrap();
        assert!(!other_queue.existing);
        c.finish(first.id).await.unwrap();
        let after = c.create(task(1).order_no("8973097380045")).await.unwrap();
        assert!(!after.existing && after.id != first.id, "{}", pair.name());
        let many = c
            .create_many(vec![task(5).order_no("A"), task(6).order_no("A"), task(7)])
            .await
            .unwrap();
        assert!(
            !many[0].existing && many[1].existing && many[1].id == many[0].id,
            "{}",
            pair.name()
        );
        drop_table(&c).await;
    }
}

/// Contract 8: bad input gets a typed error and writes nothing.
#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let big = "x".repeat(c.config().max_payload_bytes);
        let bad = [
            NewTask::new("", json!({}), "Q"),
            NewTask::new("   ", json!({}), "Q"),
            NewTask::new("x".repeat(256), json!({}), "Q"),
            NewTask::new("n", json!({}), ""),
            NewTask::new("n", json!({}), "has space"),
            NewTask::new("n", json!([1, 2]), "Q"),
            NewTask::new("n", json!("text"), "Q"),
            NewTask::new("n", json!({"task_id": 1}), "Q"),
            NewTask::new("n", json!({"big": big}), "Q"),
            NewTask::new("n", json!({}), "Q").timeout(Duration::ZERO),
            NewTask::new("n", json!({}), "Q").deadline(Duration::ZERO),
            NewTask::new("n", json!({}), "Q").max_count(0),
            NewTask::new("n", json!({}), "Q").order_no(""),
            NewTask::new("n", json!({}), "Q").timeout(Duration::from_secs(u64::MAX / 4)),
        ];
        for t in &bad {
            assert!(
                common::is_invalid(c.create(t.clone()).await),
                "{}: {t:?}",
                pair.name()
            );
        }
        assert!(common::is_invalid(
            c.delay(task(1).deadline(Duration::from_secs(10)), Duration::from_secs(10))
                .await
        ));
        let mut batch = vec![task(1), task(2)];
        batch.push(bad[0].clone());
        assert!(
            common::is_invalid(c.create_many(batch).await),
            "one bad task, nothing written"
        );
        assert!(common::is_invalid(c.pop("", NO_WAIT).await));
        let stats = c.stats().await.unwrap();
        assert_eq!(
            stats.waiting + stats.processing + stats.finished + stats.failed + stats.cancelled,
            0,
            "{}",
            pair.name()
        );
        drop_table(&c).await;
    }
}

/// Contract 8: a database or Redis that is down, an unknown URL or a bad config gets
/// a typed error. (Not per pair: these clients have no working pair.)
#[tokio::test]
async fn unreachable_or_unknown_databases_get_typed_errors() {
    use qtask_core::{Client, Config};
    for url in ["postgres://postgres@127.0.0.1:1/x", "mysql://root@127.0.0.1:1/x"] {
        let down = Config {
            db: url.into(),
            connect_timeout: Duration::from_millis(300),
            ..Config::default()
        };
        assert!(
            matches!(Client::open(down).await, Err(Error::Database(_))),
            "{url}"
        );
    }
    let unknown = Config {
        db: "oracle://scott@127.0.0.1/x".into(),
        ..Config::default()
    };
    assert!(matches!(
        Client::open(unknown).await,
        Err(Error::InvalidArgument(_))
    ));
    let queue = Config {
        queue: "kafka://x".into(),
        ..Config::default()
    };
    assert!(matches!(
        Client::open(queue).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Config::from_json(r#"{"dbb": "x"}"#),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Config::from_json(r#"{"sweep_interval": -1}"#),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Config::from_json("{not json"),
        Err(Error::InvalidArgument(_))
    ));
    // A Redis that is down: the row is still written (the sweeper offers it later),
    // and a pop gets a typed queue error.
    if let Some(db) = common::databases().await.into_iter().next() {
        let (c, _) =
            common::fresh_table(&db, &common::unique_prefix(), "redis://127.0.0.1:1/0", |_| {}).await;
        let created = c.create(task(1)).await.unwrap();
        assert!(!created.dispatched);
        assert_eq!(c.get(created.id).await.unwrap().status, Status::Waiting);
        assert!(matches!(c.pop(Q, NO_WAIT).await, Err(Error::Queue(_))));
        drop_table(&c).await;
    }
}

/// Install is idempotent, concurrent installs are safe, and install never drops data.
#[tokio::test]
async fn install_twice_and_concurrently_keeps_data() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let id = c.create(task(1)).await.unwrap().id;
        let mut others = Vec::new();
        for _ in 0..3 {
            let config = c.config().clone();
            others.push(tokio::spawn(async move {
                let other = qtask_core::Client::open(config).await.unwrap();
                other.install().await.unwrap();
                other.close().await;
            }));
        }
        for other in others {
            other.await.unwrap();
        }
        c.install().await.unwrap();
        assert_eq!(
            c.get(id).await.unwrap().id,
            id,
            "{}: install kept the task",
            pair.name()
        );
        drop_table(&c).await;
    }
}

/// Contract 3: several clients (processes, as far as qtask knows) sweeping and popping
/// the same due tasks at once never dispatch or claim one twice.
#[tokio::test]
async fn concurrent_sweeps_and_pops_never_share_a_task() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let n = 120;
        for i in 0..n {
            c.delay(task(i), Duration::from_secs(5)).await.unwrap();
        }
        clock.advance(Duration::from_secs(6));
        let mut clients = vec![c.clone()];
        for _ in 0..2 {
            clients.push(Client::open(c.config().clone()).await.unwrap());
        }
        let mut poppers = Vec::new();
        for (i, client) in clients.iter().cycle().take(6).enumerate() {
            let client = client.clone();
            let sweeps = pair.carries_offers() && i < clients.len();
            poppers.push(tokio::spawn(async move {
                let offered = if sweeps {
                    client.sweep_once().await.unwrap().dispatched
                } else {
                    0
                };
                let mut ids = Vec::new();
                while let Some(m) = client.pop(Q, Duration::from_millis(300)).await.unwrap() {
                    ids.push(m.task_id);
                }
                (offered, ids)
            }));
        }
        let (mut offered, mut all) = (0, Vec::new());
        for p in poppers {
            let (o, ids) = p.await.unwrap();
            offered += o;
            all.extend(ids);
        }
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(
            (all.len(), distinct.len()),
            (n as usize, n as usize),
            "{}",
            pair.name()
        );
        if pair.carries_offers() {
            assert_eq!(offered, n as u64, "{}: each due task offered once", pair.name());
        }
        for other in &clients[1..] {
            other.close().await;
        }
        drop_table(&c).await;
    }
}

/// The producer died between writing the row and dispatching it: the task still runs.
#[tokio::test]
async fn task_written_but_never_invoked_is_still_dispatched() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let mut tx = c.store().pool().begin().await.unwrap();
        let (created, invoke) = c.create_in(&mut tx, task(1)).await.unwrap();
        if pair.db.name != "sqlite" {
            // SQLite has one writer: a pop would wait for this transaction to end.
            // (No sweep here: on MariaDB a sweep waits for this transaction's locks.)
            let early = c.pop(Q, NO_WAIT).await.unwrap();
            assert!(early.is_none(), "{}: visible before commit", pair.name());
        }
        tx.commit().await.unwrap();
        drop(invoke);
        if pair.carries_offers() {
            // Nothing was offered: the sweep offers the row once its timeout has passed
            // (the bound of contract 1), not before.
            assert!(pop_due(&pair, &c, Q, NO_WAIT).await.is_none(), "{}", pair.name());
            clock.advance(Duration::from_secs(61));
            assert_eq!(c.sweep_once().await.unwrap().dispatched, 1, "{}", pair.name());
        }
        let m = c.pop(Q, WAIT).await.unwrap().expect("dispatched without invoke");
        assert_eq!(m.attempt, 1, "{}: the lost offer used no attempt", pair.name());
        assert_eq!(m.task_id, created.id);
        let mut tx = c.store().pool().begin().await.unwrap();
        let (rolled_back, _invoke) = c.create_in(&mut tx, task(2)).await.unwrap();
        tx.rollback().await.unwrap();
        assert!(
            matches!(c.get(rolled_back.id).await, Err(Error::NotFound(_))),
            "{}",
            pair.name()
        );
        drop_table(&c).await;
    }
}

/// The background sweeper starts with the client, cleans up, and stops on close.
#[tokio::test]
async fn sweeper_runs_in_the_background_and_stops_on_close() {
    for pair in pairs().await {
        let (c, _) = common::fresh_table(&pair.db, &common::unique_prefix(), &pair.queue, |config| {
            config.sweeper = true;
            config.sweep_interval = Duration::from_millis(100);
        })
        .await;
        let id = c.create(task(1)).await.unwrap().id;
        c.finish(id).await.unwrap();
        let mut deleted = false;
        for _ in 0..100 {
            if matches!(c.get(id).await, Err(Error::NotFound(_))) {
                deleted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(deleted, "{}: background sweeper did not clean up", pair.name());
        assert_eq!(c.stats().await.unwrap().deleted, 1);
        drop_table(&c).await;
        c.close().await;
        assert!(matches!(c.stats().await, Err(Error::Closed)));
    }
}
