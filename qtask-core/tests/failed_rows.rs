//! Issue 10, item 2: a failed row keeps its reason visible. The sweep that fails a task
//! never deletes it: failed rows stay at least 7 days (or `delete_deadline`, if longer)
//! after they ended.

mod common;

use std::time::Duration;

use common::{databases, drop_table, fresh};
use qtask_core::{NewTask, Status};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(2);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn task(n: i64) -> NewTask {
    NewTask::new("failed-rows", json!({ "n": n }), "FAILED:ROWS").timeout(Duration::from_secs(60))
}

/// With default options the deadline is 7 days, the same as the live rows' retention:
/// the reaper's sweep used to delete the row it had just failed.
#[tokio::test]
async fn a_task_failed_for_its_deadline_keeps_its_reason_after_the_sweep() {
    for db in databases().await {
        let (c, clock) = fresh(&db).await;
        let id = c.create(task(1)).await.unwrap().id;
        clock.advance(7 * DAY + Duration::from_secs(1));
        let report = c.sweep_once().await.unwrap();
        assert_eq!(report.gave_up, 1, "{}", db.name);
        let row = c.get(id).await.expect("the failed row is still there");
        assert_eq!(row.status, Status::Failed, "{}", db.name);
        let reason = row.last_error.unwrap_or_default();
        assert!(reason.contains("deadline passed"), "{}: {reason}", db.name);
        clock.advance(7 * DAY - Duration::from_secs(60));
        c.sweep_once().await.unwrap();
        assert!(
            c.get(id).await.is_ok(),
            "{}: kept 7 days after it failed",
            db.name
        );
        clock.advance(Duration::from_secs(120));
        assert_eq!(c.sweep_once().await.unwrap().deleted, 1, "{}", db.name);
        drop_table(&c).await;
    }
}

/// A failed attempt that ends the task late in its life, and an unreadable payload's
/// failure, keep the row too.
#[tokio::test]
async fn a_task_failed_by_its_last_attempt_keeps_its_reason_after_the_sweep() {
    for db in databases().await {
        let (c, clock) = fresh(&db).await;
        let id = c.create(task(2).max_count(1)).await.unwrap().id;
        clock.advance(7 * DAY - Duration::from_secs(10));
        let m = c.pop("FAILED:ROWS", WAIT).await.unwrap().expect("message");
        clock.advance(Duration::from_secs(20));
        let status = c.fail_attempt(m.fence(), "boom").await.unwrap();
        assert!(
            matches!(status, qtask_core::Fenced::Current(Status::Failed)),
            "{}",
            db.name
        );
        c.sweep_once().await.unwrap();
        let row = c.get(id).await.expect("the failed row is still there");
        assert_eq!(row.last_error.as_deref(), Some("boom"), "{}", db.name);
        drop_table(&c).await;
    }
}

/// A longer delete_deadline keeps a failed row longer than the floor.
#[tokio::test]
async fn a_longer_delete_deadline_keeps_a_failed_row_longer() {
    for db in databases().await {
        let (c, clock) = fresh(&db).await;
        let id = c
            .create(task(3).max_count(1).delete_deadline(30 * DAY))
            .await
            .unwrap()
            .id;
        let m = c.pop("FAILED:ROWS", WAIT).await.unwrap().expect("message");
        c.fail_attempt(m.fence(), "boom").await.unwrap();
        clock.advance(29 * DAY);
        assert_eq!(c.sweep_once().await.unwrap().deleted, 0, "{}", db.name);
        assert!(c.get(id).await.is_ok(), "{}", db.name);
        clock.advance(2 * DAY);
        assert_eq!(c.sweep_once().await.unwrap().deleted, 1, "{}", db.name);
        drop_table(&c).await;
    }
}
