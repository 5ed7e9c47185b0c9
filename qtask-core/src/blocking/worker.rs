//! The worker engine for callers without an async runtime (C, Go, Python): the same
//! fetcher, fenced lease renewal, batched completer and graceful stop as
//! [`crate::Worker`], with a plain function as the handler, run on the shared
//! runtime's blocking threads (one per running task, at most `concurrency`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{wait, Client};
use crate::error::Result;
use crate::outcome::{outcome_of, Outcome, TimeUp};
use crate::task::Message;
use crate::worker::{Handle, WorkerReport};

/// How often a running worker looks at its stop signal.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Tells a running [`Worker`] to stop. Cheap to clone; [`StopSignal::stop`] is one
/// atomic store, so it may be called from any thread and from a signal handler.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    stopped: Arc<AtomicBool>,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The raw flag, for a binding that stops the worker from a signal handler.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stopped.clone()
    }
}

/// Where a handler that hands its task elsewhere (a thread pool or an event loop of
/// the host) sends how the attempt ended: see [`Worker::run_replying`]. Dropped
/// without a send, the attempt fails and is retried.
#[derive(Debug)]
pub struct Reply {
    sender: tokio::sync::oneshot::Sender<Outcome>,
}

impl Reply {
    /// Ends the attempt: what a [`Worker::run`] handler would have returned.
    pub fn send<D: Into<Outcome>>(self, returned: std::result::Result<D, String>) {
        let _ = self.sender.send(outcome_of(returned));
    }
}

/// Runs a blocking handler on the tasks of one queue.
pub struct Worker {
    /// `Err(Closed)` when the client was opened before a fork.
    client: Result<crate::Client>,
    queue: String,
    concurrency: usize,
    time_limit: Option<Duration>,
}

impl Worker {
    pub fn new(client: &Client, queue: impl Into<String>) -> Self {
        Worker {
            client: client.live().cloned(),
            queue: queue.into(),
            concurrency: 1,
            time_limit: None,
        }
    }

    /// Handlers running at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The longest one attempt may run (default: none). When it passes, the attempt
    /// fails with "time limit of Ns exceeded" (retried with backoff) and the handler's
    /// [`TimeUp`] is set (see [`Worker::run_with_time_up`]); a thread cannot be
    /// stopped from outside, so the handler keeps its slot until it returns, and what
    /// it returns then is ignored.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Works on this thread's behalf until `stop` is signalled, then lets running
    /// handlers end and returns what the worker did. The handler returns what
    /// [`crate::Worker::run`]'s does: `Ok(())` finishes, `Ok(value)` finishes with a
    /// result, `Ok(Outcome::…)` retries after a delay, cancels or fails now, and
    /// `Err(text)` fails the attempt with `text` kept as its last error; a panic fails
    /// it too.
    pub fn run<H, D>(self, handler: H, stop: &StopSignal) -> Result<WorkerReport>
    where
        H: Fn(Message) -> std::result::Result<D, String> + Send + Sync + 'static,
        D: Into<Outcome> + 'static,
    {
        self.run_with_time_up(move |message, _time_up| handler(message), stop)
    }

    /// [`Worker::run`] with a handler that also gets its attempt's [`TimeUp`], to poll
    /// (or hook) when the worker has a time limit.
    pub fn run_with_time_up<H, D>(self, handler: H, stop: &StopSignal) -> Result<WorkerReport>
    where
        H: Fn(Message, &TimeUp) -> std::result::Result<D, String> + Send + Sync + 'static,
        D: Into<Outcome> + 'static,
    {
        let handler = Arc::new(handler);
        let handle: Handle = Arc::new(move |message, time_up| {
            let handler = handler.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || outcome_of(handler(message, &time_up)))
                    .await
                    .unwrap_or_else(|e| Outcome::Retry(format!("handler panicked: {e}")))
            })
        });
        self.run_handle(handle, stop)
    }

    /// [`Worker::run_with_time_up`] for a host that runs handlers on threads (or an
    /// event loop) of its own: `handler` is called on an engine thread for each task
    /// and must not block; it hands the task on, and whoever runs it sends the outcome
    /// through the [`Reply`]. At most `concurrency` tasks are handed out and not yet
    /// replied to. This spares a thread switch per task, and lets a host run several
    /// ready tasks in one go (Python: under one GIL acquisition).
    pub fn run_replying<H>(self, handler: H, stop: &StopSignal) -> Result<WorkerReport>
    where
        H: Fn(Message, TimeUp, Reply) + Send + Sync + 'static,
    {
        let handle: Handle = Arc::new(move |message, time_up| {
            let (sender, answer) = tokio::sync::oneshot::channel();
            handler(message, time_up, Reply { sender });
            Box::pin(async move {
                answer
                    .await
                    .unwrap_or_else(|_| Outcome::Retry("the handler dropped its reply".to_owned()))
            })
        });
        self.run_handle(handle, stop)
    }

    fn run_handle(self, handle: Handle, stop: &StopSignal) -> Result<WorkerReport> {
        let stop = stop.clone();
        let mut engine = crate::Worker::new(self.client?, self.queue).concurrency(self.concurrency);
        if let Some(limit) = self.time_limit {
            engine = engine.time_limit(limit);
        }
        wait(async move {
            let stopped = async move {
                while !stop.is_stopped() {
                    tokio::time::sleep(STOP_CHECK).await;
                }
            };
            engine.run_handle(handle, false, stopped).await
        })
    }
}
