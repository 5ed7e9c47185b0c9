//! Periodic tasks: a schedule, kept in the database beside the task table
//! (`{table_prefix}schedule`), makes one task per tick.
//!
//! Each tick becomes exactly one task however many sweepers run: a sweeper takes a
//! tick by moving the schedule's `next_at` forward with an UPDATE guarded by the
//! value it read, and writes the task in the same transaction (store/schedules.rs).
//! A tick whose successor is already due, or that is more than [`MISSED_AFTER`] late,
//! was missed (everything was down): [`Missed::RunOnce`] still makes one task for it,
//! [`Missed::Skip`] makes none; either way the schedule then moves to its next tick in
//! the future, so an outage never makes a burst of tasks.

mod args;
mod timing;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use timing::Ticks;
pub use timing::MIN_EVERY;

use crate::client::Client;
use crate::error::{invalid, Error, Result};
use crate::task::{NewTask, TaskOptions, ValidTask};

/// The `next_at` of a schedule whose cron expression has no further tick (its year passed).
pub const NO_MORE_TICKS: i64 = i64::MAX;

/// A tick seen later than this counts as missed.
pub const MISSED_AFTER: Duration = Duration::from_secs(60);

/// What a schedule does about a tick missed while no sweeper ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// One catch-up task, then the next tick in the future (however many were missed).
    #[default]
    RunOnce,
    /// No task: straight to the next tick in the future.
    Skip,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::RunOnce => "run_once",
            Missed::Skip => "skip",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "run_once" => Ok(Missed::RunOnce),
            "skip" => Ok(Missed::Skip),
            other => Err(invalid(format!(
                "missed must be \"run_once\" or \"skip\", got {other:?}"
            ))),
        }
    }
}

/// A periodic task, declared by name: declaring the same name again replaces it
/// (its next tick is kept while its timing is unchanged). Exactly one of `cron` and
/// `every` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Unique in the namespace; also the name of every task it makes.
    pub name: String,
    /// The input of every task it makes (a JSON object).
    pub input: Value,
    pub queue: String,
    /// A cron expression: 5 fields, 6 with seconds first, or `@hourly`, `@daily`…
    pub cron: Option<String>,
    /// A fixed interval (at least one second), the first tick one interval after the
    /// schedule is first declared.
    pub every: Option<Duration>,
    /// The IANA time zone a cron expression is read in (default `UTC`); cron only.
    pub time_zone: Option<String>,
    pub missed: Missed,
    /// Lease of one dispatch of each task.
    pub timeout: Duration,
    /// Deadline, delete deadline, max_count and priority of each task (no order number).
    pub options: TaskOptions,
}

impl Schedule {
    /// A schedule on a cron expression, read in UTC unless [`Schedule::time_zone`].
    pub fn cron(name: impl Into<String>, input: Value, queue: impl Into<String>, expression: &str) -> Self {
        Schedule {
            cron: Some(expression.to_owned()),
            ..Self::new(name, input, queue)
        }
    }

    /// A schedule that ticks every `every`, the first tick `every` after it is declared.
    pub fn every(name: impl Into<String>, input: Value, queue: impl Into<String>, every: Duration) -> Self {
        Schedule {
            every: Some(every),
            ..Self::new(name, input, queue)
        }
    }

    pub(crate) fn new(name: impl Into<String>, input: Value, queue: impl Into<String>) -> Self {
        Schedule {
            name: name.into(),
            input,
            queue: queue.into(),
            cron: None,
            every: None,
            time_zone: None,
            missed: Missed::default(),
            timeout: crate::DEFAULT_TIMEOUT,
            options: TaskOptions::default(),
        }
    }

