//! The task table and its indexes, per dialect. Install never drops anything.
//!
//! Index use (checked with EXPLAIN in tests/explain.rs):
//! - `due`: the sweeper's claim and reaper (`namespace = ? AND next_at <= now`);
//!   finished, failed and cancelled rows have `next_at` NULL, so they never enter the range.
//! - `queue_due`: the `db` queue's pop (`namespace, queue, next_at`).
//! - `delete`: cleanup (`namespace = ? AND delete_at <= now`).
//! - `status`: operators' lists and bulk retry / cancel by status, in id order (admin.rs).
//! - `live_order`: unique (`namespace, queue, live_key`); `live_key` is the order number
//!   while the task is live and NULL after, so only live tasks are deduplicated.

use super::Dialect;

pub fn statements(dialect: Dialect, table: &str) -> Vec<String> {
    let columns = columns(dialect);
    let indexes = [
        ("live_order", "UNIQUE", "namespace, queue, live_key"),
        ("due", "", "namespace, next_at"),
        ("queue_due", "", "namespace, queue, next_at"),
        ("delete", "", "namespace, delete_at"),
        ("status", "", "namespace, status, id"),
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

/// Kinds of column; each dialect spells them its own way.
#[derive(Clone, Copy)]
enum Kind {
    Id,
    /// Indexed text: bounded in MySQL (index key length).
    Key(u16),
    Text,
    LongText,
    Int,
}

/// Every column of the task table: name, kind, NOT NULL.
const COLUMNS: [(&str, Kind, bool); 20] = [
    ("id", Kind::Id, true),
    ("namespace", Kind::Key(64), true),
    ("name", Kind::Key(255), true),
    ("queue", Kind::Key(191), true),
    ("payload", Kind::LongText, true),
    ("order_no", Kind::Key(191), false),
    ("live_key", Kind::Key(191), false),
    ("status", Kind::Int, true),
    ("timeout_ms", Kind::Int, true),
    ("next_at", Kind::Int, false),
    ("deadline_at", Kind::Int, true),
    ("delete_at", Kind::Int, true),
    ("delete_after_ms", Kind::Int, true),
    ("max_count", Kind::Int, true),
    ("dispatch_count", Kind::Int, true),
    ("last_error", Kind::Text, false),
    ("created_at", Kind::Int, true),
    ("updated_at", Kind::Int, true),
    // The creating span's W3C trace context, JSON (trace.rs); NULL without one.
    ("trace_context", Kind::Text, false),
    // The latest attempt whose lease ran out before it ended (statements.rs).
    ("rescued_attempt", Kind::Int, false),
];

fn columns(dialect: Dialect) -> String {
    let spell = |kind: Kind| -> String {
        match (dialect, kind) {
            (Dialect::Sqlite, Kind::Id) => "INTEGER PRIMARY KEY AUTOINCREMENT".into(),
            (Dialect::Postgres, Kind::Id) => "BIGSERIAL PRIMARY KEY".into(),
            (Dialect::MySql, Kind::Id) => "BIGINT AUTO_INCREMENT PRIMARY KEY".into(),
            (Dialect::MySql, Kind::Key(n)) => format!("VARCHAR({n})"),
            (Dialect::MySql, Kind::LongText) => "LONGTEXT".into(),
            (_, Kind::Key(_) | Kind::Text | Kind::LongText) => "TEXT".into(),
            (Dialect::Sqlite, Kind::Int) => "INTEGER".into(),
            (_, Kind::Int) => "BIGINT".into(),
        }
    };
    COLUMNS
        .iter()
        .map(|(name, kind, not_null)| {
            let null = if *not_null && !matches!(kind, Kind::Id) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{name} {}{null}", spell(*kind))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
