//! The task table and its indexes, per dialect. Install never drops anything.
//!
//! Index use (checked with EXPLAIN in tests/explain.rs):
//! - `due`: the sweeper's claim and reaper (`namespace = ? AND next_at <= now`);
//!   finished, failed and cancelled rows have `next_at` NULL, so they never enter the range.
//! - `queue_due`: the `db` queue's pop (`namespace, queue, next_at`).
//! - `delete`: cleanup (`namespace = ? AND delete_at <= now`).
//! - `live_order`: unique (`namespace, queue, live_key`); `live_key` is the order number
//!   while the task is live and NULL after, so only live tasks are deduplicated.

use super::Dialect;

pub fn statements(dialect: Dialect, table: &str) -> Vec<String> {
    let columns = match dialect {
        Dialect::Sqlite => SQLITE_COLUMNS,
        Dialect::Postgres => POSTGRES_COLUMNS,
        Dialect::MySql => MYSQL_COLUMNS,
    };
    let indexes = [
        ("live_order", "UNIQUE", "namespace, queue, live_key"),
        ("due", "", "namespace, next_at"),
        ("queue_due", "", "namespace, queue, next_at"),
        ("delete", "", "namespace, delete_at"),
    ];
    match dialect {
        // MySQL has no CREATE INDEX IF NOT EXISTS; MariaDB and MySQL both take indexes inline.
        Dialect::MySql => {
            let inline: Vec<String> = indexes
                .iter()
                .map(|(name, unique, cols)| format!("{unique} KEY {table}_{name} ({cols})"))
                .collect();
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {table} ({columns}, {}) \
                 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                inline.join(", ")
            )]
        }
        _ => {
            let mut out = vec![format!("CREATE TABLE IF NOT EXISTS {table} ({columns})")];
            out.extend(indexes.iter().map(|(name, unique, cols)| {
                format!("CREATE {unique} INDEX IF NOT EXISTS {table}_{name} ON {table} ({cols})")
            }));
            out
        }
    }
}

const SQLITE_COLUMNS: &str = "\
    id INTEGER PRIMARY KEY AUTOINCREMENT, \
    namespace TEXT NOT NULL, \
    name TEXT NOT NULL, \
    queue TEXT NOT NULL, \
    payload TEXT NOT NULL, \
    order_no TEXT, \
    live_key TEXT, \
    status INTEGER NOT NULL, \
    timeout_ms INTEGER NOT NULL, \
    next_at INTEGER, \
    deadline_at INTEGER NOT NULL, \
    delete_at INTEGER NOT NULL, \
    delete_after_ms INTEGER NOT NULL, \
    max_count INTEGER NOT NULL, \
    dispatch_count INTEGER NOT NULL, \
    last_error TEXT, \
    created_at INTEGER NOT NULL, \
    updated_at INTEGER NOT NULL";

const POSTGRES_COLUMNS: &str = "\
    id BIGSERIAL PRIMARY KEY, \
    namespace TEXT NOT NULL, \
    name TEXT NOT NULL, \
    queue TEXT NOT NULL, \
    payload TEXT NOT NULL, \
    order_no TEXT, \
    live_key TEXT, \
    status BIGINT NOT NULL, \
    timeout_ms BIGINT NOT NULL, \
    next_at BIGINT, \
    deadline_at BIGINT NOT NULL, \
    delete_at BIGINT NOT NULL, \
    delete_after_ms BIGINT NOT NULL, \
    max_count BIGINT NOT NULL, \
    dispatch_count BIGINT NOT NULL, \
    last_error TEXT, \
    created_at BIGINT NOT NULL, \
    updated_at BIGINT NOT NULL";

const MYSQL_COLUMNS: &str = "\
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
    namespace VARCHAR(64) NOT NULL, \
    name VARCHAR(255) NOT NULL, \
    queue VARCHAR(191) NOT NULL, \
    payload LONGTEXT NOT NULL, \
    order_no VARCHAR(191), \
    live_key VARCHAR(191), \
    status BIGINT NOT NULL, \
    timeout_ms BIGINT NOT NULL, \
    next_at BIGINT, \
    deadline_at BIGINT NOT NULL, \
    delete_at BIGINT NOT NULL, \
    delete_after_ms BIGINT NOT NULL, \
    max_count BIGINT NOT NULL, \
    dispatch_count BIGINT NOT NULL, \
    last_error TEXT, \
    created_at BIGINT NOT NULL, \
    updated_at BIGINT NOT NULL";
