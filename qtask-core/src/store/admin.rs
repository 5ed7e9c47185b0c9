//! Statements for operators: list, retry, cancel and count tasks by filter; pause queues.
//!
//! Live status codes: 20 waiting, 21 waiting and offered to the Redis queue, 30 processing.
//! Every statement here treats `(20, 21)` as waiting and `(20, 21, 30)` as live, and
//! none of them lowers `dispatch_count` (attempt numbers stay unique): a retry raises
//! `max_count` instead.
//!
//! Index use (checked by `Store::explain`): lists and bulk work on ended rows walk
//! `{t}_status (namespace, status, id)` by id, so pages are keyset pages. That index
//! holds ended rows only (schema.rs), so that a create and a claim write no entry in it;
//! lists of live rows read the due indexes of live rows, which hold no more rows than
//! the backlog.

use std::collections::{BTreeMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::Row;

use super::schema::{ENDED_ROWS, LIVE_ROWS};
use super::{Dialect, Store};
use crate::admin::{QueueSummary, RatePoint, TaskFilter};
use crate::error::{invalid, Error, Result};
use crate::task::{Status, Task};

const WAITING: &str = "(20, 21)";
const LIVE: &str = "(20, 21, 30)";
const ENDED_RETRYABLE: &str = "(90, 91)";
/// A retried task stays at least this long (the seed's retention of live rows).
const LIVE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
const MINUTE_MS: i64 = 60_000;

/// The columns a [`Task`] is read from.
pub(super) const TASK_COLUMNS: &str =
    "id, namespace, name, queue, payload, order_no, status, timeout_ms, next_at, \
     deadline_at, delete_at, max_count, dispatch_count, last_error, created_at, updated_at, priority";

/// The failed rows a list of failed tasks reads (checked by explain).
pub(super) const LIST_FAILED: &str =
    "namespace = ? AND status = 90 AND next_at IS NULL AND id < 9223372036854775807 ORDER BY id DESC";

/// What a bulk statement does to the rows it selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bulk {
    Retry,
    Cancel,
}

impl Bulk {
    /// Statuses the operation applies to.
    fn applies_to(self) -> &'static str {
        match self {
            Bulk::Retry => ENDED_RETRYABLE,
            Bulk::Cancel => LIVE,
        }
    }

    /// The rows the operation applies to: its statuses, and ended or live, so that the
    /// selection of ended rows reads the `status` index of ended rows.
    fn applies_to_rows(self) -> String {
        let rows = match self {
            Bulk::Retry => ENDED_ROWS,
            Bulk::Cancel => LIVE_ROWS,
        };
        format!("status IN {} AND {rows}", self.applies_to())
    }

    fn check_status(self, status: Option<Status>) -> Result<()> {
        match (self, status) {
            (_, None) => Ok(()),
            (Bulk::Retry, Some(Status::Failed | Status::Cancelled)) => Ok(()),
            (Bulk::Cancel, Some(Status::Waiting | Status::Processing)) => Ok(()),
            (Bulk::Retry, Some(s)) => Err(invalid(format!(
                "only failed or cancelled tasks can be retried, not {}",
                s.as_str()
            ))),
            (Bulk::Cancel, Some(s)) => Err(invalid(format!(
                "only waiting or processing tasks can be cancelled, not {}",
                s.as_str()
            ))),
        }
    }

    /// `SET …` of the operation; `{ids}` is the id list. Assignments that read a column
    /// come before the one that changes it: MySQL applies SET left to right.
    fn update(self, dialect: Dialect) -> String {
        let head = match self {
            Bulk::Retry => format!(
                "UPDATE {{t}} SET delete_at = {}, \
                 deadline_at = CASE WHEN deadline_at <= {{now}} + timeout_ms \
                     THEN {{now}} + (deadline_at - created_at) ELSE deadline_at END, \
                 max_count = dispatch_count + max_count, \
                 next_at = {{now}}, updated_at = {{now}}, status = 20",
                dialect.greatest("delete_at", &format!("{{now}} + {LIVE_RETENTION_MS}"))
            ),
            Bulk::Cancel => {
                "UPDATE {t} SET status = 91, live_key = NULL, next_at = NULL, updated_at = {now}".to_string()
            }
        };
        format!("{head} WHERE id IN ({{ids}}) AND status IN {}", self.applies_to())
    }
}