    pub fn time_zone(mut self, zone: impl Into<String>) -> Self {
        self.time_zone = Some(zone.into());
        self
    }

    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = Some(deadline);
        self
    }

    pub fn delete_deadline(mut self, delete_deadline: Duration) -> Self {
        self.options.delete_deadline = Some(delete_deadline);
        self
    }

    pub fn max_count(mut self, max_count: u32) -> Self {
        self.options.max_count = Some(max_count);
        self
    }

    /// The priority of each task its ticks make: claims take higher priority first
    /// (default 0, from -[`crate::MAX_PRIORITY`] to [`crate::MAX_PRIORITY`]).
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// Checks everything before any write: the tasks it makes, and its timing.
    pub(crate) fn check(&self, max_payload_bytes: usize) -> Result<(ValidTask, Ticks)> {
        if self.options.order_no.is_some() {
            return Err(invalid(
                "a schedule's tasks take no order_no (each tick makes a new task)",
            ));
        }
        if self.name.len() > 191 {
            return Err(invalid("schedule name is limited to 191 bytes"));
        }
        let task = NewTask {
            name: self.name.clone(),
            input: self.input.clone(),
            queue: self.queue.clone(),
            timeout: self.timeout,
            options: self.options.clone(),
        };
        let valid = ValidTask::check(&task, Duration::ZERO, max_payload_bytes)?;
        let ticks = match (&self.cron, self.every, &self.time_zone) {
            (Some(cron), None, zone) => Ticks::cron(cron, zone.as_deref().unwrap_or("UTC"))?,
            (None, Some(_), Some(zone)) => {
                return Err(invalid(format!(
                    "time_zone {zone:?} applies to cron schedules only, not to intervals"
                )))
            }
            (None, Some(every), None) => Ticks::every(every)?,
            _ => return Err(invalid("a schedule needs exactly one of cron and every")),
        };
        Ok((valid, ticks))
    }
}

/// A schedule as the table keeps it. Times are Unix milliseconds (database clock).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub queue: String,
    pub input: Value,
    /// The cron expression, or None for an interval.
    pub cron: Option<String>,
    /// The cron expression's time zone, or None for an interval.
    pub time_zone: Option<String>,
    /// The interval in milliseconds, or None for a cron expression.
    pub every_ms: Option<i64>,
    pub missed: Missed,
    pub timeout_ms: i64,
    pub deadline_ms: i64,
    pub delete_after_ms: i64,
    pub max_count: i64,
    /// The priority of the tasks its ticks make.
    pub priority: i64,
    /// When the next tick is due; [`NO_MORE_TICKS`] when there is none.
    pub next_at: i64,
    /// The last tick taken (with or without a task), and the task it made.
    pub last_tick_at: Option<i64>,
    pub last_task_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    /// Declares a periodic task, or replaces the one of the same name (upsert). The
    /// next tick is kept while cron, time zone and interval are unchanged, so a
    /// program may declare its schedules at every start. Returns the stored schedule.
    pub async fn schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        self.check_open()?;
        let (valid, ticks) = schedule.check(self.config().max_payload_bytes)?;
        let store = self.store();
        let now = store.now_ms().await?;
        let first = ticks.first(now)?;
        store.upsert_schedule(&schedule, &valid, first).await?;
        store.schedule_info(&schedule.name).await?.ok_or_else(|| {
            Error::Internal(format!(
                "schedule {:?} vanished after it was written",
                schedule.name
            ))
        })
    }

    /// Removes a schedule; returns whether it existed. Tasks it already made stay.
    pub async fn unschedule(&self, name: &str) -> Result<bool> {
        self.check_open()?;
        self.store().delete_schedule(name).await
    }

    /// Every schedule of the namespace, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        self.check_open()?;
        self.store().list_schedules().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_refuse_what_tasks_refuse() {
        let ok = Schedule::every("n", json!({}), "Q", Duration::from_secs(5));
        assert!(ok.check(1 << 20).is_ok());
        let bad = [
            Schedule::every("", json!({}), "Q", Duration::from_secs(5)),
            Schedule::every("n", json!([1]), "Q", Duration::from_secs(5)),
            Schedule::every("n", json!({"task_id": 1}), "Q", Duration::from_secs(5)),
            Schedule::every("n", json!({}), "a queue", Duration::from_secs(5)),
            Schedule::every("n", json!({}), "Q", Duration::from_secs(5)).time_zone("UTC"),
            Schedule::every("n", json!({}), "Q", Duration::from_secs(5)).timeout(Duration::ZERO),
            Schedule::every("n", json!({}), "Q", Duration::from_secs(5)).priority(1001),
            Schedule::cron("n", json!({}), "Q", "* * * * *").time_zone("Nowhere/Atlantis"),
            Schedule::every("x".repeat(192), json!({}), "Q", Duration::from_secs(5)),
            Schedule {
                cron: Some("* * * * *".into()),
                ..Schedule::every("n", json!({}), "Q", Duration::from_secs(5))
            },
            Schedule {
                every: None,
                ..Schedule::every("n", json!({}), "Q", Duration::from_secs(5))
            },
        ];
        for schedule in bad {
            assert!(
                matches!(schedule.check(1 << 20), Err(Error::InvalidArgument(_))),
                "{schedule:?}"
            );
        }
    }
}
