//! For operators: find tasks by filter, retry or cancel them one by one or in bulk,
//! pause and resume queues, and count tasks per queue and per minute.
//!
//! A retried task (failed or cancelled) is waiting again and due at once, keeps its
//! last error, and gets a fresh attempt budget: `max_count` grows by its old value
//! (attempt numbers never go down), and a deadline that has passed, or would pass
//! within one timeout, moves forward by the task's original deadline span.
//!
//! A pause is kept in the database (`{table_prefix}queue`), so every worker and
//! sweeper of every process respects it within one sweep interval: a paused queue's
//! tasks are not dispatched and `pop` returns nothing for it. A retried task keeps no
//! order number slot: a new task with the same order number may be created beside it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Client;
use crate::error::{invalid, Result};
use crate::store::admin::Bulk;
use crate::store::{QueueLimits, Store};
use crate::task::{check_key, Status, Task};

/// Rows one bulk statement changes at most.
pub const BULK_BATCH: u32 = 1000;
/// Most tasks one list page returns.
pub const MAX_PAGE: u32 = 1000;
/// Highest rate limit [`Client::set_queue_limits`] takes.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// Most minutes [`Client::rates`] looks back.
pub const MAX_RATE_MINUTES: u32 = 24 * 60;

/// Which tasks of the client's namespace an operator means; `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskFilter {
    pub queue: Option<String>,
    pub status: Option<Status>,
    /// The task's name, exactly.
    pub name: Option<String>,
    /// Created at or after this Unix time in milliseconds.
    pub created_from: Option<i64>,
    /// Created before this Unix time in milliseconds.
    pub created_until: Option<i64>,
}

impl TaskFilter {
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reads a filter from a JSON object with the same keys (for C, Go and Python):
    /// `{"status": "failed", "queue": "ORDER:BIND"}`; `""`, `null` and `{}` match anything.
    pub fn from_json(text: &str) -> Result<TaskFilter> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            queue: Option<String>,
            status: Option<String>,
            name: Option<String>,
            created_from: Option<i64>,
            created_until: Option<i64>,
        }
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(TaskFilter::default());
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| invalid(format!("task filter: {e}")))?;
        let filter = TaskFilter {
            queue: raw.queue,
            status: raw.status.as_deref().map(parse_status).transpose()?,
            name: raw.name,
            created_from: raw.created_from,
            created_until: raw.created_until,
        };
        filter.check()?;
        Ok(filter)
    }

    fn check(&self) -> Result<()> {
        if let Some(queue) = &self.queue {
            check_key("queue", queue)?;
        }
        if let (Some(from), Some(until)) = (self.created_from, self.created_until) {
            if from > until {
                return Err(invalid("created_from must not be after created_until"));
            }
        }
        Ok(())
    }
}

/// One page of a task list, newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Pass as `before_id` for the next page; None on the last page.
    pub next_before_id: Option<i64>,
}

/// What one bulk batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BulkBatch {
    /// Tasks changed.
    pub changed: u64,
    /// Pass as `after_id` for the next batch; None when no matching task is left.
    pub next_after_id: Option<i64>,
}

/// One queue of the namespace: its task counts, whether it is paused, its limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueSummary {
    pub queue: String,
    pub paused: bool,
    pub limits: crate::store::QueueLimits,
    pub waiting: i64,
    pub processing: i64,
    pub finished: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// Tasks that ended in one minute (counted from the rows still in the table: finished
/// rows deleted at once, the default, are not seen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RatePoint {
    /// Start of the minute, Unix milliseconds (database clock).
    pub minute_at: i64,
    pub finished: i64,
    pub failed: i64,
}

/// Parses a status name as people type it (`failed`, `waiting`…).
pub fn parse_status(text: &str) -> Result<Status> {
    Status::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| {
            invalid(format!(
                "unknown status {text:?}; expected waiting, processing, finished, failed or cancelled"
            ))
        })
}

