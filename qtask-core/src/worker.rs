//! A worker loop: pop, `processing`, run the handler, `finish` or `fail`, with a lease
//! kept alive while the handler runs and a graceful stop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::sleep;

use crate::client::Client;
use crate::error::Result;
use crate::task::{Message, Status};

/// How long one pop waits; also how soon a stop request is noticed.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Back-off while the database or queue is unreachable: never exit, never spin.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Runs a handler on the messages of one queue.
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
    /// Messages `processing` refused: stale duplicates of finished or cancelled tasks.
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
        let (stop, stopped) = watch::channel(false);
        let handler = Arc::new(handler);
        let counters = Arc::new(Counters::default());
        let mut slots = tokio::task::JoinSet::new();
        for _ in 0..self.concurrency {
            let slot = Slot {
                client: self.client.clone(),
                queue: self.queue.clone(),
                counters: counters.clone(),
                stopped: stopped.clone(),
            };
            let handler = handler.clone();
            slots.spawn(async move { slot.run(handler).await });
        }
        shutdown.await;
        let _ = stop.send(true);
        while slots.join_next().await.is_some() {}
        Ok(WorkerReport {
            finished: counters.finished.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            skipped: counters.skipped.load(Ordering::Relaxed),
        })
    }
}

struct Slot {
    client: Client,
    queue: String,
    counters: Arc<Counters>,
    stopped: watch::Receiver<bool>,
}

impl Slot {
    async fn run<H, Fut>(self, handler: Arc<H>)
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        let mut errors = 0u32;
        while !*self.stopped.borrow() {
            match self.client.pop(&self.queue, POLL_WAIT).await {
                Ok(Some(message)) => {
                    errors = 0;
                    self.handle(message, handler.as_ref()).await;
                }
                Ok(None) => errors = 0,
                Err(err) => {
                    errors += 1;
                    if errors.is_power_of_two() {
                        tracing::warn!(error = %err, queue = %self.queue, "qtask worker: pop failed; retrying");
                    }
                    let pause = Duration::from_millis(100 * u64::from(errors.min(50))).min(MAX_ERROR_PAUSE);
                    let mut stopped = self.stopped.clone();
                    tokio::select! {
                        _ = sleep(pause) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        }
    }

    async fn handle<H, Fut>(&self, message: Message, handler: &H)
    where
        H: Fn(Message) -> Fut,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        let id = message.task_id;
        let lease = match self.client.processing_lease(id).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(err) => {
                // The lease will run out and the task come back; nothing is lost.
                tracing::warn!(error = %err, task_id = id, "qtask worker: processing failed; task will be re-dispatched");
                return;
            }
        };
        let started = std::time::Instant::now();
        let mut job = tokio::spawn(handler(message));
        // Renew the lease at half its length while the handler runs.
        let outcome = loop {
            tokio::select! {
                joined = &mut job => break joined,
                _ = sleep(lease / 2) => {
                    if let Err(err) = self.client.processing_lease(id).await {
                        tracing::warn!(error = %err, task_id = id, "qtask worker: lease renewal failed");
                    }
                }
            }
        };
        let result = match outcome {
            Ok(result) => result,
            Err(join) => Err(format!("handler panicked: {join}")),
        };
        crate::telemetry::handler_done(&self.queue, result.is_ok(), started.elapsed());
        match result {
            Ok(()) => match self.client.finish(id).await {
                Ok(()) => {
                    self.counters.finished.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => tracing::warn!(error = %err, task_id = id, "qtask worker: finish failed"),
            },
            Err(text) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                match self.client.fail(id, &text).await {
                    Ok(Status::Failed) => {
                        tracing::warn!(task_id = id, error = %text, "qtask worker: task failed for good")
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, task_id = id, "qtask worker: fail failed"),
                }
            }
        }
    }
}
