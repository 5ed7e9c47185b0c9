//! The hot statements stay on their indexes in a large table (checked with EXPLAIN).
//! QTASK_EXPLAIN_DOUBLINGS=17 grows the table to about a million rows.

mod common;

use std::time::Duration;

use common::{databases, drop_table, fresh};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::NewTask;
use serde_json::json;

const COLUMNS: &str = "namespace, name, queue, payload, order_no, live_key, status, timeout_ms, next_at, \
    deadline_at, delete_at, delete_after_ms, max_count, dispatch_count, last_error, created_at, updated_at, \
    priority";

#[tokio::test]
async fn hot_statements_use_indexes_in_a_large_table() {
    for db in databases().await {
        let (c, _) = fresh(&db).await;
        let table = c.store().table().to_string();
        // A realistic mix, doubled until the table is large: delayed live rows of mixed
        // priorities on the popped queue and on others, and finished rows kept for a day.
        // Then one due row.
        for i in 0..4 {
            let queue = if i % 2 == 0 { "ORDER:BIND" } else { "OTHER" };
            c.delay(
                NewTask::new("t", json!({"i": i}), queue).priority(i - 1),
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
            let kept =
                NewTask::new("t", json!({"i": i}), "ORDER:BIND").delete_deadline(Duration::from_secs(86_400));
            let id = c.create(kept).await.unwrap().id;
            c.finish(id).await.unwrap();
        }
        let pool = c.store().pool();
        let doublings: u32 = std::env::var("QTASK_EXPLAIN_DOUBLINGS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12);
        for _ in 0..doublings {
            let sql = format!("INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM {table}");
            pool.execute(AssertSqlSafe(sql)).await.unwrap();
        }
        c.create(NewTask::new("t", json!({}), "ORDER:BIND"))
            .await
            .unwrap();
        let analyze = match db.name {
            "sqlite" => "ANALYZE".to_string(),
            "mariadb" => format!("ANALYZE TABLE {table}"),
            _ => format!("ANALYZE {table}"),
        };
        pool.execute(AssertSqlSafe(analyze)).await.unwrap();
        let stats = c.stats().await.unwrap();
        assert!(
            stats.waiting > 15_000 && stats.finished > 15_000,
            "{}: {stats:?}",
            db.name
        );
        for plan in c.store().explain().await.unwrap() {
            println!("{} {}: {:?}\n{}", db.name, plan.statement, plan.index, plan.text);
            assert!(
                !plan.full_scan,
                "{} {} scans the table:\n{}",
                db.name, plan.statement, plan.text
            );
            // Both `due` indexes bound the scan by next_at <= now (MariaDB may pick either for pop).
            let expected = match plan.statement {
                "cleanup" => "_task_delete",
                "list_failed" => "_task_status",
                _ => "due",
            };
            if db.name == "sqlite" && plan.statement == "pop" {
                // One priority level at a time (found by a subquery, itself an index
                // seek): a range, not a walk over rows not yet due.
                assert!(
                    plan.text.contains("priority=? AND next_at<"),
                    "sqlite pop:\n{}",
                    plan.text
                );
                assert!(
                    plan.text.contains("SCALAR SUBQUERY"),
                    "sqlite pop:\n{}",
                    plan.text
                );
            }
            let index = plan.index.clone().unwrap_or_default();
            assert!(
                index.ends_with(expected),
                "{} {} uses {index:?}:\n{}",
                db.name,
                plan.statement,
                plan.text
            );
        }
        drop_table(&c).await;
    }
}
