//! The worker engine: one fetcher per queue claims as many tasks as there are free
//! slots in one statement; each task runs its handler in a slot while its lease is
//! renewed (fenced, batched); outcomes go through the client's completer, so the
//! finishes of many slots share one commit. A stop lets running handlers end.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep;
use tracing::Instrument;

use crate::client::Client;
use crate::error::Result;
use crate::task::{Fenced, Message, Status};

/// How long one fetch waits for work; also how soon a stop request is noticed.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Claims in flight at once: the next is made while the previous one's commit is slow.
const MAX_FETCHES: usize = 2;
/// After the first slot frees up, the fetcher waits at most this long for half of the
/// slots to be free, so that claims go in batches instead of one by one as handlers end.
const GATHER: Duration = Duration::from_millis(2);
/// Claimed tasks awaiting their outcome's commit, per slot: enough that claims go on
/// while earlier finishes commit, few enough that a killed worker leaves few to run again.
const UNSETTLED_PER_SLOT: usize = 4;
/// Back-off while the database or queue is unreachable: never exit, never spin.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Runs a handler on the tasks of one queue.
pub struct Worker {
    client: Client,
    queue: String,
    concurrency: usize,
}

/// What a worker did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub finished: u64,
    /// Handler errors (retried later or failed for good).
    pub failed: u64,
    /// Outcomes of attempts that were no longer current (the lease ran out and a newer
    /// attempt began, or the task ended meanwhile): nothing was changed.
    pub skipped: u64,
}

#[derive(Default)]
struct Counters {
    finished: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl Worker {
    pub fn new(client: Client, queue: impl Into<String>) -> Self {
        Worker {
            client,
            queue: queue.into(),
            concurrency: 1,
        }
    }

    /// Handlers running at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Works until `shutdown` resolves, then lets running handlers end and returns.
    /// A handler's `Err(text)` fails the attempt with `text` as its last error; a
    /// panic fails it too.
    pub async fn run<H, Fut>(self, handler: H, shutdown: impl Future<Output = ()>) -> Result<WorkerReport>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // Claimed tasks whose outcome has not committed yet: bounded, so a slow
        // database holds the fetcher back, and a worker that dies leaves at most this
        // many tasks to run again.
        let capacity = self.concurrency * UNSETTLED_PER_SLOT;
        let unsettled = Arc::new(Semaphore::new(capacity));
        let fetches = Arc::new(Semaphore::new(MAX_FETCHES));
        let errors = Arc::new(AtomicU32::new(0));
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let fetch_permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = fetches.clone().acquire_owned() => permit.expect("never closed"),
            };
            let first = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            };
            let free = gather(&slots, first, self.concurrency.div_ceil(2)).await;
            let Ok(settle) = unsettled.clone().try_acquire_many_owned(free.len() as u32) else {
                // Outcomes lag behind: let them commit before claiming more.
                drop(free);
                let _ = unsettled
                    .clone()
                    .acquire_many_owned(self.concurrency as u32)
                    .await;
                continue;
            };
            while running.try_join_next().is_some() {}
            let fetch = Fetch {
                client: self.client.clone(),
                queue: self.queue.clone(),
                counters: counters.clone(),
                errors: errors.clone(),
            };
            running.spawn(fetch.run(free, settle, fetch_permit, handler.clone()));
            // After a failed fetch, pause before the next (never exit, never spin).
            let failures = errors.load(Ordering::Relaxed);
            if failures > 0 {
                let pause = Duration::from_millis(100 * u64::from(failures.min(50))).min(MAX_ERROR_PAUSE);
                tokio::select! {
                    _ = sleep(pause) => {}
                    _ = &mut shutdown => break,
                }
            }
        }
        // Fetches in flight still hand out what they claimed: every claimed task runs.
        while running.join_next().await.is_some() {}
        // Every claimed task holds one of these until its outcome committed.
        let _all_settled = unsettled.acquire_many(capacity as u32).await;
        Ok(WorkerReport {
            finished: counters.finished.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            skipped: counters.skipped.load(Ordering::Relaxed),
        })
    }
}

