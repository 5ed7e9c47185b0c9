//! What a new task row is made of, described once: the columns an insert fills from
//! bound values ([`Bound`]) and those every new row gets the same value in. The single
//! insert, the caller's insert (outbox.rs) and the multi-row inserts (insert_many.rs)
//! are all rendered and bound from this description, so they cannot drift apart.

use serde_json::{Map, Value};
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use super::statements::OFFERED;
use super::{Dialect, LIVE_RETENTION_MS};
use crate::task::{Status, ValidTask};

/// One bound value of a task's insert; [`Bound::ALL`] is the order of the binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Namespace,
    Name,
    Queue,
    Payload,
    OrderNo,
    /// The order number again: the unique key of live tasks (NULL once it ends).
    LiveKey,
    Status,
    TimeoutMs,
    /// Milliseconds from now until it is due (its delay, or its lease when offered).
    NextInMs,
    DeadlineInMs,
    DeleteInMs,
    DeleteAfterMs,
    MaxCount,
    TraceContext,
    Priority,
    /// The task's own time limit per attempt, or NULL (the worker's applies).
    TimeLimitMs,
}

impl Bound {
    pub const ALL: [Bound; 16] = [
        Bound::Namespace,
        Bound::Name,
        Bound::Queue,
        Bound::Payload,
        Bound::OrderNo,
        Bound::LiveKey,
        Bound::Status,
        Bound::TimeoutMs,
        Bound::NextInMs,
        Bound::DeadlineInMs,
        Bound::DeleteInMs,
        Bound::DeleteAfterMs,
        Bound::MaxCount,
        Bound::TraceContext,
        Bound::Priority,
        Bound::TimeLimitMs,
    ];

    /// The column it fills.
    pub fn column(self) -> &'static str {
        match self {
            Bound::Namespace => "namespace",
            Bound::Name => "name",
            Bound::Queue => "queue",
            Bound::Payload => "payload",
            Bound::OrderNo => "order_no",
            Bound::LiveKey => "live_key",
            Bound::Status => "status",
            Bound::TimeoutMs => "timeout_ms",
            Bound::NextInMs => "next_at",
            Bound::DeadlineInMs => "deadline_at",
            Bound::DeleteInMs => "delete_at",
            Bound::DeleteAfterMs => "delete_after_ms",
            Bound::MaxCount => "max_count",
            Bound::TraceContext => "trace_context",
            Bound::Priority => "priority",
            Bound::TimeLimitMs => "time_limit_ms",
        }
    }

    /// Text, else an integer (PostgreSQL's multi-row insert reads the values from JSON).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Bound::Namespace
                | Bound::Name
                | Bound::Queue
                | Bound::Payload
                | Bound::OrderNo
                | Bound::LiveKey
                | Bound::TraceContext
        )
    }

    /// How the bound value `param` becomes the stored one: times are stored absolute.
    pub fn expr(self, param: &str) -> String {
        match self {
            Bound::NextInMs | Bound::DeadlineInMs | Bound::DeleteInMs => format!("{{now}} + {param}"),
            _ => param.to_string(),
        }
    }

    /// Its value for `task`. `offered`: the row goes out as an offer to a queue that
    /// carries offers (Redis), claimable there now; otherwise it waits for its delay.
    fn value(self, namespace: &str, task: &ValidTask, offered: bool) -> Value {
        let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::String);
        match self {
            Bound::Namespace => namespace.into(),
            Bound::Name => task.name.clone().into(),
            Bound::Queue => task.queue.clone().into(),
            Bound::Payload => task.payload.clone().into(),
            Bound::OrderNo | Bound::LiveKey => text(&task.order_no),
            Bound::Status if offered => OFFERED.into(),
            Bound::Status => Status::Waiting.code().into(),
            Bound::TimeoutMs => task.timeout_ms.into(),
            Bound::NextInMs if offered => task.timeout_ms.into(),
            Bound::NextInMs => task.delay_ms.into(),
            Bound::DeadlineInMs => task.deadline_ms.into(),
            Bound::DeleteInMs => task.deadline_ms.max(LIVE_RETENTION_MS).into(),
            Bound::DeleteAfterMs => task.delete_after_ms.into(),
            Bound::MaxCount => task.max_count.into(),
            Bound::TraceContext => text(&task.trace_context),
            Bound::Priority => task.priority.into(),
            Bound::TimeLimitMs => task.time_limit_ms.map_or(Value::Null, Value::from),
        }
    }
}