/// One value bound to a `?`.
enum Bind {
    Text(String),
    Int(i64),
}

/// The WHERE clause of a filter (after `namespace = ?`) and its values.
fn filter_sql(filter: &TaskFilter) -> (String, Vec<Bind>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    // `next_at` says live or ended (statements.rs): ended rows are found through the
    // `status` index of ended rows, live ones through the due indexes.
    match filter.status {
        Some(Status::Waiting) => sql.push_str(&format!(" AND status IN {WAITING} AND {LIVE_ROWS}")),
        Some(status @ Status::Processing) => {
            sql.push_str(&format!(" AND status = {} AND {LIVE_ROWS}", status.code()))
        }
        Some(status) => sql.push_str(&format!(" AND status = {} AND {ENDED_ROWS}", status.code())),
        None => {}
    }
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        binds.push(Bind::Text(queue.clone()));
    }
    if let Some(name) = &filter.name {
        sql.push_str(" AND name = ?");
        binds.push(Bind::Text(name.clone()));
    }
    if let Some(from) = filter.created_from {
        sql.push_str(" AND created_at >= ?");
        binds.push(Bind::Int(from));
    }
    if let Some(until) = filter.created_until {
        sql.push_str(" AND created_at < ?");
        binds.push(Bind::Int(until));
    }
    (sql, binds)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_all(mut query: AnyQuery<'_>, binds: Vec<Bind>) -> AnyQuery<'_> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    query
}

/// The table of per-queue settings beside the task table (`qtask_task` → `qtask_queue`).
pub(crate) fn queue_table(task_table: &str) -> String {
    format!("{}queue", task_table.strip_suffix("task").unwrap_or(task_table))
}

/// "No such table" or "no such column" (install has not run since an upgrade):
/// SQLSTATE 42P01 / 42703 (PostgreSQL), 42S02 / 42S22 (MySQL), SQLite's messages.
pub(super) fn is_missing_table(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    matches!(db.code().as_deref(), Some("42P01" | "42S02"))
        || db.message().contains("no such table")
        || is_missing_column(err)
}

fn is_missing_column(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    matches!(db.code().as_deref(), Some("42703" | "42S22")) || db.message().contains("no such column")
}

fn summary_of(queues: &mut BTreeMap<String, QueueSummary>, queue: String) -> &mut QueueSummary {
    queues.entry(queue.clone()).or_insert_with(|| QueueSummary {
        queue,
        ..QueueSummary::default()
    })
}

/// One row of the task table as people and tools see it (also `Store::get`).
pub(super) fn task_from_row(row: &AnyRow) -> Result<Task> {
    let id: i64 = row.try_get("id")?;
    let payload: String = row.try_get("payload")?;
    let code: i64 = row.try_get("status")?;
    Ok(Task {
        id,
        namespace: row.try_get("namespace")?,
        name: row.try_get("name")?,
        queue: row.try_get("queue")?,
        input: serde_json::from_str(&payload)
            .map_err(|e| Error::Internal(format!("task {id} payload: {e}")))?,
        order_no: row.try_get("order_no")?,
        status: Status::from_code(code)?,
        timeout_ms: row.try_get("timeout_ms")?,
        next_at: row.try_get("next_at")?,
        deadline_at: row.try_get("deadline_at")?,
        delete_at: row.try_get("delete_at")?,
        max_count: row.try_get("max_count")?,
        count: row.try_get("dispatch_count")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        priority: row.try_get("priority")?,
    })
}

