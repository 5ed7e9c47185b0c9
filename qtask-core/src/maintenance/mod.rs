//! The sweeper: background services that keep the table and the queue honest.
//! Every claim is atomic, so any number of processes may sweep one namespace at once.

mod cleaner;
mod dispatcher;
mod maintainer;
mod reaper;
mod scheduler;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

pub use maintainer::Maintainer;

use crate::error::Result;
use crate::queue::Queue;
use crate::store::Store;

/// One tick never runs more than this many batches per service, so a backlog
/// cannot starve the others.
const MAX_BATCHES_PER_TICK: u32 = 10;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Tasks offered to the queue (due delayed tasks, overdue ones, timed-out offers).
    pub dispatched: u64,
    /// Tasks marked failed (deadline or max_count).
    pub gave_up: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Tasks made by schedules (periodic tasks) whose tick came.
    pub scheduled: u64,
}

/// Counters of one client, shown by `stats()`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub offered: AtomicU64,
    pub dispatched: AtomicU64,
    pub redispatched: AtomicU64,
    pub gave_up: AtomicU64,
    pub deleted: AtomicU64,
}

impl Metrics {
    /// An attempt began (a fetch claimed the task).
    pub(crate) fn count_claim(&self, attempt: i64) {
        crate::telemetry::dispatched(attempt);
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        if attempt > 1 {
            self.redispatched.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every service needs.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub metrics: Arc<Metrics>,
    pub batch_size: u32,
}

/// One pass of every service, in the order that keeps the contract: make the tasks
/// of due schedule ticks, give up on what may not run again, then dispatch what is
/// due, then delete what has expired.
pub(crate) async fn sweep_once(ctx: &Context) -> Result<SweepReport> {
    use crate::telemetry::timed;
    let scheduled = timed("scheduler", scheduler::run_once(ctx)).await?;
    let gave_up = timed("reaper", reaper::run_once(ctx)).await?;
    let dispatched = timed("dispatcher", dispatcher::run_once(ctx)).await?;
    let deleted = timed("cleaner", cleaner::run_once(ctx)).await?;
    crate::telemetry::swept(gave_up, deleted);
    Ok(SweepReport {
        dispatched,
        gave_up,
        deleted,
        scheduled,
    })
}

/// Runs `batch` until it returns less than a full batch, at most MAX_BATCHES_PER_TICK
/// times. An error after some batches succeeded ends the tick with what they did (the
/// next tick retries); an error on the first batch is returned.
async fn in_batches<F, Fut>(batch_size: u32, mut batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut total = 0;
    for i in 0..MAX_BATCHES_PER_TICK {
        let n = match batch().await {
            Ok(n) => n,
            Err(err) if i > 0 => {
                tracing::warn!(error = %err, "qtask: sweep batch failed; the next sweep retries");
                return Ok(total);
            }
            Err(err) => return Err(err),
        };
        total += n;
        if n < u64::from(batch_size) {
            break;
        }
    }
    Ok(total)
}