/// Columns every new row gets the same value in.
const FIXED: [(&str, &str); 4] = [
    ("dispatch_count", "0"),
    ("last_error", "NULL"),
    ("created_at", "{now}"),
    ("updated_at", "{now}"),
];

/// A task's bound values, in [`Bound::ALL`] order.
pub(crate) fn values(namespace: &str, task: &ValidTask, offered: bool) -> Vec<Value> {
    Bound::ALL
        .iter()
        .map(|b| b.value(namespace, task, offered))
        .collect()
}

/// Binds `values` (from [`values`], one row or several in turn) in order: text,
/// integers, and NULL typed as its column's kind (PostgreSQL refuses a text NULL in a
/// BIGINT column).
pub(crate) fn bind_values<'q>(
    mut query: Query<'q, Any, AnyArguments>,
    values: &'q [Value],
) -> Query<'q, Any, AnyArguments> {
    for (value, bound) in values.iter().zip(Bound::ALL.iter().cycle()) {
        query = match value {
            Value::String(text) => query.bind(text.as_str()),
            Value::Number(n) => query.bind(n.as_i64().unwrap_or_default()),
            _ if bound.is_text() => query.bind(None::<String>),
            _ => query.bind(None::<i64>),
        };
    }
    query
}

/// `(namespace, name, …, updated_at)`: every column an insert writes.
fn column_list() -> String {
    let columns: Vec<&str> = Bound::ALL
        .iter()
        .map(|b| b.column())
        .chain(FIXED.iter().map(|(column, _)| *column))
        .collect();
    format!("({})", columns.join(", "))
}

/// `(?, ?, …, {now} + ?, …, 0, NULL, {now}, {now})`: one row's values.
fn row_placeholders() -> String {
    let values: Vec<String> = Bound::ALL
        .iter()
        .map(|b| b.expr("?"))
        .chain(FIXED.iter().map(|(_, value)| value.to_string()))
        .collect();
    format!("({})", values.join(", "))
}

/// The insert of one task, with `{t}`, `{now}` and `?` placeholders (binds: [`values`]),
/// returning its id unless a live task holds its order number (MySQL: `INSERT IGNORE`,
/// the id is the last insert id). `wake` (PostgreSQL): also NOTIFY the `db` queue's
/// fetchers when the inserting transaction commits; one more bind, the channel.
pub(crate) fn insert_template(dialect: Dialect, wake: bool) -> String {
    let (insert_head, insert_tail) = dialect.insert_unless_live();
    let insert = format!(
        "{insert_head} {{t}} {} VALUES {} {insert_tail}",
        column_list(),
        row_placeholders()
    );
    if !wake {
        return insert;
    }
    let insert = insert.replace("RETURNING id", "RETURNING id, queue");
    format!(
        "WITH ins AS ({insert}) SELECT ins.id FROM ins \
         CROSS JOIN LATERAL (SELECT pg_notify(?, ins.queue)) AS wake"
    )
}

/// The insert of `rows` tasks in one statement (binds: [`values`] of each row in
/// turn), skipping rows whose order number a live task holds. Returns `id, queue,
/// live_key` of each row inserted, in no promised order. `wake` (PostgreSQL): also
/// NOTIFY the `db` queue's fetchers at commit; one more bind, the channel.
pub(crate) fn insert_rows_template(dialect: Dialect, rows: usize, wake: bool) -> String {
    let (head, tail) = match dialect {
        Dialect::MySql => ("INSERT IGNORE INTO", ""),
        _ => ("INSERT INTO", "ON CONFLICT DO NOTHING"),
    };
    let row = row_placeholders();
    let mut sql = format!("{head} {{t}} {} VALUES ", column_list());
    sql.reserve((row.len() + 2) * rows + 64);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql.push_str(&format!(" {tail} RETURNING id, queue, live_key"));
    if !wake {
        return sql;
    }
    format!("WITH ins AS ({sql}), {WAKE_CTE} SELECT ins.id, ins.queue, ins.live_key FROM ins CROSS JOIN wake")
}

