//! The tables and their indexes, per dialect. Install creates what is missing and adds
//! any column of these lists that an existing table lacks (a table made by an older
//! release); it never drops or changes anything.
//!
//! Index use (checked with EXPLAIN in tests/explain.rs):
//! - `due`: the sweeper's claim and reaper (`namespace = ? AND next_at <= now`);
//!   finished, failed and cancelled rows have `next_at` NULL, so they never enter the range.
//! - `queue_priority_due`: the `db` queue's pop in claim order (`priority DESC, next_at`)
//!   when many rows are due; while few are, the planner takes `due`'s range on `next_at`
//!   (filtering other queues) and sorts. (`queue_due`, the pop's own range, cost every claim and create one index
//!   entry for a plan `due` gives too; install drops it.)
//! - `delete`: cleanup (`namespace = ? AND delete_at <= now`).
//! - `status`: operators' lists and bulk retry / cancel of ended rows by status, in id
//!   order (admin.rs). Partial (ended rows) on PostgreSQL and SQLite, so that a create
//!   and a claim write no entry in it: lists of live rows read the due indexes instead,
//!   and the limits' count of processing rows (`next_at > now`) reads `due`.
//! - `live_order`: unique (`namespace, queue, live_key`); `live_key` is the order number
//!   while the task is live and NULL after, so only live tasks are deduplicated. Partial
//!   (`live_key IS NOT NULL`) on PostgreSQL and SQLite: a task without an order number
//!   never enters it, so its claim and finish write one index entry fewer each.

use super::Dialect;

/// Kinds of column; each dialect spells them its own way.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Id,
    /// Indexed text: bounded in MySQL (index key length).
    Key(u16),
    Text,
    LongText,
    Int,
    Real,
    /// An integer with a default, so that install can add it to a table that has rows.
    IntDefault(i64),
}

/// One column: name, kind, NOT NULL. A column added after a table may already exist
/// must be nullable or have a default (install adds it to tables that hold rows).
pub(super) type Column = (&'static str, Kind, bool);

/// One index: name suffix, `UNIQUE` or empty, columns, and the rows it holds (a
/// partial index's predicate, or empty for all rows).
type Index = (&'static str, &'static str, &'static str, &'static str);

/// The rows of live tasks (waiting, offered, processing): only these are ever due.
pub(super) const LIVE_ROWS: &str = "next_at IS NOT NULL";
/// The rows of ended tasks: only these are ever deleted by the cleanup.
pub(super) const ENDED_ROWS: &str = "next_at IS NULL";
/// The rows that hold a live order number: the only ones deduplicated.
const ORDERED_ROWS: &str = "live_key IS NOT NULL";

/// Every column of the task table.
const TASK_COLUMNS: &[Column] = &[
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
    // Claims take higher priority first.
    ("priority", Kind::IntDefault(0), true),
    // A finished task's result (JSON), kept until the row is deleted.
    ("result", Kind::LongText, false),
    // The longest one attempt may run (ms); NULL: the worker's own limit, if any.
    ("time_limit_ms", Kind::Int, false),
];

/// On PostgreSQL and SQLite the due indexes hold live rows only and the delete index
/// ended rows only (MariaDB has no partial indexes). Neither update of a task is a HOT
/// update, so each writes an entry in every index whose rows it belongs to: partial
/// indexes take a finish out of three of them and a claim out of one, and a task without
/// an order number out of `live_order` for good. WAL records per task on PostgreSQL
/// (`pg_stat_statements`, 20,000 tasks): claim 8.8 → 6.75, finish 5.3 → 4.3, create
/// 8.15 → 6.1. `status` holds ended rows only: a create, an offer and a claim write no
/// entry in it (one WAL record each).
const TASK_INDEXES: &[Index] = &[
    ("live_order", "UNIQUE", "namespace, queue, live_key", ORDERED_ROWS),
    ("due", "", "namespace, next_at", LIVE_ROWS),
    (
        "queue_priority_due",
        "",
        "namespace, queue, priority DESC, next_at",
        LIVE_ROWS,
    ),
    ("delete", "", "namespace, delete_at", ENDED_ROWS),
    ("status", "", "namespace, status, id", ENDED_ROWS),
];

/// Indexes of the task table that older releases made and install drops: each cost
/// every claim and create an index entry and no statement needs it any more.
const RETIRED_TASK_INDEXES: &[&str] = &["queue_due"];

/// Every column of the per-queue settings table (pause, admin.rs; limits, limits.rs).
const QUEUE_COLUMNS: &[Column] = &[
    ("namespace", Kind::Key(64), true),
    ("queue", Kind::Key(191), true),
    ("paused", Kind::Int, true),
    ("updated_at", Kind::Int, true),
    // Limits (NULL: none) and the rate limit's token bucket (store/limits.rs).
    ("max_processing", Kind::Int, false),
    ("max_per_second", Kind::Real, false),
    ("tokens", Kind::Real, false),
    ("tokens_at", Kind::Int, false),
];

/// Every column of the schedule table (schedules.rs). An interval schedule stores
/// `cron = ''`, `time_zone = ''`; a cron schedule `every_ms = 0`.
const SCHEDULE_COLUMNS: &[Column] = &[
    ("namespace", Kind::Key(64), true),
    ("name", Kind::Key(191), true),
    ("queue", Kind::Key(191), true),
    ("payload", Kind::LongText, true),
    ("cron", Kind::Key(191), true),
    ("time_zone", Kind::Key(191), true),
    ("every_ms", Kind::Int, true),
    ("missed", Kind::Key(191), true),
    ("timeout_ms", Kind::Int, true),
    ("deadline_ms", Kind::Int, true),
    ("delete_after_ms", Kind::Int, true),
    ("max_count", Kind::Int, true),
    ("next_at", Kind::Int, true),
    ("last_tick_at", Kind::Int, false),
    ("last_task_id", Kind::Int, false),
    ("created_at", Kind::Int, true),
    ("updated_at", Kind::Int, true),
    // The priority of the tasks its ticks make.
    ("priority", Kind::IntDefault(0), true),
];

/// The sweeper's scan for due ticks.
const SCHEDULE_INDEXES: &[Index] = &[("due", "", "namespace, next_at", "")];

/// One table as install makes it.
pub(super) struct Table {
    pub name: String,
    pub columns: &'static [Column],
    /// A composite primary key, as a table constraint.
    primary_key: Option<&'static str>,
    indexes: &'static [Index],
    /// Name suffixes of indexes install drops.
    retired: &'static [&'static str],
}

