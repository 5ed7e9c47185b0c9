//! Install migrates a table made by an older release: missing columns and indexes are
//! added, rows are kept, and installing again (even twice at once) changes nothing.

mod common;

use common::{config, databases, drop_table, unique_prefix};
use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Clock, NewTask, QueueLimits, Status};
use serde_json::json;

#[tokio::test]
async fn install_adds_missing_columns_and_keeps_rows() {
    for db in databases().await {
        let clock = Clock::database();
        let prefix = unique_prefix();
        let c = Client::open(config(&db, &prefix, &clock)).await.unwrap();
        c.install().await.unwrap();
        let id = c
            .create(NewTask::new("old", json!({"n": 1}), "Q").order_no("A-1"))
            .await
            .unwrap()
            .id;
        // The table as an older release made it: without `priority` (nor its index).
        let table = c.store().table().to_string();
        let index = format!("{table}_queue_priority_due");
        let drop_index = match db.name {
            "mariadb" => format!("DROP INDEX {index} ON {table}"),
            _ => format!("DROP INDEX {index}"),
        };
        let pool = c.store().pool();
        pool.execute(AssertSqlSafe(drop_index)).await.unwrap();
        pool.execute(AssertSqlSafe(format!("ALTER TABLE {table} DROP COLUMN priority")))
            .await
            .unwrap();
        assert!(c.get(id).await.is_err(), "{}: the column is gone", db.name);
        let due = format!("{table}_due");
        let live_order = format!("{table}_live_order");
        let status = format!("{table}_status");
        if db.name != "mariadb" {
            // Before partial indexes, `due` and `live_order` held every row; before it
            // held ended rows only, `status` did too.
            for (index, create) in [
                (
                    &due,
                    format!("CREATE INDEX {due} ON {table} (namespace, next_at)"),
                ),
                (
                    &live_order,
                    format!("CREATE UNIQUE INDEX {live_order} ON {table} (namespace, queue, live_key)"),
                ),
                (
                    &status,
                    format!("CREATE INDEX {status} ON {table} (namespace, status, id)"),
                ),
            ] {
                pool.execute(AssertSqlSafe(format!("DROP INDEX {index}")))
                    .await
                    .unwrap();
                pool.execute(AssertSqlSafe(create)).await.unwrap();
            }
            assert!(!index_sql(&c, db.name, &due).await.contains("WHERE"));
        }
        // Older releases also made `queue_due`, which install now drops.
        let queue_due = format!("{table}_queue_due");
        pool.execute(AssertSqlSafe(format!(
            "CREATE INDEX {queue_due} ON {table} (namespace, queue, next_at)"
        )))
        .await
        .unwrap();
        // The settings table as the release before limits made it.
        let queue_table = format!("{}queue", table.strip_suffix("task").unwrap());
        pool.execute(AssertSqlSafe(format!(
            "ALTER TABLE {queue_table} DROP COLUMN max_per_second"
        )))
        .await
        .unwrap();
        // Until install runs again, pause flags still read (limits are then ignored).
        c.pause_queue("Q").await.unwrap();
        assert!(c.queues().await.unwrap()[0].paused, "{}", db.name);

        // Two installers at once: one adds the column, the other finds it there.
        let other = Client::open(config(&db, &prefix, &clock)).await.unwrap();
        let (a, b) = tokio::join!(c.install(), other.install());
        a.unwrap();
        b.unwrap();
        other.close().await;
        c.install().await.unwrap();

        let task = c.get(id).await.unwrap();
        assert_eq!(task.name, "old", "{}", db.name);
        assert_eq!(task.input, json!({"n": 1}), "{}", db.name);
        assert_eq!(task.order_no.as_deref(), Some("A-1"), "{}", db.name);
        assert_eq!(task.status, Status::Waiting, "{}", db.name);
        assert_eq!(task.priority, 0, "{}: old rows get the default", db.name);
        // The order number still deduplicates, and new rows are written with the column.
        let again = c
            .create(NewTask::new("old", json!({"n": 2}), "Q").order_no("A-1"))
            .await
            .unwrap();
        assert!(again.existing && again.id == id, "{}: {again:?}", db.name);
        let limits = QueueLimits {
            max_processing: None,
            max_per_second: Some(2.5),
        };
        c.set_queue_limits("Q", limits).await.unwrap();
        let queues = c.queues().await.unwrap();
        assert!(
            queues[0].paused && queues[0].limits == limits,
            "{}: {queues:?}",
            db.name
        );
        let indexes = index_names(&c, db.name).await;
        assert!(
            indexes.iter().any(|i| i.eq_ignore_ascii_case(&index)),
            "{}: {indexes:?}",
            db.name
        );
        assert!(
            !indexes.iter().any(|i| i.eq_ignore_ascii_case(&queue_due)),
            "{}: {indexes:?}",
            db.name
        );
        if db.name != "mariadb" {
            let sql = index_sql(&c, db.name, &due).await;
            assert!(
                sql.contains("WHERE") && sql.contains("next_at IS NOT NULL"),
                "{}: {sql}",
                db.name
            );
            let sql = index_sql(&c, db.name, &live_order).await;
            assert!(
                sql.contains("UNIQUE") && sql.contains("live_key IS NOT NULL"),
                "{}: {sql}",
                db.name
            );
            let sql = index_sql(&c, db.name, &status).await;
            assert!(
                sql.contains("WHERE") && sql.contains("next_at IS NULL"),
                "{}: {sql}",
                db.name
            );
        }
        drop_table(&c).await;
    }
}

/// An index's definition (PostgreSQL, SQLite).
async fn index_sql(c: &Client, db: &str, index: &str) -> String {
    let sql = match db {
        "sqlite" => format!("SELECT sql FROM sqlite_master WHERE name = '{index}'"),
        _ => format!("SELECT indexdef FROM pg_indexes WHERE indexname = lower('{index}')"),
    };
    qtask_core::sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
        .fetch_one(c.store().pool())
        .await
        .unwrap()
}

async fn index_names(c: &Client, db: &str) -> Vec<String> {
    let table = c.store().table();
    let sql = match db {
        "sqlite" => format!("SELECT name FROM pragma_index_list('{table}')"),
        "postgres" => format!("SELECT indexname::text FROM pg_indexes WHERE tablename = lower('{table}')"),
        _ => format!(
            "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
    };
    qtask_core::sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
        .fetch_all(c.store().pool())
        .await
        .unwrap()
}
