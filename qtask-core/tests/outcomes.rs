//! Handler outcomes and results on every database × queue pair: finish (with or
//! without a result), error, retry after a delay, cancel, fail now, a time limit;
//! stale outcomes change nothing; `result` waits, times out and reports ends.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{drop_table, fresh_pair, next, pairs};
use qtask_core::{Client, Error, Fenced, Message, NewTask, Outcome, Status, Worker};
use serde_json::{json, Value};

const Q: &str = "OUTCOMES:Q";
const KINDS: [&str; 6] = ["finish", "result", "error", "retry_after", "cancel", "fail_now"];

fn task(kind: &str) -> NewTask {
    NewTask::new("outcome", json!({ "do": kind }), Q)
        .timeout(Duration::from_secs(30))
        .max_count(3)
        .delete_deadline(Duration::from_secs(3600))
}

/// Polls (bounded) until `done` holds; the worker runs meanwhile.
async fn until(mut done: impl FnMut() -> bool) {
    common::eventually("the worker's handlers ran", || std::future::ready(done())).await;
}

#[tokio::test]
async fn each_outcome_ends_the_task_its_way() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, clock) = fresh_pair(&pair).await;
        let mut ids = HashMap::new();
        for kind in KINDS {
            ids.insert(kind, c.create(task(kind)).await.unwrap().id);
        }
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let handler_seen = seen.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q).concurrency(4);
        let running = tokio::spawn(worker.run(
            move |m: Message| {
                let kind = m.input["do"].as_str().unwrap().to_owned();
                *handler_seen.lock().unwrap().entry(kind.clone()).or_default() += 1;
                async move {
                    match kind.as_str() {
                        "finish" => Ok(Outcome::from(())),
                        "result" => Ok(json!({"sum": 3, "名": "任务"}).into()),
                        "error" => Err("boom".to_owned()),
                        "retry_after" => Ok(Outcome::retry_after(Duration::from_secs(3600))),
                        "cancel" => Ok(Outcome::cancel("no longer wanted")),
                        _ => Ok(Outcome::fail_now("bad input")),
                    }
                }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        until(|| seen.lock().unwrap().len() == KINDS.len()).await;
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!(
            (
                report.finished,
                report.failed,
                report.snoozed,
                report.cancelled,
                report.skipped
            ),
            (2, 2, 1, 1, 0),
            "{name}: {report:?}"
        );

        let row = |kind| {
            let c = c.clone();
            let id = ids[kind];
            async move { c.get(id).await.unwrap() }
        };
        assert_eq!(row("finish").await.status, Status::Finished, "{name}");
        assert_eq!(
            c.result(ids["finish"], Duration::ZERO).await.unwrap(),
            Value::Null
        );
        assert_eq!(
            c.result(ids["result"], Duration::ZERO).await.unwrap(),
            json!({"sum": 3, "名": "任务"}),
            "{name}"
        );

        let failed = row("error").await;
        assert_eq!(
            (failed.status, failed.last_error.as_deref()),
            (Status::Waiting, Some("boom")),
            "{name}"
        );

        let snoozed = row("retry_after").await;
        assert_eq!(
            (snoozed.status, snoozed.count, snoozed.max_count),
            (Status::Waiting, 1, 4),
            "{name}"
        );
        assert!(
            snoozed.next_at.unwrap() - snoozed.updated_at >= 3_599_000,
            "{name}: {snoozed:?}"
        );
        assert_eq!(snoozed.last_error, None);

        let cancelled = row("cancel").await;
        assert_eq!(
            (cancelled.status, cancelled.last_error.as_deref()),
            (Status::Cancelled, Some("no longer wanted")),
            "{name}"
        );
        let err = c.result(ids["cancel"], Duration::ZERO).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidState(m) if m.contains("no longer wanted")),
            "{err}"
        );

        let given_up = row("fail_now").await;
        assert_eq!(
            (given_up.status, given_up.count, given_up.last_error.as_deref()),
            (Status::Failed, 1, Some("bad input")),
            "{name}: attempts were left, none used"
        );
        let err = c.result(ids["fail_now"], Duration::ZERO).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidState(m) if m.contains("bad input")),
            "{err}"
        );

        // The snoozed task comes back after its delay, as attempt 2 (the number only
        // goes up), and its attempt was given back.
        clock.advance(Duration::from_secs(3601));
        let mut back = next(&c, Q).await;
        while back.task_id != ids["retry_after"] {
            c.finish_attempt(back.fence()).await.unwrap();
            back = next(&c, Q).await;
        }
        assert_eq!(back.attempt, 2, "{name}");
        drop_table(&c).await;
    }
}

/// The task `id` waits for its next attempt, `reason` kept as its last error.
async fn expect_retried(name: &str, c: &Client, id: i64, reason: &str) {
    let row = c.get(id).await.unwrap();
    assert_eq!(
        (row.status, row.last_error.as_deref()),
        (Status::Waiting, Some(reason)),
        "{name}"
    );
}