/// The task table, and the queue settings and schedule tables beside it.
pub(super) fn tables(task_table: &str) -> [Table; 3] {
    [
        Table {
            name: task_table.to_string(),
            columns: TASK_COLUMNS,
            primary_key: None,
            indexes: TASK_INDEXES,
            retired: RETIRED_TASK_INDEXES,
        },
        Table {
            name: super::admin::queue_table(task_table),
            columns: QUEUE_COLUMNS,
            primary_key: Some("namespace, queue"),
            indexes: &[],
            retired: &[],
        },
        Table {
            name: super::schedules::schedule_table(task_table),
            columns: SCHEDULE_COLUMNS,
            primary_key: Some("namespace, name"),
            indexes: SCHEDULE_INDEXES,
            retired: &[],
        },
    ]
}

impl Table {
    /// CREATE TABLE IF NOT EXISTS, with its indexes inline on MySQL (which has no
    /// CREATE INDEX IF NOT EXISTS).
    pub fn create(&self, dialect: Dialect) -> String {
        let mut parts: Vec<String> = self.columns.iter().map(|c| column(dialect, c)).collect();
        if let Some(key) = self.primary_key {
            parts.push(format!("PRIMARY KEY ({key})"));
        }
        if dialect == Dialect::MySql {
            parts.extend(self.indexes.iter().map(|index| self.inline_index(index)));
            return format!(
                "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                self.name,
                parts.join(", ")
            );
        }
        format!("CREATE TABLE IF NOT EXISTS {} ({})", self.name, parts.join(", "))
    }

    /// ALTER TABLE … ADD COLUMN for each listed column missing from `existing`.
    pub fn add_columns(&self, dialect: Dialect, existing: &[String]) -> Vec<String> {
        self.columns
            .iter()
            .filter(|(name, _, _)| !existing.iter().any(|e| e.eq_ignore_ascii_case(name)))
            .map(|c| format!("ALTER TABLE {} ADD COLUMN {}", self.name, column(dialect, c)))
            .collect()
    }

    /// Statements that create the indexes missing from `existing` (index names; on
    /// MySQL every index, elsewhere the indexes of all rows, as IF NOT EXISTS does the
    /// rest). An index of all rows that is now partial is dropped and made again, and a
    /// retired index is dropped.
    pub fn add_indexes(&self, dialect: Dialect, existing: &[String]) -> Vec<String> {
        let exists = |name: &str| existing.iter().any(|e| e.eq_ignore_ascii_case(name));
        let mut statements = Vec::new();
        for suffix in self.retired {
            let name = format!("{}_{suffix}", self.name);
            match dialect {
                Dialect::MySql if exists(&name) => {
                    statements.push(format!("ALTER TABLE {} DROP INDEX {name}", self.name))
                }
                Dialect::MySql => {}
                // Partial on both, so absent from `existing`: IF EXISTS decides.
                _ => statements.push(format!("DROP INDEX IF EXISTS {name}")),
            }
        }
        for index @ (suffix, unique, cols, rows) in self.indexes {
            let name = format!("{}_{suffix}", self.name);
            match dialect {
                Dialect::MySql if exists(&name) => {}
                Dialect::MySql => statements.push(format!(
                    "ALTER TABLE {} ADD {}",
                    self.name,
                    self.inline_index(index)
                )),
                _ => {
                    if !rows.is_empty() && exists(&name) {
                        statements.push(format!("DROP INDEX {name}"));
                    }
                    let only = if rows.is_empty() {
                        String::new()
                    } else {
                        format!(" WHERE {rows}")
                    };
                    statements.push(format!(
                        "CREATE {unique} INDEX IF NOT EXISTS {name} ON {} ({cols}){only}",
                        self.name
                    ));
                }
            }
        }
        statements
    }

