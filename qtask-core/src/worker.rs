//! The worker engine: one fetcher per queue claims as many tasks as there are free
//! slots in one statement; each task runs its handler in a slot while its lease is
//! renewed (fenced, batched); outcomes go through the client's completer, so the
//! finishes of many slots share one commit. A stop lets running handlers end.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep;

use crate::client::Client;
use crate::error::Result;
use crate::task::{Fenced, Message, Status};

/// How long one fetch waits for work; also how soon a stop request is noticed.
const POLL_WAIT: Duration = Duration::from_millis(500);
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
        let mut running = JoinSet::new();
        let mut errors = 0u32;
        tokio::pin!(shutdown);
        let mut stopping = false;
        while !stopping {
            let first = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => permit.expect("the slots are never closed"),
            };
            let mut free = vec![first];
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                free.push(permit);
            }
            while running.try_join_next().is_some() {}
            // A fetch in flight is never dropped: what it claimed is run, even when
            // the stop comes meanwhile.
            let fetch = self.client.fetch(&self.queue, free.len(), POLL_WAIT);
            tokio::pin!(fetch);
            let fetched = tokio::select! {
                fetched = &mut fetch => fetched,
                _ = &mut shutdown => {
                    stopping = true;
                    fetch.await
                }
            };
            match fetched {
                Ok(messages) => {
                    errors = 0;
                    for (message, permit) in messages.into_iter().zip(free.drain(..)) {
                        let slot = Slot {
                            client: self.client.clone(),
                            counters: counters.clone(),
                            _permit: permit,
                        };
                        running.spawn(slot.run(message, handler.clone()));
                    }
                }
                Err(err) => {
                    drop(free);
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(error = %err, queue = %self.queue, "qtask worker: fetch failed; retrying");
                    }
                    let pause = Duration::from_millis(100 * u64::from(errors.min(50))).min(MAX_ERROR_PAUSE);
                    tokio::select! {
                        _ = sleep(pause) => {}
                        _ = &mut shutdown => break,
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
        Ok(WorkerReport {
            finished: counters.finished.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            skipped: counters.skipped.load(Ordering::Relaxed),
        })
    }
}

/// One running task; its permit frees the slot when it ends.
struct Slot {
    client: Client,
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    async fn run<H, Fut>(self, message: Message, handler: Arc<H>)
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        let fence = message.fence();
        let mut lease = message.lease;
        let mut job = tokio::spawn(handler(message));
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
        let result = match outcome {
            Ok(result) => result,
            Err(join) => Err(format!("handler panicked: {join}")),
        };
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
    }
}