/// Takes free slots until `enough` are held, or [`GATHER`] passed since the first.
async fn gather(
    slots: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    enough: usize,
) -> Vec<OwnedSemaphorePermit> {
    let mut free = vec![first];
    let until = tokio::time::Instant::now() + GATHER;
    loop {
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            free.push(permit);
        }
        if free.len() >= enough {
            return free;
        }
        tokio::select! {
            permit = slots.clone().acquire_owned() => free.push(permit.expect("never closed")),
            _ = tokio::time::sleep_until(until) => return free,
        }
    }
}

/// One claim of up to as many tasks as it holds slots for.
struct Fetch {
    client: Client,
    queue: String,
    counters: Arc<Counters>,
    errors: Arc<AtomicU32>,
}

impl Fetch {
    async fn run<H, Fut>(
        self,
        mut free: Vec<OwnedSemaphorePermit>,
        mut settle: OwnedSemaphorePermit,
        _in_flight: OwnedSemaphorePermit,
        handler: Arc<H>,
    ) where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        match self.client.fetch(&self.queue, free.len(), POLL_WAIT).await {
            Ok(messages) => {
                self.errors.store(0, Ordering::Relaxed);
                for message in messages {
                    let slot = Slot {
                        client: self.client.clone(),
                        counters: self.counters.clone(),
                        permit: free.pop(),
                        _settle: settle.split(1),
                    };
                    let span = crate::trace::handle_span(&message);
                    tokio::spawn(slot.run(message, handler.clone()).instrument(span));
                }
            }
            Err(err) => {
                let failures = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %err, queue = %self.queue, "qtask worker: fetch failed; retrying");
                }
            }
        }
    }
}

/// One claimed task. Its slot frees up as soon as the handler returns; its outcome
/// then commits with others, and only after that is it counted (and `_settle` freed).
struct Slot {
    client: Client,
    counters: Arc<Counters>,
    permit: Option<OwnedSemaphorePermit>,
    _settle: Option<OwnedSemaphorePermit>,
}

impl Slot {
    async fn run<H, Fut>(mut self, message: Message, handler: Arc<H>)
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        let fence = message.fence();
        let mut lease = message.lease;
        let queue = message.queue.clone();
        let started = std::time::Instant::now();
        // The handler's own spans nest in this attempt's `qtask.handle` span.
        let mut job = tokio::spawn(handler(message).in_current_span());
        let mut current = true;
        // Renew the lease at half its length while the handler runs; once the attempt
        // is stale there is nothing left to renew.
        let outcome = loop {
            tokio::select! {
                joined = &mut job => break joined,
                _ = sleep(lease / 2), if current => {
                    match self.client.renew(fence).await {
                        Ok(Fenced::Current(granted)) => lease = granted,
                        Ok(Fenced::Stale) => current = false,
                        Err(err) => tracing::warn!(error = %err, task_id = fence.task_id, "qtask worker: lease renewal failed"),
                    }
                }
            }
        };
        drop(self.permit.take());
        let result = match outcome {
            Ok(result) => result,
            Err(join) => Err(format!("handler panicked: {join}")),
        };
        crate::telemetry::handler_done(&queue, result.is_ok(), started.elapsed());
        let span = tracing::Span::current();
        span.record("outcome", if result.is_ok() { "finished" } else { "failed" });
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        let ok = result.is_ok();
        let counters = &self.counters;
        match result {
            Ok(()) => match self.client.finish_attempt(fence).await {
                Ok(Fenced::Current(())) => {
                    counters.finished.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Fenced::Stale) => {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                }
                // The lease runs out and the task comes back: at least once.
                Err(err) => {
                    tracing::warn!(error = %err, task_id = fence.task_id, "qtask worker: finish failed")
                }
            },
            Err(text) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                match self.client.fail_attempt(fence, &text).await {
                    Ok(Fenced::Current(Status::Failed)) => {
                        tracing::warn!(task_id = fence.task_id, error = %text, "qtask worker: task failed for good")
                    }
                    Ok(Fenced::Current(_)) => {}
                    Ok(Fenced::Stale) => {
                        counters.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, task_id = fence.task_id, "qtask worker: fail failed")
                    }
                }
            }
        }
        crate::telemetry::claim_to_finish(&queue, ok, started.elapsed());
    }
}