impl Store {
    /// Up to `limit` tasks matching `filter`, newest first, with ids below `before_id`.
    pub(crate) async fn list_tasks(
        &self,
        filter: &TaskFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Task>> {
        let (clause, binds) = filter_sql(filter);
        let sql = self.sql(&format!(
            "SELECT {TASK_COLUMNS} FROM {{t}} WHERE namespace = ?{clause} AND id < ? ORDER BY id DESC LIMIT ?"
        ));
        let query = bind_all(sqlx::query(sql).bind(&self.namespace), binds)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit));
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(task_from_row)
            .collect()
    }

    pub(crate) async fn count_tasks(&self, filter: &TaskFilter) -> Result<i64> {
        let (clause, binds) = filter_sql(filter);
        let sql = self.sql(&format!("SELECT COUNT(*) FROM {{t}} WHERE namespace = ?{clause}"));
        let row = bind_all(sqlx::query(sql).bind(&self.namespace), binds)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Applies `bulk` to one task of this namespace. Err(NotFound) when there is no such
    /// task, Err(InvalidState) when its status does not allow it.
    pub(crate) async fn bulk_one(&self, bulk: Bulk, id: i64) -> Result<()> {
        let sql = bulk.update(self.dialect).replace("{ids}", "?") + " AND namespace = ?";
        let done = sqlx::query(self.sql(&sql))
            .bind(id)
            .bind(&self.namespace)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let task = self
            .list_tasks(&TaskFilter::default(), Some(id.saturating_add(1)), 1)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(Error::NotFound(id))?;
        match (bulk, task.status) {
            // Cancelling twice is fine, as with `cancel`.
            (Bulk::Cancel, Status::Cancelled) => Ok(()),
            (Bulk::Retry, s) => Err(Error::InvalidState(format!(
                "task {id} is {}; only failed or cancelled tasks can be retried",
                s.as_str()
            ))),
            (Bulk::Cancel, s) => Err(Error::InvalidState(format!(
                "task {id} is already {}",
                s.as_str()
            ))),
        }
    }

    /// Applies `bulk` to the next `limit` matching tasks with ids above `after_id`
    /// (oldest first). Returns how many changed and the last id looked at, or None
    /// when no matching task is left after it.
    pub(crate) async fn bulk_batch(
        &self,
        bulk: Bulk,
        filter: &TaskFilter,
        after_id: i64,
        limit: u32,
    ) -> Result<(u64, Option<i64>)> {
        bulk.check_status(filter.status)?;
        let (clause, binds) = filter_sql(filter);
        let status_clause = if filter.status.is_some() {
            String::new()
        } else {
            format!(" AND {}", bulk.applies_to_rows())
        };
        let select = self.sql(&format!(
            "SELECT id FROM {{t}} WHERE namespace = ?{clause}{status_clause} AND id > ? ORDER BY id LIMIT ?"
        ));
        let ids: Vec<i64> = bind_all(sqlx::query(select).bind(&self.namespace), binds)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else {
            return Ok((0, None));
        };
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let update = bulk.update(self.dialect).replace("{ids}", &list.join(","));
        let done = sqlx::query(self.sql(&update)).execute(&self.pool).await?;
        let next = (ids.len() as u32 == limit).then_some(last);
        Ok((done.rows_affected(), next))
    }

    /// Pauses or resumes one queue of this namespace.
    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let table = queue_table(&self.table);
        let upsert = match self.dialect {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE paused = VALUES(paused), updated_at = VALUES(updated_at)",
            _ => "ON CONFLICT (namespace, queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
        };
        let sql = self.sql(&format!(
            "INSERT INTO {table} (namespace, queue, paused, updated_at) VALUES (?, ?, ?, {{now}}) {upsert}"
        ));
        sqlx::query(sql)
            .bind(&self.namespace)
            .bind(queue)
            .bind(i64::from(paused))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The paused queues of this namespace; also publishes which queues have limits
    /// (limits.rs). Empty while the settings table or its limit columns do not exist
    /// yet (a program upgraded before `install` ran again): nothing is paused then.
    pub async fn paused_queues(&self) -> Result<HashSet<String>> {
        let table = queue_table(&self.table);
        let sql = self.sql(&format!(
            "SELECT queue, paused, CASE WHEN max_processing IS NULL AND max_per_second IS NULL \
             THEN 0 ELSE 1 END FROM {table} WHERE namespace = ? AND (paused = 1 \
             OR max_processing IS NOT NULL OR max_per_second IS NOT NULL)"
        ));
        let rows = match sqlx::query(sql).bind(&self.namespace).fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(err) if is_missing_column(&err) => {
                // The table from before limits: pause flags only.
                let sql = self.sql(&format!(
                    "SELECT queue, paused, 0 FROM {table} WHERE namespace = ? AND paused = 1"
                ));
                sqlx::query(sql)
                    .bind(&self.namespace)
                    .fetch_all(&self.pool)
                    .await?
            }
            Err(err) if is_missing_table(&err) => return Ok(HashSet::new()),
            Err(err) => return Err(err.into()),
        };
        let (mut paused, mut limited) = (HashSet::new(), HashSet::new());
        for row in rows {
            let queue: String = row.try_get(0)?;
            if row.try_get::<i64, _>(2)? == 1 {
                limited.insert(queue.clone());
            }
            if row.try_get::<i64, _>(1)? == 1 {
                paused.insert(queue);
            }
        }
        self.set_limited(limited);
        Ok(paused)
    }

    /// Every queue's limits that has any.
    pub(crate) async fn queue_limits(&self) -> Result<Vec<(String, super::QueueLimits)>> {
        let table = queue_table(&self.table);
        let sql = self.sql(&format!(
            "SELECT queue, max_processing, max_per_second FROM {table} WHERE namespace = ? \
             AND (max_processing IS NOT NULL OR max_per_second IS NOT NULL)"
        ));
        let rows = match sqlx::query(sql).bind(&self.namespace).fetch_all(&self.pool).await {
            Ok(rows) => rows,
            Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        rows.iter()
            .map(|row| {
                let max_processing: Option<i64> = row.try_get(1)?;
                Ok((
                    row.try_get(0)?,
                    super::QueueLimits {
                        max_processing: max_processing.and_then(|n| u32::try_from(n).ok()),
                        max_per_second: row.try_get(2)?,
                    },
                ))
            })
            .collect()
    }

    /// Counts by queue and status, with each queue's pause flag; queues without tasks
    /// appear when they have a setting.
    pub(crate) async fn queue_summaries(&self) -> Result<Vec<QueueSummary>> {
        let mut queues: BTreeMap<String, QueueSummary> = BTreeMap::new();
        let rows = sqlx::query(
            self.sql("SELECT queue, status, COUNT(*) FROM {t} WHERE namespace = ? GROUP BY queue, status"),
        )
        .bind(&self.namespace)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let queue: String = row.try_get(0)?;
            let code: i64 = row.try_get(1)?;
            let n: i64 = row.try_get(2)?;
            let summary = summary_of(&mut queues, queue);
            match code {
                20 | 21 => summary.waiting += n,
                30 => summary.processing += n,
                0 => summary.finished += n,
                90 => summary.failed += n,
                91 => summary.cancelled += n,
                other => return Err(Error::Internal(format!("unknown status code {other} in table"))),
            }
        }
        for queue in self.paused_queues().await? {
            summary_of(&mut queues, queue).paused = true;
        }
        for (queue, limits) in self.queue_limits().await? {
            summary_of(&mut queues, queue).limits = limits;
        }
        Ok(queues.into_values().collect())
    }

    /// Tasks that ended (finished, failed) per minute over the last `minutes` minutes,
    /// oldest first, counted from the rows still in the table.
    pub(crate) async fn rates(&self, minutes: u32) -> Result<Vec<RatePoint>> {
        let sql = self.sql(&format!(
            "SELECT updated_at - (updated_at % {MINUTE_MS}) AS minute_at, status, COUNT(*) FROM {{t}} \
             WHERE namespace = ? AND status IN (0, 90) AND {ENDED_ROWS} AND updated_at >= {{now}} - ? \
             GROUP BY updated_at - (updated_at % {MINUTE_MS}), status"
        ));
        let rows = sqlx::query(sql)
            .bind(&self.namespace)
            .bind(i64::from(minutes) * MINUTE_MS)
            .fetch_all(&self.pool)
            .await?;
        let now: i64 = sqlx::query_scalar(self.sql("SELECT {now}"))
            .fetch_one(&self.pool)
            .await?;
        let current = now - now % MINUTE_MS;
        let mut points: Vec<RatePoint> = (0..i64::from(minutes))
            .rev()
            .map(|back| RatePoint {
                minute_at: current - back * MINUTE_MS,
                finished: 0,
                failed: 0,
            })
            .collect();
        for row in rows {
            let minute_at: i64 = row.try_get(0)?;
            let code: i64 = row.try_get(1)?;
            let n: i64 = row.try_get(2)?;
            if let Some(point) = points.iter_mut().find(|p| p.minute_at == minute_at) {
                match code {
                    0 => point.finished += n,
                    _ => point.failed += n,
                }
            }
        }
        Ok(points)
    }
}