/// The paused queues as one client last read them; read again after the TTL.
#[derive(Debug, Default)]
pub(crate) struct PausedCache {
    state: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl PausedCache {
    async fn get(&self, store: &Store, ttl: Duration) -> Result<Arc<HashSet<String>>> {
        if let Some((at, set)) = self.state.lock().expect("paused cache").as_ref() {
            if at.elapsed() < ttl {
                return Ok(set.clone());
            }
        }
        let set = Arc::new(store.paused_queues().await?);
        *self.state.lock().expect("paused cache") = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    fn invalidate(&self) {
        *self.state.lock().expect("paused cache") = None;
    }
}

impl Client {
    /// Tasks matching `filter`, newest first: up to `limit` (at most [`MAX_PAGE`]) with
    /// ids below `before_id` (keyset pagination: pass the previous page's `next_before_id`).
    pub async fn list_tasks(
        &self,
        filter: &TaskFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<TaskPage> {
        self.check_open()?;
        filter.check()?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {MAX_PAGE}")));
        }
        let tasks = self.store().list_tasks(filter, before_id, limit).await?;
        let next_before_id = match tasks.last() {
            Some(last) if tasks.len() as u32 == limit => Some(last.id),
            _ => None,
        };
        Ok(TaskPage {
            tasks,
            next_before_id,
        })
    }

    /// How many tasks match `filter`.
    pub async fn count_tasks(&self, filter: &TaskFilter) -> Result<i64> {
        self.check_open()?;
        filter.check()?;
        self.store().count_tasks(filter).await
    }

    /// Makes a failed or cancelled task wait again, due now, with a fresh attempt budget.
    /// Err(InvalidState) for a task that is live or finished; Err(NotFound) when it is gone.
    pub async fn retry(&self, task_id: i64) -> Result<()> {
        self.check_open()?;
        self.store().bulk_one(Bulk::Retry, task_id).await?;
        crate::telemetry::retried(1);
        Ok(())
    }

    /// [`Client::retry`] on the next [`BULK_BATCH`] failed or cancelled tasks matching
    /// `filter` with ids above `after_id` (0 to start). Call again with `next_after_id`
    /// until it is None; a progress bar can follow the batches.
    pub async fn retry_batch(&self, filter: &TaskFilter, after_id: i64) -> Result<BulkBatch> {
        self.bulk_batch(Bulk::Retry, filter, after_id).await
    }

    /// Retries every failed or cancelled task matching `filter`; returns how many.
    pub async fn retry_matching(&self, filter: &TaskFilter) -> Result<u64> {
        self.bulk_all(Bulk::Retry, filter).await
    }

    /// [`Client::cancel`] on the next [`BULK_BATCH`] live tasks matching `filter` with
    /// ids above `after_id`.
    pub async fn cancel_batch(&self, filter: &TaskFilter, after_id: i64) -> Result<BulkBatch> {
        self.bulk_batch(Bulk::Cancel, filter, after_id).await
    }

    /// Cancels every live task matching `filter`; returns how many.
    pub async fn cancel_matching(&self, filter: &TaskFilter) -> Result<u64> {
        self.bulk_all(Bulk::Cancel, filter).await
    }

    /// Stops dispatching `queue` in this namespace until [`Client::resume_queue`]; tasks
    /// may still be created on it. Every process notices within one sweep interval.
    pub async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, true).await
    }

