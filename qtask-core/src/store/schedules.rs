//! The schedule table beside the task table (`qtask_task` → `qtask_schedule`), and the
//! one statement that makes a tick exactly one task: moving `next_at` forward with an
//! UPDATE guarded by the value the sweeper read, in the transaction that writes the
//! task. A second sweeper's UPDATE then matches no row (PostgreSQL and InnoDB re-read
//! the row once the first commits; SQLite has one writer), so it writes nothing.
//!
//! The table's columns and index are listed in schema.rs (SCHEDULE_COLUMNS).

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::admin::is_missing_table;
use super::{retry_conflicts, Dialect, Store};
use crate::error::{Error, Result};
use crate::schedule::{Missed, Schedule, ScheduleInfo, Ticks};
use crate::task::ValidTask;

/// The schedule table's name, from the task table's (same prefix).
pub(crate) fn schedule_table(task_table: &str) -> String {
    format!(
        "{}schedule",
        task_table.strip_suffix("task").unwrap_or(task_table)
    )
}

const COLUMNS: &str = "name, queue, payload, cron, time_zone, every_ms, missed, timeout_ms, \
     deadline_ms, delete_after_ms, max_count, priority, next_at, last_tick_at, last_task_id, created_at, updated_at";

/// What taking one tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TickTaken {
    /// This sweeper took the tick and wrote this task.
    Task(i64),
    /// This sweeper took the tick and wrote no task (a missed tick, skipped).
    NoTask,
    /// Another sweeper took it first: nothing was written.
    ByAnother,
}

/// A schedule whose tick is due, as the sweeper reads it.
#[derive(Debug)]
pub(crate) struct DueSchedule {
    pub info: ScheduleInfo,
    /// The tasks it makes, as the table stores them.
    pub task: ValidTask,
    pub ticks: Ticks,
}