/// A handler that panics fails its attempt with the panic's text, to be retried like
/// an error; the worker goes on with the next task.
#[tokio::test]
async fn a_panicking_handler_fails_its_attempt_and_the_worker_goes_on() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        let panics = c.create(task("panic")).await.unwrap().id;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q);
        let running = tokio::spawn(worker.run(
            |m: Message| async move {
                if m.input["do"] == "panic" {
                    panic!("boom in the handler");
                }
                Ok(())
            },
            async move {
                let _ = stopped.await;
            },
        ));
        common::eventually("the panicking attempt failed", || {
            let c = c.clone();
            async move { c.get(panics).await.unwrap().last_error.is_some() }
        })
        .await;
        let after = c.create(task("finish")).await.unwrap().id;
        c.sweep_once().await.unwrap();
        common::eventually("the next task finished", || {
            let c = c.clone();
            async move { c.get(after).await.unwrap().status == Status::Finished }
        })
        .await;
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.failed, report.finished), (1, 1), "{name}: {report:?}");
        expect_retried(&name, &c, panics, "handler panicked: boom in the handler").await;
        drop_table(&c).await;
    }
}

/// A handler past the worker's time limit is dropped, and its attempt fails with the
/// reason, to be retried like an error.
#[tokio::test]
async fn a_time_limit_drops_the_handler_and_fails_the_attempt() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        let id = c.create(task("slow")).await.unwrap().id;
        let dropped = Arc::new(AtomicBool::new(false));
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let handler_dropped = dropped.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q).time_limit(Duration::from_millis(200));
        let running = tokio::spawn(worker.run(
            move |_m: Message| {
                let guard = SetOnDrop(handler_dropped.clone());
                async move {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    drop(guard);
                    Ok(())
                }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        until(|| dropped.load(Ordering::SeqCst)).await;
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.failed, report.finished), (1, 0), "{name}: {report:?}");
        expect_retried(&name, &c, id, "time limit of 0.2s exceeded").await;
        let zero = Worker::new(c.clone(), Q)
            .time_limit(Duration::ZERO)
            .run(|_m| async { Ok(()) }, async {})
            .await;
        assert!(matches!(zero, Err(Error::InvalidArgument(_))), "{zero:?}");
        drop_table(&c).await;
    }
}

/// A task's own time limit wins over the worker's: its handler is dropped and its
/// attempt fails with that limit, while a task without one runs under the worker's.
/// The limit travels with the message, from `NewTask` or the `TaskArgs` JSON.
#[tokio::test]
async fn a_task_s_own_time_limit_wins_over_the_worker_s() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        let zero = c.create(task("slow").time_limit(Duration::ZERO)).await;
        assert!(matches!(zero, Err(Error::InvalidArgument(_))), "{name}: {zero:?}");
        let (from_json, _) = qtask_core::TaskArgs::from_json(
            &json!({"name": "outcome", "input": {"do": "slow"}, "queue": Q, "time_limit": 0.2,
                    "delete_deadline": 3600.0})
            .to_string(),
            1 << 20,
        )
        .unwrap()
        .into_task()
        .unwrap();
        assert_eq!(
            from_json.options.time_limit,
            Some(Duration::from_millis(200)),
            "{name}"
        );
        let limited = c.create(from_json).await.unwrap().id;
        let free = c.create(task("quick")).await.unwrap().id;
        let seen: Arc<Mutex<HashMap<String, Option<Duration>>>> = Arc::default();
        let handler_seen = seen.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q)
            .concurrency(2)
            .time_limit(Duration::from_secs(30));
        let running = tokio::spawn(worker.run(
            move |m: Message| {
                let kind = m.input["do"].as_str().unwrap_or_default().to_owned();
                handler_seen.lock().unwrap().insert(kind.clone(), m.time_limit);
                async move {
                    let pause = if kind == "slow" { 60_000 } else { 300 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    Ok(())
                }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let c2 = c.clone();
        for _ in 0..500 {
            let failed = c2.get(limited).await.unwrap().last_error.is_some();
            let finished = c2.get(free).await.unwrap().status == Status::Finished;
            if failed && finished {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.failed, report.finished), (1, 1), "{name}: {report:?}");
        let row = c.get(limited).await.unwrap();
        assert_eq!(
            (row.status, row.last_error.as_deref()),
            (Status::Waiting, Some("time limit of 0.2s exceeded")),
            "{name}"
        );
        assert_eq!(c.get(free).await.unwrap().status, Status::Finished, "{name}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen["slow"], Some(Duration::from_millis(200)), "{name}");
        assert_eq!(seen["quick"], None, "{name}");
        drop_table(&c).await;
    }
}

/// Contract 7 for every outcome: one of an attempt that is no longer current is stale
/// and changes nothing.
#[tokio::test]
async fn stale_outcomes_change_nothing() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, clock) = fresh_pair(&pair).await;
        let id = c.create(task("any")).await.unwrap().id;
        let first = next(&c, Q).await;
        clock.advance(Duration::from_secs(31));
        let second = next(&c, Q).await;
        assert_eq!((second.task_id, second.attempt), (id, 2), "{name}");
        let before = c.get(id).await.unwrap();
        for outcome in [
            Outcome::from(json!(1)),
            Outcome::Retry("late".into()),
            Outcome::retry_after(Duration::from_secs(5)),
            Outcome::cancel("late"),
            Outcome::fail_now("late"),
        ] {
            assert_eq!(
                c.settle(first.fence(), &outcome).await.unwrap(),
                Fenced::Stale,
                "{name}: {outcome:?}"
            );
        }
        assert_eq!(c.get(id).await.unwrap(), before, "{name}");
        drop_table(&c).await;
    }
}

