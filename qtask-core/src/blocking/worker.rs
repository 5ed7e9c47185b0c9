//! The worker engine for callers without an async runtime (C, Go, Python): the same
//! fetcher, fenced lease renewal, batched completer and graceful stop as
//! [`crate::Worker`], with a plain function as the handler, run on the shared
//! runtime's blocking threads (one per running task, at most `concurrency`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{wait, Client};
use crate::error::Result;
use crate::task::Message;
use crate::worker::WorkerReport;

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

/// Runs a blocking handler on the tasks of one queue.
pub struct Worker {
    /// `Err(Closed)` when the client was opened before a fork.
    client: Result<crate::Client>,
    queue: String,
    concurrency: usize,
}

impl Worker {
    pub fn new(client: &Client, queue: impl Into<String>) -> Self {
        Worker {
            client: client.live().cloned(),
            queue: queue.into(),
            concurrency: 1,
        }
    }

    /// Handlers running at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Works on this thread's behalf until `stop` is signalled, then lets running
    /// handlers end and returns what the worker did. `Ok(())` from the handler finishes
    /// the attempt, `Err(text)` fails it with `text` kept as its last error; a panic
    /// fails it too.
    pub fn run<H>(self, handler: H, stop: &StopSignal) -> Result<WorkerReport>
    where
        H: Fn(Message) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let stop = stop.clone();
        let engine = crate::Worker::new(self.client?, self.queue).concurrency(self.concurrency);
        wait(async move {
            let run_one = move |message: Message| {
                let handler = handler.clone();
                async move {
                    tokio::task::spawn_blocking(move || handler(message))
                        .await
                        .unwrap_or_else(|e| Err(format!("handler panicked: {e}")))
                }
            };
            let stopped = async move {
                while !stop.is_stopped() {
                    tokio::time::sleep(STOP_CHECK).await;
                }
            };
            engine.run(run_one, stopped).await
        })
    }
}