fn info_from_row(row: &AnyRow) -> Result<ScheduleInfo> {
    let name: String = row.try_get("name")?;
    let payload: String = row.try_get("payload")?;
    let cron: String = row.try_get("cron")?;
    let time_zone: String = row.try_get("time_zone")?;
    let every_ms: i64 = row.try_get("every_ms")?;
    let missed: String = row.try_get("missed")?;
    let is_cron = every_ms == 0;
    Ok(ScheduleInfo {
        input: serde_json::from_str(&payload)
            .map_err(|e| Error::Internal(format!("schedule {name:?} payload: {e}")))?,
        cron: is_cron.then_some(cron),
        time_zone: is_cron.then_some(time_zone),
        every_ms: (!is_cron).then_some(every_ms),
        missed: Missed::parse(&missed)?,
        queue: row.try_get("queue")?,
        timeout_ms: row.try_get("timeout_ms")?,
        deadline_ms: row.try_get("deadline_ms")?,
        delete_after_ms: row.try_get("delete_after_ms")?,
        max_count: row.try_get("max_count")?,
        priority: row.try_get("priority")?,
        next_at: row.try_get("next_at")?,
        last_tick_at: row.try_get("last_tick_at")?,
        last_task_id: row.try_get("last_task_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        name,
    })
}

fn due_from_row(row: &AnyRow) -> Result<DueSchedule> {
    let info = info_from_row(row)?;
    let ticks = match (&info.cron, &info.time_zone, info.every_ms) {
        (Some(cron), Some(zone), _) => Ticks::cron(cron, zone)?,
        (_, _, Some(every)) => Ticks::every(std::time::Duration::from_millis(every.max(0) as u64))?,
        _ => return Err(Error::Internal(format!("schedule {:?} has no timing", info.name))),
    };
    let task = ValidTask {
        name: info.name.clone(),
        queue: info.queue.clone(),
        payload: row.try_get("payload")?,
        order_no: None,
        timeout_ms: info.timeout_ms,
        delay_ms: 0,
        deadline_ms: info.deadline_ms,
        delete_after_ms: info.delete_after_ms,
        max_count: info.max_count,
        priority: info.priority,
        time_limit_ms: None,
        // A tick's task starts a trace of its own: no producer's span made it.
        trace_context: None,
    };
    Ok(DueSchedule { info, task, ticks })
}

impl Store {
    fn schedule_table(&self) -> String {
        schedule_table(&self.table)
    }

    /// The database's clock (with a test's offset), in Unix milliseconds.
    pub(crate) async fn now_ms(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(self.sql("SELECT {now}"))
            .fetch_one(&self.pool)
            .await?)
    }

    /// Writes or replaces a schedule; keeps its next tick while its timing is unchanged.
    pub(crate) async fn upsert_schedule(
        &self,
        schedule: &Schedule,
        task: &ValidTask,
        first_tick: i64,
    ) -> Result<()> {
        let s = self.schedule_table();
        let same_timing = |old: &str, new: &dyn Fn(&str) -> String| {
            ["cron", "time_zone", "every_ms"]
                .iter()
                .map(|c| format!("{old}{c} = {}", new(c)))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let replaced = [
            "queue",
            "payload",
            "cron",
            "time_zone",
            "every_ms",
            "missed",
            "timeout_ms",
            "deadline_ms",
            "delete_after_ms",
            "max_count",
            "priority",
            "updated_at",
        ];
        let upsert = match self.dialect {
            // MySQL applies SET left to right: next_at compares the old timing first.
            Dialect::MySql => {
                let values = |c: &str| format!("VALUES({c})");
                let same = same_timing("", &values);
                let rest: Vec<String> = replaced.iter().map(|c| format!("{c} = VALUES({c})")).collect();
                format!(
                    "ON DUPLICATE KEY UPDATE next_at = IF({same}, next_at, VALUES(next_at)), {}",
                    rest.join(", ")
                )
            }
            _ => {
                let excluded = |c: &str| format!("excluded.{c}");
                let same = same_timing(&format!("{s}."), &excluded);
                let rest: Vec<String> = replaced.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                format!(
                    "ON CONFLICT (namespace, name) DO UPDATE SET \
                     next_at = CASE WHEN {same} THEN {s}.next_at ELSE excluded.next_at END, {}",
                    rest.join(", ")
                )
            }
        };
        let sql = self
            .sql(&format!(
                "INSERT INTO {s} (namespace, name, queue, payload, cron, time_zone, every_ms, missed, \
             timeout_ms, deadline_ms, delete_after_ms, max_count, priority, next_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {{now}}, {{now}}) {upsert}"
            ))
            .0;
        let (cron, zone, every_ms) = match (&schedule.cron, schedule.every) {
            (Some(cron), _) => (
                cron.trim().to_owned(),
                schedule.time_zone.as_deref().unwrap_or("UTC").trim().to_owned(),
                0,
            ),
            (None, every) => (
                String::new(),
                String::new(),
                crate::clock::duration_ms(every.unwrap_or_default()),
            ),
        };
        retry_conflicts(|| async {
            sqlx::query(AssertSqlSafe(sql.clone()))
                .bind(&self.namespace)
                .bind(&schedule.name)
                .bind(&task.queue)
                .bind(&task.payload)
                .bind(cron.clone())
                .bind(zone.clone())
                .bind(every_ms)
                .bind(schedule.missed.as_str())
                .bind(task.timeout_ms)
                .bind(task.deadline_ms)
                .bind(task.delete_after_ms)
                .bind(task.max_count)
                .bind(task.priority)
                .bind(first_tick)
                .execute(&self.pool)
                .await
                .map_err(Error::from)
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn schedule_info(&self, name: &str) -> Result<Option<ScheduleInfo>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE namespace = ? AND name = ?",
            self.schedule_table()
        );
        sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(info_from_row)
            .transpose()
    }

    pub(crate) async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE namespace = ? AND name = ?",
            self.schedule_table()
        );
        let done = sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE namespace = ? ORDER BY name",
            self.schedule_table()
        );
        let rows = match sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows,
            // Installed before schedules existed: there are none until install runs again.
            Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        rows.iter().map(info_from_row).collect()
    }

    /// Up to `limit` schedules whose tick is due at `now`, earliest first.
    pub(crate) async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<DueSchedule>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE namespace = ? AND next_at <= ? ORDER BY next_at LIMIT ?",
            self.schedule_table()
        );
        let rows = match sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows,
            Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        // A row this build cannot read (edited by hand) must not stop the other schedules.
        Ok(rows
            .iter()
            .filter_map(|row| {
                due_from_row(row)
                    .map_err(|err| tracing::warn!(error = %err, "qtask: skipping an unreadable schedule"))
                    .ok()
            })
            .collect())
    }

    /// Takes the tick `due.info.next_at`: moves the schedule to `next_at` and, when
    /// `make_task`, writes its task, in one transaction.
    pub(crate) async fn take_tick(
        &self,
        due: &DueSchedule,
        next_at: i64,
        make_task: bool,
    ) -> Result<TickTaken> {
        let s = self.schedule_table();
        let tick = due.info.next_at;
        let advance = self.sql(&format!(
            "UPDATE {s} SET next_at = ?, last_tick_at = ?, updated_at = {{now}} \
             WHERE namespace = ? AND name = ? AND next_at = ?"
        ));
        let record = self.sql(&format!(
            "UPDATE {s} SET last_task_id = ? WHERE namespace = ? AND name = ?"
        ));
        retry_conflicts(|| async {
            let mut tx = self.pool.begin().await?;
            let taken = sqlx::query(AssertSqlSafe(advance.0.clone()))
                .bind(next_at)
                .bind(tick)
                .bind(&self.namespace)
                .bind(&due.info.name)
                .bind(tick)
                .execute(&mut *tx)
                .await?;
            if taken.rows_affected() == 0 {
                return Ok(TickTaken::ByAnother); // dropping the transaction rolls it back
            }
            let mut outcome = TickTaken::NoTask;
            if make_task {
                let id = self.insert(&mut tx, &due.task, false).await?.id;
                sqlx::query(AssertSqlSafe(record.0.clone()))
                    .bind(id)
                    .bind(&self.namespace)
                    .bind(&due.info.name)
                    .execute(&mut *tx)
                    .await?;
                outcome = TickTaken::Task(id);
            }
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }
}
