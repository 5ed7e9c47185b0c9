//! A failed lease renewal is tried again while the lease still runs: one failed write
//! (a dropped connection, a database blip) does not cost a running attempt its lease,
//! and the task a second run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{databases, drop_table, eventually, fresh};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Message, NewTask, Status, Worker};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

const Q: &str = "Renew:Q";
/// Renewed at half of it (1 s); the lease runs out at 2 s.
const LEASE: Duration = Duration::from_secs(2);
/// Every statement on the task table fails this long from the handler's start on.
const OUTAGE: Duration = Duration::from_millis(1100);
/// A renewal tried again at half the lease after the one that failed comes at 2 s or
/// later; one tried an eighth of the lease later lands by 1.25 s (1.5 s at worst).
const RENEWED_BY: Duration = Duration::from_millis(1850);

async fn rename(client: &Client, from: &str, to: &str) {
    let sql = format!("ALTER TABLE {from} RENAME TO {to}");
    client.store().pool().execute(AssertSqlSafe(sql)).await.unwrap();
}

#[tokio::test]
async fn a_failed_renewal_is_tried_again_before_the_lease_runs_out() {
    for db in databases().await {
        let (c, _clock) = fresh(&db).await;
        let task = NewTask::new("slow", json!({}), Q)
            .timeout(LEASE)
            .delete_deadline(Duration::from_secs(3600));
        let id = c.create(task).await.unwrap().id;
        let (started_tx, mut started) = mpsc::unbounded_channel::<Instant>();
        let release = Arc::new(Notify::new());
        let handler = {
            let release = release.clone();
            move |_: Message| {
                let (started, release) = (started_tx.clone(), release.clone());
                async move {
                    let _ = started.send(Instant::now());
                    release.notified().await;
                    Ok(())
                }
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let worker = Worker::new(c.clone(), Q).concurrency(1);
        let running = tokio::spawn(worker.run(handler, async move {
            let _ = stopped.await;
        }));
        let began = started.recv().await.expect("the handler starts");
        let leased_to = c
            .get(id)
            .await
            .unwrap()
            .next_at
            .expect("a running task has a lease");

        let table = c.store().table().to_string();
        let away = format!("{table}_away");
        rename(&c, &table, &away).await;
        tokio::time::sleep_until(began + OUTAGE).await;
        rename(&c, &away, &table).await;
        loop {
            let now_leased_to = c.get(id).await.unwrap().next_at.unwrap_or(0);
            if now_leased_to > leased_to {
                break;
            }
            assert!(
                began.elapsed() < RENEWED_BY,
                "{}: the lease was not renewed within {RENEWED_BY:?} of the start, after \
                 the renewal at half of it failed",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        release.notify_one();
        let what = format!("{}: task {id} finishes", db.name);
        eventually(what, || async {
            c.get(id).await.unwrap().status == Status::Finished
        })
        .await;
        let _ = stop.send(());
        let report = running.await.unwrap().unwrap();
        assert_eq!((report.finished, report.skipped), (1, 0), "{}", db.name);
        assert_eq!(c.get(id).await.unwrap().count, 1, "{}: one attempt", db.name);
        drop_table(&c).await;
    }
}
