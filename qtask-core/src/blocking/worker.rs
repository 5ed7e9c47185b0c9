//! The worker engine for callers without an async runtime (C, Go, Python): the same
//! fetcher, fenced lease renewal, batched completer and graceful stop as
//! [`crate::Worker`], with either a plain function as the handler, run on the shared
//! runtime's blocking threads (one per running task, at most `concurrency`), or a
//! hand-off ([`Worker::run_handing_off`]): each claimed task goes to the caller, who
//! runs it where it likes (goroutines, its own threads) and answers with a [`Reply`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{wait, Client};
use crate::error::Result;
use crate::outcome::{outcome_of, Outcome, TimeUp};
use crate::task::Message;
use crate::worker::{Handle, WorkerReport};

/// Tasks [`Worker::hand_ahead_for_bursts`] hands over ahead at least: a Go worker of
/// concurrency 1 on PostgreSQL + Redis with no-op handlers drained 7.1–8.0k tasks/s
/// handed none ahead, 11.4–15.3k with 8 (CPU per task 86–93 → 36–49 µs).
pub const HAND_AHEAD_AT_LEAST: usize = 8;

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

/// The answer to one task handed off by [`Worker::run_handing_off`]. Dropped without
/// [`Reply::send`], the attempt fails ("the task was dropped without an outcome").
#[derive(Debug)]
pub struct Reply(tokio::sync::oneshot::Sender<Outcome>);

impl Reply {
    /// Ends the attempt with `outcome` (ignored once the time limit ended it).
    pub fn send(self, outcome: Outcome) {
        let _ = self.0.send(outcome);
    }

    /// Ends the attempt with what a [`Worker::run`] handler would have returned.
    pub fn send_returned<D: Into<Outcome>>(self, returned: std::result::Result<D, String>) {
        self.send(outcome_of(returned));
    }

    /// Ends several attempts from one task on the engine's runtime: one wake-up of the
    /// runtime for the batch, and every outcome reaches the completer before it writes.
    /// Sent one by one from a caller's thread, the first wakes the engine, whose
    /// completer starts a write with that one alone.
    pub fn send_all(replies: Vec<(Reply, Outcome)>) {
        match super::runtime() {
            Ok(runtime) if replies.len() > 1 => {
                runtime.spawn(async move {
                    for (reply, outcome) in replies {
                        reply.send(outcome);
                    }
                });
            }
            _ => {
                for (reply, outcome) in replies {
                    reply.send(outcome);
                }
            }
        }
    }
}

/// Runs `wake` once the engine thread that calls this (a `run_handing_off` delivery)
/// has run the other tasks ready on it, such as the deliveries of the rest of the same
/// fetch; at once when called from another thread. A waiter woken then finds the
/// fetch's tasks whole.
pub fn after_ready_tasks(wake: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                tokio::task::yield_now().await;
                wake();
            });
        }
        Err(_) => wake(),
    }
}

/// Runs a blocking handler on the tasks of one queue.
pub struct Worker {
    /// `Err(Closed)` when the client was opened before a fork.
    client: Result<crate::Client>,
    queue: String,
    concurrency: usize,
    time_limit: Option<Duration>,
    kinds: Option<Vec<String>>,
    hand_ahead: usize,
}

impl Worker {
    pub fn new(client: &Client, queue: impl Into<String>) -> Self {
        Worker {
            client: client.live().cloned(),
            queue: queue.into(),
            concurrency: 1,
            time_limit: None,
            kinds: None,
            hand_ahead: 0,
        }
    }

    /// The task names this worker's handler takes; see [`crate::Worker::kinds`].
    pub fn kinds<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Handlers running at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Tasks [`Worker::run_handing_off`] hands over beyond the concurrency (default 0):
    /// ready for the caller's next free handler without a round trip through the
    /// engine, so that a burst of short tasks costs the caller one wake-up, not one
    /// each. The caller still runs at most `concurrency` at once, and calls
    /// [`TimeUp::start_clock`] as it starts each task: its time limit counts from
    /// there, not from the hand-over. Their leases are renewed meanwhile, as those of
    /// tasks claimed ahead are.
    pub fn hand_ahead(mut self, n: usize) -> Self {
        self.hand_ahead = n;
        self
    }

    /// [`Worker::hand_ahead`] as the bindings use it: as many as the concurrency, and
    /// at least [`HAND_AHEAD_AT_LEAST`]. Set the concurrency first.
    pub fn hand_ahead_for_bursts(self) -> Self {
        let n = self.concurrency.max(HAND_AHEAD_AT_LEAST);
        self.hand_ahead(n)
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
        let engine = self.into_engine()?;
        let handle: Handle = Arc::new(move |message, time_up| {
            let handler = handler.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || outcome_of(handler(message, &time_up)))
                    .await
                    .unwrap_or_else(|e| Outcome::Retry(format!("handler panicked: {e}")))
            })
        });
        run_engine(engine, handle, stop)
    }

    /// Works like [`Worker::run`], but hands each claimed task to `deliver` instead of
    /// running a handler on a thread of its own: `deliver` is called on the runtime's
    /// threads and must not block (it queues the task for the caller's own threads or
    /// goroutines), and the attempt ends when its [`Reply`] is sent. Up to
    /// `concurrency` tasks (plus [`Worker::hand_ahead`]) are out at once; a stop waits
    /// for the replies of those out.
    /// With a time limit, the attempt fails when it passes and the task's [`TimeUp`]
    /// is set; its slot stays taken until the reply comes (which is then ignored).
    pub fn run_handing_off<F>(self, deliver: F, stop: &StopSignal) -> Result<WorkerReport>
    where
        F: Fn(Message, TimeUp, Reply) + Send + Sync + 'static,
    {
        let held = self.hand_ahead > 0;
        // The engine counts a task handed ahead as running: it holds a slot.
        let slots = self.concurrency.saturating_add(self.hand_ahead);
        let engine = self.into_engine()?.concurrency(slots);
        let handle: Handle = Arc::new(move |message, time_up| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if held {
                time_up.hold_clock();
            }
            deliver(message, time_up, Reply(tx));
            Box::pin(async move {
                rx.await
                    .unwrap_or_else(|_| Outcome::Retry("the task was dropped without an outcome".into()))
            })
        });
        run_engine(engine, handle, stop)
    }

    fn into_engine(self) -> Result<crate::Worker> {
        let mut engine = crate::Worker::new(self.client?, self.queue).concurrency(self.concurrency);
        if let Some(limit) = self.time_limit {
            engine = engine.time_limit(limit);
        }
        if let Some(kinds) = self.kinds {
            engine = engine.kinds(kinds);
        }
        Ok(engine)
    }
}

/// Runs `engine` with `handle` on the shared runtime until `stop`.
fn run_engine(engine: crate::Worker, handle: Handle, stop: &StopSignal) -> Result<WorkerReport> {
    let stop = stop.clone();
    wait(async move {
        let stopped = async move {
            while !stop.is_stopped() {
                tokio::time::sleep(STOP_CHECK).await;
            }
        };
        engine.run_handle(handle, false, stopped).await
    })
}
