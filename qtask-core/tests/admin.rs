//! Operators' calls on every database: list by filter with keyset pages, retry and
//! cancel one task or in bulk, pause and resume queues, counts per queue and minute.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{databases, fresh, Db};
use qtask_core::admin::{TaskFilter, BULK_BATCH};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Error, NewTask, Status, Worker};
use serde_json::json;

const Q: &str = "ADMIN:Q";

fn task(i: usize) -> NewTask {
    NewTask::new("admin test", json!({ "i": i }), Q).timeout(Duration::from_secs(30))
}

/// Drops the client's tables, and closes.
async fn drop_tables(client: &Client) {
    client.store().drop_tables().await.expect("drop");
    client.close().await;
}

/// Creates a task with one attempt and fails it for good with `error`.
async fn failed_task(c: &Client, i: usize, error: &str) -> i64 {
    let id = c.create(task(i).max_count(1)).await.unwrap().id;
    let m = c.pop(Q, Duration::ZERO).await.unwrap().expect("due task");
    assert_eq!(m.task_id, id);
    assert!(c.processing(id).await.unwrap());
    assert_eq!(c.fail(id, error).await.unwrap(), Status::Failed);
    id
}

async fn on_each_db<F, Fut>(scenario: F)
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in databases().await {
        println!("-- {}", db.name);
        scenario(db).await;
    }
}