    pub async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, false).await
    }

    /// Sets (or, with `None`s, removes) `queue`'s limits: at most `max_processing` of its
    /// tasks processing at once and `max_per_second` claims per second, across every
    /// worker of every process, enforced in the claim. Every process notices within one
    /// sweep interval; this one at once.
    pub async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        self.check_open()?;
        check_key("queue", queue)?;
        if limits.max_processing == Some(0) {
            return Err(invalid(
                "max_processing must be at least 1 (pause the queue to stop it)",
            ));
        }
        if let Some(rate) = limits.max_per_second {
            if !(rate.is_finite() && rate > 0.0 && rate <= MAX_PER_SECOND) {
                return Err(invalid(format!(
                    "max_per_second must be above 0 and at most {MAX_PER_SECOND}, got {rate}"
                )));
            }
        }
        self.store().set_limits(queue, limits).await?;
        self.paused_cache().invalidate();
        Ok(())
    }

    /// Every queue of the namespace with its counts by status, pause flag and limits.
    pub async fn queues(&self) -> Result<Vec<QueueSummary>> {
        self.check_open()?;
        self.store().queue_summaries().await
    }

    /// Tasks finished and failed per minute over the last `minutes` minutes, oldest first.
    pub async fn rates(&self, minutes: u32) -> Result<Vec<RatePoint>> {
        self.check_open()?;
        if !(1..=MAX_RATE_MINUTES).contains(&minutes) {
            return Err(invalid(format!("minutes must be 1 to {MAX_RATE_MINUTES}")));
        }
        self.store().rates(minutes).await
    }

    /// Waits up to `wait` while `queue` is paused (as read at most one sweep interval
    /// ago). Returns the wait left once it is not paused, or None if it stayed paused.
    pub(crate) async fn wait_while_paused(
        &self,
        queue: &str,
        wait: Duration,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<Duration>> {
        let ttl = self.config().sweep_interval;
        let until = crate::clock::deadline_after(wait);
        loop {
            if !self.paused_cache().get(self.store(), ttl).await?.contains(queue) {
                return Ok(Some(until.saturating_duration_since(tokio::time::Instant::now())));
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || cancel.is_cancelled() {
                return Ok(None);
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(ttl)) => {}
                _ = cancel.cancelled() => return Ok(None),
            }
        }
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        self.check_open()?;
        check_key("queue", queue)?;
        self.store().set_paused(queue, paused).await?;
        self.paused_cache().invalidate();
        Ok(())
    }

    async fn bulk_batch(&self, bulk: Bulk, filter: &TaskFilter, after_id: i64) -> Result<BulkBatch> {
        self.check_open()?;
        filter.check()?;
        let (changed, next_after_id) = self
            .store()
            .bulk_batch(bulk, filter, after_id, BULK_BATCH)
            .await?;
        match bulk {
            Bulk::Retry => crate::telemetry::retried(changed),
            Bulk::Cancel => crate::telemetry::cancelled(changed),
        }
        Ok(BulkBatch {
            changed,
            next_after_id,
        })
    }

    async fn bulk_all(&self, bulk: Bulk, filter: &TaskFilter) -> Result<u64> {
        let mut total = 0;
        let mut after_id = 0;
        loop {
            let batch = self.bulk_batch(bulk, filter, after_id).await?;
            total += batch.changed;
            match batch.next_after_id {
                Some(next) => after_id = next,
                None => return Ok(total),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn filters_read_from_json() {
        let f = TaskFilter::from_json(r#"{"status": "failed", "queue": "Q"}"#).unwrap();
        assert_eq!(f, TaskFilter::default().status(Status::Failed).queue("Q"));
        assert_eq!(TaskFilter::from_json("").unwrap(), TaskFilter::default());
        assert_eq!(TaskFilter::from_json("{}").unwrap(), TaskFilter::default());
        for bad in [
            r#"{"stat": "failed"}"#,
            r#"{"status": "done"}"#,
            "[1]",
            r#"{"queue": "a b"}"#,
        ] {
            assert!(
                matches!(TaskFilter::from_json(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn statuses_parse_as_people_type_them() {
        assert_eq!(parse_status("Failed").unwrap(), Status::Failed);
        assert_eq!(parse_status(" waiting ").unwrap(), Status::Waiting);
        assert!(matches!(parse_status("done"), Err(Error::InvalidArgument(_))));
    }
}