    fn inline_index(&self, (suffix, unique, cols, _): &Index) -> String {
        format!("{unique} KEY {}_{suffix} ({cols})", self.name)
    }
}

/// One column's definition in `dialect`.
fn column(dialect: Dialect, (name, kind, not_null): &Column) -> String {
    let spelled = match (dialect, kind) {
        (Dialect::Sqlite, Kind::Id) => "INTEGER PRIMARY KEY AUTOINCREMENT".into(),
        (Dialect::Postgres, Kind::Id) => "BIGSERIAL PRIMARY KEY".into(),
        (Dialect::MySql, Kind::Id) => "BIGINT AUTO_INCREMENT PRIMARY KEY".into(),
        (Dialect::MySql, Kind::Key(n)) => format!("VARCHAR({n})"),
        (Dialect::MySql, Kind::LongText) => "LONGTEXT".into(),
        (_, Kind::Key(_) | Kind::Text | Kind::LongText) => "TEXT".into(),
        (Dialect::Sqlite, Kind::Int) => "INTEGER".into(),
        (_, Kind::Int) => "BIGINT".into(),
        (Dialect::Sqlite, Kind::Real) => "REAL".into(),
        (Dialect::Postgres, Kind::Real) => "DOUBLE PRECISION".into(),
        (Dialect::MySql, Kind::Real) => "DOUBLE".into(),
        (Dialect::Sqlite, Kind::IntDefault(n)) => format!("INTEGER DEFAULT {n}"),
        (_, Kind::IntDefault(n)) => format!("BIGINT DEFAULT {n}"),
    };
    let null = if *not_null && !matches!(kind, Kind::Id) {
        " NOT NULL"
    } else {
        ""
    };
    format!("{name} {spelled}{null}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of each table's first release; every later one must be addable to a
    /// table with rows.
    const FIRST_RELEASE: usize = 18;
    const SCHEDULES_FIRST_RELEASE: usize = 17;

    #[test]
    fn later_columns_can_be_added_to_tables_with_rows() {
        let later = TASK_COLUMNS[FIRST_RELEASE..]
            .iter()
            .chain(&SCHEDULE_COLUMNS[SCHEDULES_FIRST_RELEASE..]);
        for (name, kind, not_null) in later {
            assert!(
                !not_null || matches!(kind, Kind::IntDefault(_)),
                "column {name} must be nullable or have a default"
            );
        }
    }

    #[test]
    fn retired_indexes_are_dropped() {
        let [task, _, _] = tables("qtask_task");
        let drop = "DROP INDEX IF EXISTS qtask_task_queue_due".to_string();
        assert!(task.add_indexes(Dialect::Postgres, &[]).contains(&drop));
        let mysql = task.add_indexes(Dialect::MySql, &["qtask_task_queue_due".into()]);
        assert!(mysql.contains(&"ALTER TABLE qtask_task DROP INDEX qtask_task_queue_due".to_string()));
        let fresh = task.add_indexes(Dialect::MySql, &[]);
        assert!(!fresh.iter().any(|s| s.contains("DROP")), "{fresh:?}");
    }

    #[test]
    fn missing_columns_become_alters() {
        let [task, _, schedule] = tables("qtask_task");
        let existing: Vec<String> = TASK_COLUMNS
            .iter()
            .filter(|c| c.0 != "last_error")
            .map(|c| c.0.to_uppercase())
            .collect();
        let alters = task.add_columns(Dialect::Postgres, &existing);
        assert_eq!(alters, ["ALTER TABLE qtask_task ADD COLUMN last_error TEXT"]);
        let all: Vec<String> = TASK_COLUMNS.iter().map(|c| c.0.to_string()).collect();
        assert!(task.add_columns(Dialect::MySql, &all).is_empty());
        // A schedule table of the first release gains the priority column.
        let first: Vec<String> = SCHEDULE_COLUMNS[..SCHEDULES_FIRST_RELEASE]
            .iter()
            .map(|c| c.0.to_string())
            .collect();
        assert_eq!(
            schedule.add_columns(Dialect::Sqlite, &first),
            ["ALTER TABLE qtask_schedule ADD COLUMN priority INTEGER DEFAULT 0 NOT NULL"]
        );
    }
}