#[tokio::test]
async fn result_waits_times_out_and_reports() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        let id = c.create(task("any")).await.unwrap().id;
        assert!(
            matches!(c.result(id + 1000, Duration::ZERO).await, Err(Error::NotFound(_))),
            "{name}"
        );
        assert!(
            matches!(
                c.result(id, Duration::from_millis(50)).await,
                Err(Error::Timeout(_))
            ),
            "{name}"
        );
        let m = next(&c, Q).await;
        let settler = c.clone();
        let settled = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            settler.settle(m.fence(), &json!([1, "two"]).into()).await
        });
        assert_eq!(
            c.result(id, Duration::from_secs(10)).await.unwrap(),
            json!([1, "two"]),
            "{name}"
        );
        assert_eq!(settled.await.unwrap().unwrap(), Fenced::Current(Status::Finished));

        // A retry-after past the deadline fails the task for good, with the reason.
        let short = task("any").deadline(Duration::from_secs(60));
        let id = c.create(short).await.unwrap().id;
        let mut m = next(&c, Q).await;
        while m.task_id != id {
            m = next(&c, Q).await;
        }
        let done = c
            .settle(m.fence(), &Outcome::retry_after(Duration::from_secs(120)))
            .await
            .unwrap();
        assert_eq!(done, Fenced::Current(Status::Failed), "{name}");
        let row = c.get(id).await.unwrap();
        assert!(row.last_error.unwrap().contains("deadline"), "{name}");

        // A result larger than max_payload_bytes fails the task for good.
        let id = c.create(task("big")).await.unwrap().id;
        let mut m = next(&c, Q).await;
        while m.task_id != id {
            m = next(&c, Q).await;
        }
        let big = json!("x".repeat(c.config().max_payload_bytes + 1));
        let done = c.settle(m.fence(), &big.into()).await.unwrap();
        assert_eq!(done, Fenced::Current(Status::Failed), "{name}");
        drop_table(&c).await;
    }
}

/// A worker limited to some task names hands each of them to its handler with its
/// name and deadline; a task of another name never reaches the handler: its attempt
/// fails with "no handler" and it waits for a retry.
#[tokio::test]
async fn kinds_route_by_name_and_others_wait_for_a_retry() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        let kind = |task_name: &str| NewTask::new(task_name, json!({ "n": 1 }), Q).max_count(3);
        let email = c.create(kind("send_email")).await.unwrap().id;
        let charge = c.create(kind("charge")).await.unwrap().id;
        let unknown = c.create(kind("not_deployed_yet")).await.unwrap().id;
        let seen: Arc<Mutex<Vec<(i64, String, i64)>>> = Arc::default();
        let handler_seen = seen.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q)
            .concurrency(2)
            .kinds(["send_email", "charge"]);
        let running = tokio::spawn(worker.run(
            move |m: Message| {
                handler_seen
                    .lock()
                    .unwrap()
                    .push((m.task_id, m.name.clone(), m.deadline_at));
                async move { Ok::<_, String>(()) }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        until(|| seen.lock().unwrap().len() == 2).await;
        let mut unknown_row = c.get(unknown).await.unwrap();
        for _ in 0..500 {
            if unknown_row.last_error.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            unknown_row = c.get(unknown).await.unwrap();
        }
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.finished, report.failed), (2, 1), "{name}: {report:?}");
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        let deadline = c.get(email).await.unwrap().deadline_at;
        assert_eq!(
            seen,
            vec![
                (email, "send_email".to_owned(), deadline),
                (charge, "charge".to_owned(), deadline_of(&c, charge).await),
            ],
            "{name}"
        );
        assert_eq!(
            (unknown_row.status, unknown_row.count),
            (Status::Waiting, 1),
            "{name}"
        );
        let error = unknown_row.last_error.unwrap();
        assert!(
            error.contains("no handler for task name \"not_deployed_yet\"") && error.contains("charge"),
            "{name}: {error}"
        );
        drop_table(&c).await;
    }
}

async fn deadline_of(c: &Client, id: i64) -> i64 {
    c.get(id).await.unwrap().deadline_at
}
