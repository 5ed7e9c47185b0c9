//! The worker claims ahead: with short handlers, a claim also takes a task for each
//! slot expected to free up while it is in flight. Such a task waits for a slot with
//! its lease renewed, so nobody else can claim it meanwhile, and it runs once, in the
//! attempt its claim began.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{drop_table, eventually, fresh_pair, pairs, pop_due};
use qtask_core::{Client, Message, NewTask, Status, Worker};
use serde_json::json;
use tokio::sync::{mpsc, Notify};

const Q: &str = "Ahead:Q";
/// The lease of the task claimed ahead: it waits for a slot a lease and a half. Each
/// renewal (at half the lease) has a second to commit: with 1 s leases a loaded CI
/// machine once missed one.
const LEASE: Duration = Duration::from_secs(2);

fn task(name: &str) -> NewTask {
    NewTask::new(name, json!({}), Q)
        .timeout(LEASE)
        .delete_deadline(Duration::from_secs(3600))
}

async fn wait_for_status(pair: &str, client: &Client, id: i64, status: Status) {
    let what = format!("{pair}: task {id} becomes {status:?}");
    eventually(what, || async { client.get(id).await.unwrap().status == status }).await;
}

#[tokio::test]
async fn a_task_claimed_ahead_keeps_its_lease_while_it_waits_for_a_slot() {
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        // "slow" handlers hold their slot until released; the others return at once.
        let (started_tx, mut started) = mpsc::unbounded_channel::<i64>();
        let release = Arc::new(Notify::new());
        let released = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = {
            let (release, released) = (release.clone(), released.clone());
            move |m: Message| {
                let (started, release, released) = (started_tx.clone(), release.clone(), released.clone());
                async move {
                    if m.name == "slow" {
                        let _ = started.send(m.task_id);
                        while !released.load(Ordering::SeqCst) {
                            let _ = tokio::time::timeout(Duration::from_millis(50), release.notified()).await;
                        }
                    }
                    Ok(())
                }
            }
        };
        let worker = Worker::new(c.clone(), Q).concurrency(2);
        let running = tokio::spawn(worker.run(handler, async move {
            let _ = stopped.await;
        }));
        // Short handlers first: the worker learns that a handler ends long before a claim returns.
        let quick: Vec<i64> = c
            .create_many((0..6).map(|_| task("quick")).collect())
            .await
            .unwrap()
            .into_iter()
            .map(|created| created.id)
            .collect();
        c.sweep_once().await.unwrap();
        for id in &quick {
            wait_for_status(&name, &c, *id, Status::Finished).await;
        }
        // Two slow tasks take both slots; the worker, having learnt that handlers are
        // short, still claims the next task offered, ahead of a free slot.
        let slow: Vec<i64> = c
            .create_many(vec![task("slow"), task("slow")])
            .await
            .unwrap()
            .into_iter()
            .map(|created| created.id)
            .collect();
        c.sweep_once().await.unwrap();
        let mut started_slow = vec![started.recv().await.unwrap(), started.recv().await.unwrap()];
        started_slow.sort();
        assert_eq!(started_slow, slow, "{name}");
        let ahead = c.create(task("ahead")).await.unwrap().id;
        c.sweep_once().await.unwrap();
        wait_for_status(&name, &c, ahead, Status::Processing).await;
        // Both slots are busy; the task claimed ahead waits past its lease.
        tokio::time::sleep(LEASE * 3 / 2).await;
        assert_eq!(
            pop_due(&pair, &c, Q, Duration::from_millis(200))
                .await
                .map(|m| m.task_id),
            None,
            "{name}: the task claimed ahead lost its lease while it waited"
        );
        released.store(true, Ordering::SeqCst);
        release.notify_waiters();
        wait_for_status(&name, &c, ahead, Status::Finished).await;
        stop.send(()).unwrap();
        let report = running.await.unwrap().unwrap();
        if (report.finished, report.skipped) != (9, 0) {
            // Which attempt went stale: a task claimed more than once lost a lease.
            let mut attempts = Vec::new();
            for id in quick.iter().chain(&slow).chain([&ahead]) {
                let task = c.get(*id).await.unwrap();
                attempts.push((*id, task.name, task.count));
            }
            panic!("{name}: {report:?}; (id, name, attempts): {attempts:?}");
        }
        assert_eq!(c.get(ahead).await.unwrap().count, 1, "{name}: one attempt");
        drop_table(&c).await;
    }
}

#[tokio::test]
async fn a_stop_mid_drain_runs_every_task_it_claimed_ahead() {
    const TASKS: usize = 300;
    for pair in pairs().await {
        let name = pair.name();
        let (c, _clock) = fresh_pair(&pair).await;
        c.create_many((0..TASKS).map(|_| task("quick")).collect())
            .await
            .unwrap();
        c.sweep_once().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(Notify::new());
        let handler = {
            let (calls, enough) = (calls.clone(), enough.clone());
            move |_m: Message| {
                let (calls, enough) = (calls.clone(), enough.clone());
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) + 1 == 40 {
                        enough.notify_one();
                    }
                    Ok(())
                }
            }
        };
        // Short handlers: by the 40th call the worker claims far ahead of its 2 slots.
        let report = Worker::new(c.clone(), Q)
            .concurrency(2)
            .run(handler, async move { enough.notified().await })
            .await
            .unwrap();
        let stats = c.stats().await.unwrap();
        let ran = calls.load(Ordering::SeqCst);
        assert_eq!(
            stats.processing, 0,
            "{name}: a claimed task was left unfinished: {stats:?}"
        );
        assert_eq!(report.finished as usize, ran, "{name}: {report:?}");
        assert_eq!(stats.finished as usize, ran, "{name}: {stats:?}");
        assert_eq!(stats.waiting as usize, TASKS - ran, "{name}: {stats:?}");
        drop_table(&c).await;
    }
}