#[tokio::test]
async fn failed_tasks_are_listed_with_their_errors_in_keyset_pages() {
    on_each_db(|db| async move {
        let (c, _) = fresh(&db).await;
        let mut failed = Vec::new();
        for i in 0..5 {
            failed.push(failed_task(&c, i, &format!("boom {i}")).await);
        }
        c.create(task(99)).await.unwrap(); // live: not listed
        let filter = TaskFilter::default().status(Status::Failed);
        assert_eq!(c.count_tasks(&filter).await.unwrap(), 5, "{}", db.name);
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = c.list_tasks(&filter, before, 2).await.unwrap();
            assert!(page.tasks.len() <= 2);
            for t in &page.tasks {
                assert_eq!(t.status, Status::Failed);
                assert_eq!(
                    t.last_error.as_deref(),
                    Some(format!("boom {}", t.input["i"]).as_str())
                );
            }
            seen.extend(page.tasks.iter().map(|t| t.id));
            match page.next_before_id {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        failed.reverse(); // newest first
        assert_eq!(seen, failed, "{}", db.name);
        // Filters combine: another queue and another name match nothing.
        let other = filter.clone().queue("OTHER");
        assert!(c.list_tasks(&other, None, 10).await.unwrap().tasks.is_empty());
        let named = TaskFilter::default().name("admin test");
        assert_eq!(c.count_tasks(&named).await.unwrap(), 6);
        assert!(matches!(
            c.list_tasks(&filter, None, 0).await,
            Err(Error::InvalidArgument(_))
        ));
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn retried_tasks_run_again_with_fresh_attempts_and_keep_their_last_error() {
    on_each_db(|db| async move {
        let (c, _) = fresh(&db).await;
        let a = failed_task(&c, 1, "first failure").await;
        let b = failed_task(&c, 2, "second failure").await;
        let live = c.create(task(3)).await.unwrap().id;

        // One by one: a live task cannot be retried, a missing one is not found.
        assert!(matches!(c.retry(live).await, Err(Error::InvalidState(_))));
        assert!(matches!(c.retry(i64::MAX - 1).await, Err(Error::NotFound(_))));
        c.retry(a).await.unwrap();
        let t = c.get(a).await.unwrap();
        assert_eq!(t.status, Status::Waiting);
        assert_eq!(t.last_error.as_deref(), Some("first failure"));
        assert_eq!(
            (t.count, t.max_count),
            (1, 2),
            "{}: attempts never go down",
            db.name
        );

        // In bulk, by status: b only (a is waiting again).
        let failed = TaskFilter::default().status(Status::Failed);
        assert_eq!(c.retry_matching(&failed).await.unwrap(), 1);
        assert_eq!(c.count_tasks(&failed).await.unwrap(), 0);
        assert!(matches!(
            c.retry_matching(&TaskFilter::default().status(Status::Waiting))
                .await,
            Err(Error::InvalidArgument(_))
        ));

        // They run again, as attempt 2 (attempt numbers stay unique), and finish.
        let mut attempts = Vec::new();
        while let Some(m) = c.pop(Q, Duration::ZERO).await.unwrap() {
            assert!(c.processing(m.task_id).await.unwrap());
            c.finish(m.task_id).await.unwrap();
            attempts.push((m.task_id, m.attempt));
        }
        attempts.sort();
        let mut expected = vec![(a, 2), (b, 2), (live, 1)];
        expected.sort();
        assert_eq!(attempts, expected, "{}", db.name);
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn a_task_past_its_deadline_gets_a_new_one_when_retried() {
    on_each_db(|db| async move {
        let (c, clock) = fresh(&db).await;
        let id = c
            .create(task(1).deadline(Duration::from_secs(60)))
            .await
            .unwrap()
            .id;
        clock.advance(Duration::from_secs(61));
        assert_eq!(c.sweep_once().await.unwrap().gave_up, 1);
        assert_eq!(c.get(id).await.unwrap().status, Status::Failed);
        c.retry(id).await.unwrap();
        let t = c.get(id).await.unwrap();
        assert!(t.deadline_at >= t.updated_at + 59_000, "{}: {t:?}", db.name);
        let m = c
            .pop(Q, Duration::ZERO)
            .await
            .unwrap()
            .expect("retried task is due");
        assert_eq!(m.task_id, id);
        assert!(c.processing(id).await.unwrap());
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn cancel_by_filter_touches_only_live_tasks_of_that_queue_in_batches() {
    on_each_db(|db| async move {
        let (c, _) = fresh(&db).await;
        let n = BULK_BATCH as usize * 2 + 7;
        let tasks: Vec<NewTask> = (0..n).map(task).collect();
        c.create_many(tasks).await.unwrap();
        let other = c
            .create(NewTask::new("other", json!({}), "ADMIN:OTHER"))
            .await
            .unwrap()
            .id;
        let done = c.create(task(0)).await.unwrap().id;
        c.finish(done).await.unwrap();

        let queue = TaskFilter::default().queue(Q);
        let first = c.cancel_batch(&queue, 0).await.unwrap();
        assert_eq!(first.changed, u64::from(BULK_BATCH));
        assert!(first.next_after_id.is_some());
        let rest = c.cancel_matching(&queue).await.unwrap();
        assert_eq!(rest as usize, n - BULK_BATCH as usize, "{}", db.name);
        assert_eq!(
            c.count_tasks(&queue.clone().status(Status::Cancelled))
                .await
                .unwrap() as usize,
            n
        );
        assert_eq!(c.get(other).await.unwrap().status, Status::Waiting);
        assert!(matches!(
            c.cancel_matching(&TaskFilter::default().status(Status::Finished))
                .await,
            Err(Error::InvalidArgument(_))
        ));
        // Cancelled ones can be retried in bulk too.
        let cancelled = TaskFilter::default().status(Status::Cancelled);
        assert_eq!(c.retry_matching(&cancelled).await.unwrap() as usize, n);
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn queues_show_counts_by_status_and_pause_flags() {
    on_each_db(|db| async move {
        let (c, _) = fresh(&db).await;
        failed_task(&c, 1, "x").await;
        c.create(task(2)).await.unwrap();
        let fin = c
            .create(task(3).delete_deadline(Duration::from_secs(3600)))
            .await
            .unwrap()
            .id;
        c.finish(fin).await.unwrap();
        c.pause_queue("ADMIN:EMPTY").await.unwrap();
        let queues = c.queues().await.unwrap();
        let names: Vec<&str> = queues.iter().map(|q| q.queue.as_str()).collect();
        assert_eq!(names, ["ADMIN:EMPTY", Q], "{}", db.name);
        assert!(queues[0].paused);
        let q = &queues[1];
        assert!(!q.paused);
        assert_eq!(
            (q.waiting, q.processing, q.finished, q.failed, q.cancelled),
            (1, 0, 1, 1, 0)
        );
        let rates = c.rates(5).await.unwrap();
        assert_eq!(rates.len(), 5);
        assert!(rates
            .windows(2)
            .all(|w| w[1].minute_at - w[0].minute_at == 60_000));
        let last = rates.last().unwrap();
        let total: (i64, i64) = rates
            .iter()
            .fold((0, 0), |(f, x), p| (f + p.finished, x + p.failed));
        assert_eq!(total, (1, 1), "{}: {rates:?}", db.name);
        assert!(last.minute_at % 60_000 == 0);
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn without_the_settings_table_nothing_is_paused() {
    on_each_db(|db| async move {
        // A program upgraded before `install` ran again: workers go on working.
        let (c, _) = fresh(&db).await;
        let queue_table = format!("{}queue", c.store().table().strip_suffix("task").unwrap());
        let sql = format!("DROP TABLE {queue_table}");
        c.store().pool().execute(AssertSqlSafe(sql)).await.unwrap();
        let id = c.create(task(1)).await.unwrap().id;
        assert!(c.store().paused_queues().await.unwrap().is_empty(), "{}", db.name);
        assert_eq!(
            c.pop(Q, Duration::ZERO).await.unwrap().map(|m| m.task_id),
            Some(id)
        );
        assert!(c.pause_queue(Q).await.is_err(), "pausing needs the table");
        c.install().await.unwrap();
        c.pause_queue(Q).await.unwrap();
        drop_tables(&c).await;
    })
    .await;
}

#[tokio::test]
async fn a_paused_queue_delivers_nothing_until_resumed() {
    on_each_db(|db| async move {
        let (c, _) = fresh(&db).await;
        c.pause_queue(Q).await.unwrap();
        let id = c.create(task(1)).await.unwrap().id;
        let other = c
            .create(NewTask::new("o", json!({}), "ADMIN:OTHER"))
            .await
            .unwrap()
            .id;
        assert!(c.pop(Q, Duration::ZERO).await.unwrap().is_none(), "{}", db.name);
        assert_eq!(
            c.pop("ADMIN:OTHER", Duration::ZERO)
                .await
                .unwrap()
                .map(|m| m.task_id),
            Some(other)
        );
        // Another process sees the pause in the table.
        let mut config = c.config().clone();
        config.sweeper = false;
        let second = Client::open(config).await.unwrap();
        assert!(second.pop(Q, Duration::ZERO).await.unwrap().is_none());
        assert_eq!(
            second.store().paused_queues().await.unwrap(),
            HashSet::from([Q.to_string()])
        );

        // A worker on the paused queue runs nothing; after the resume it runs the task.
        let (ran, mut ran_rx) = tokio::sync::mpsc::unbounded_channel();
        let worker = Worker::new(c.clone(), Q);
        let handler = move |m: qtask_core::Message| {
            let ran = ran.clone();
            async move {
                ran.send(m.task_id).unwrap();
                Ok(())
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(worker.run(handler, async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            ran_rx.try_recv().is_err(),
            "{}: a paused queue delivered",
            db.name
        );
        c.resume_queue(Q).await.unwrap();
        assert_eq!(ran_rx.recv().await, Some(id));
        let _ = stop.send(());
        let report = running.await.unwrap().unwrap();
        assert_eq!(report.finished, 1);
        assert_eq!(c.get(id).await.unwrap().status, Status::Finished);
        assert!(c.store().paused_queues().await.unwrap().is_empty());
        second.close().await;
        drop_tables(&c).await;
    })
    .await;
}