/// PostgreSQL: the CTE that NOTIFYs the `db` queue's fetchers (bind: the channel) when
/// a batch insert commits; the insert's result is joined with it so that it runs.
const WAKE_CTE: &str = "wake AS MATERIALIZED (SELECT pg_notify(?, '') AS sent)";

/// PostgreSQL: the insert of many tasks from one JSON array ([`json_rows`]; one bind).
/// Each row's id is drawn from the table's sequence before the insert, so the result
/// maps ids to rows by their position (`ord`) whatever order the insert processed them
/// in: one row per input row, `ord, id, inserted` (false: a live task holds its order
/// number). `wake`: also NOTIFY the `db` queue's fetchers at commit; one more bind.
pub(crate) fn insert_json_template(wake: bool) -> String {
    let record: Vec<String> = std::iter::once("ord bigint".to_string())
        .chain(Bound::ALL.iter().map(|b| {
            let kind = if b.is_text() { "text" } else { "bigint" };
            format!("{} {kind}", b.column())
        }))
        .collect();
    let selected: Vec<String> = Bound::ALL
        .iter()
        .map(|b| b.expr(&format!("input.{}", b.column())))
        .chain(FIXED.iter().map(|(_, value)| value.to_string()))
        .collect();
    let columns = column_list();
    let columns = columns.trim_start_matches('(');
    let (wake_cte, wake_join) = if wake {
        (format!(", {WAKE_CTE}"), " CROSS JOIN wake")
    } else {
        (String::new(), "")
    };
    format!(
        "WITH input AS MATERIALIZED (\
           SELECT nextval((SELECT pg_get_serial_sequence('{{t}}', 'id'))) AS id, r.* \
           FROM json_to_recordset(?::json) AS r({record}) ORDER BY r.ord), \
         ins AS (\
           INSERT INTO {{t}} (id, {columns} SELECT input.id, {selected} FROM input ORDER BY input.ord \
           ON CONFLICT DO NOTHING RETURNING id){wake_cte} \
         SELECT input.ord, input.id, ins.id IS NOT NULL FROM input \
         LEFT JOIN ins ON ins.id = input.id{wake_join}",
        record = record.join(", "),
        selected = selected.join(", "),
    )
}

/// The JSON array [`insert_json_template`] reads: one object per row, its position
/// under `ord`, its [`values`] under their column names.
pub(crate) fn json_rows<'v>(rows: impl Iterator<Item = &'v [Value]>) -> String {
    let objects: Vec<Value> = rows
        .enumerate()
        .map(|(ord, values)| {
            let mut object = Map::with_capacity(Bound::ALL.len() + 1);
            object.insert("ord".into(), ord.into());
            for (bound, value) in Bound::ALL.iter().zip(values) {
                object.insert(bound.column().into(), value.clone());
            }
            Value::Object(object)
        })
        .collect();
    Value::Array(objects).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_insert_has_one_placeholder_per_bound_value() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let one = insert_template(dialect, false);
            assert_eq!(one.matches('?').count(), Bound::ALL.len(), "{one}");
            let three = insert_rows_template(dialect, 3, false);
            assert_eq!(three.matches('?').count(), 3 * Bound::ALL.len(), "{three}");
        }
        let woken = insert_rows_template(Dialect::Postgres, 3, true);
        assert_eq!(woken.matches('?').count(), 3 * Bound::ALL.len() + 1, "{woken}");
        assert_eq!(insert_json_template(false).matches('?').count(), 1);
        assert_eq!(insert_json_template(true).matches('?').count(), 2);
        assert_eq!(
            insert_template(Dialect::Postgres, true).matches('?').count(),
            Bound::ALL.len() + 1
        );
    }
}
