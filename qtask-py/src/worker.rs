//! `qtask._qtask.run_worker`, `WorkerStop` and `TimeUp`: Python handlers driven by
//! qtask-core's one worker engine (`blocking::Worker`).
//!
//! The engine runs with the GIL released and hands tasks to Python without waiting
//! (`pool.rs`): sync handlers run on a pool of threads, `async def` ones as coroutines
//! on the asyncio loop of `qtask/_worker.py`. The Python side passes, per queue, a
//! wrapper that takes the message (a dict) and the attempt's `TimeUp` (None without a
//! time limit) and returns how the attempt ends: `None` (finish), the error text
//! (retry with backoff, kept as `last_error`), or a pair `(kind, value)`:
//! `("result", json_text)`, `("retry_after", seconds)`, `("cancel", reason)`,
//! `("fail_now", reason)`. An async wrapper sends that through the attempt's
//! `AttemptReply` instead of returning it.

use pyo3::prelude::*;
use qtask_core::blocking::{StopSignal, Worker};
use qtask_core::{seconds, Error, Message, Outcome, WorkerReport};

use crate::client::Client;
use crate::error::PyQtaskResult;
use crate::pool::{AsyncInbox, Job, Pool};

/// Stops a running worker gracefully. `stop()` is one atomic store: call it from any
/// thread or from a signal handler.
#[pyclass(module = "qtask._qtask", frozen)]
#[derive(Default)]
pub struct WorkerStop {
    signal: StopSignal,
}

#[pymethods]
impl WorkerStop {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn stop(&self) {
        self.signal.stop();
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.signal.is_stopped()
    }
}

/// Tells a running handler that the worker's time limit for its attempt passed.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct TimeUp {
    pub(crate) inner: qtask_core::TimeUp,
}

#[pymethods]
impl TimeUp {
    /// True once the time limit passed (the attempt has then already failed).
    #[getter]
    fn is_set(&self) -> bool {
        self.inner.is_up()
    }

    /// Calls `callback()` once when the time is up (at once if it already is), on
    /// an engine thread that takes the GIL for it; its exceptions are ignored.
    fn on_set(&self, callback: Py<PyAny>) {
        self.inner.on_up(move || {
            let _ = Python::try_attach(|py| {
                if let Err(err) = callback.call0(py) {
                    err.write_unraisable(py, None);
                }
            });
        });
    }
}

/// A message as the Python layer reads it: `{"task_id", "attempt", "name", "queue",
/// "deadline_at", "input"}` (the input apart, so that its keys never meet ours).
pub(crate) fn message_json(message: Message) -> String {
    serde_json::json!({
        "task_id": message.task_id,
        "attempt": message.attempt,
        "name": message.name,
        "queue": message.queue,
        "deadline_at": message.deadline_at,
        "input": message.input,
    })
    .to_string()
}

/// Reads what the Python callable returned (see the module comment).
pub(crate) fn outcome_of(returned: &Bound<'_, PyAny>) -> Outcome {
    if returned.is_none() {
        return Outcome::Finish(None);
    }
    if let Ok(text) = returned.extract::<String>() {
        return Outcome::Retry(text);
    }
    let Ok((kind, value)) = returned.extract::<(String, Bound<'_, PyAny>)>() else {
        return Outcome::Retry("the handler wrapper returned an unknown outcome".into());
    };
    let text = || value.extract::<String>().unwrap_or_default();
    match kind.as_str() {
        "result" => match serde_json::from_str(&text()) {
            Ok(result) => Outcome::Finish(Some(result)),
            Err(e) => Outcome::FailNow(format!("the result is not JSON: {e}")),
        },
        "retry_after" => match value.extract::<f64>() {
            Ok(after) => match seconds("after", after) {
                Ok(delay) => Outcome::RetryAfter(delay),
                Err(e) => Outcome::Retry(format!("qtask.Retry: {e}")),
            },
            Err(_) => Outcome::Retry("qtask.Retry: after must be a number of seconds".into()),
        },
        "cancel" => Outcome::Cancel(text()),
        "fail_now" => Outcome::FailNow(text()),
        _ => Outcome::Retry(text()),
    }
}

/// The engine with its time limit, for `run_worker` and `run_async_worker`.
fn engine(
    client: &Client,
    queue: String,
    concurrency: usize,
    time_limit: Option<f64>,
    kinds: Option<Vec<String>>,
) -> PyQtaskResult<(Worker, bool)> {
    if concurrency == 0 {
        return Err(Error::InvalidArgument("concurrency must be at least 1".into()).into());
    }
    let time_limit = time_limit.map(|s| seconds("time_limit", s)).transpose()?;
    let client = client.client()?;
    // Tasks wait ready for the next free thread or coroutine, which starts their clock.
    let mut worker = Worker::new(&client, queue)
        .concurrency(concurrency)
        .hand_ahead_for_bursts();
    if let Some(limit) = time_limit {
        worker = worker.time_limit(limit);
    }
    if let Some(kinds) = kinds {
        worker = worker.kinds(kinds);
    }
    Ok((worker, time_limit.is_some()))
}

type ReportTuple = (u64, u64, u64, u64, u64);

fn report_tuple(report: WorkerReport) -> ReportTuple {
    (
        report.finished,
        report.failed,
        report.skipped,
        report.snoozed,
        report.cancelled,
    )
}

/// Runs `engine` (see [`engine`]) until `stop` is set, with the GIL released: each
/// task goes to `deliver` (the handler pool or the async inbox) as a [`Job`], with its
/// `TimeUp` when a time limit applies to it.
fn run_engine(
    py: Python<'_>,
    (worker, limited): (Worker, bool),
    stop: &WorkerStop,
    deliver: impl Fn(Job) + Send + Sync + 'static,
) -> PyQtaskResult<ReportTuple> {
    let signal = stop.signal.clone();
    let report = py.detach(move || {
        worker.run_handing_off(
            move |message, time_up, reply| {
                let time_up = (limited || message.time_limit.is_some()).then_some(time_up);
                deliver(Job {
                    message,
                    time_up,
                    reply,
                });
            },
            &signal,
        )
    })?;
    Ok(report_tuple(report))
}

/// Works on `queue` with a sync `handler` on `concurrency` threads until `stop` is
/// set, then lets running handlers end; returns `(finished, failed, skipped, snoozed,
/// cancelled)`. `time_limit` is in seconds; `kinds`: the task names `handler` takes
/// (default: all; the engine retries the others, see `Worker::kinds`).
#[pyfunction]
#[pyo3(signature = (client, queue, handler, concurrency, stop, time_limit=None, kinds=None))]
#[allow(clippy::too_many_arguments)] // the Python function's parameters, one by one
pub fn run_worker(
    py: Python<'_>,
    client: &Client,
    queue: String,
    handler: Py<PyAny>,
    concurrency: usize,
    stop: &WorkerStop,
    time_limit: Option<f64>,
    kinds: Option<Vec<String>>,
) -> PyQtaskResult<ReportTuple> {
    let engine = engine(client, queue, concurrency, time_limit, kinds)?;
    let pool = Pool::new(concurrency, handler);
    let handing = pool.clone();
    let report = run_engine(py, engine, stop, move |job| handing.push(job));
    // The handler threads take the GIL to finish what they hold: join them without it.
    py.detach(|| pool.close_and_join());
    report
}

/// [`run_worker`] for `async def` handlers: tasks go to `inbox`, which the asyncio
/// loop drains and runs as coroutines, at most `concurrency` at once.
#[pyfunction]
#[pyo3(signature = (client, queue, inbox, concurrency, stop, time_limit=None, kinds=None))]
#[allow(clippy::too_many_arguments)] // the Python function's parameters, one by one
pub fn run_async_worker(
    py: Python<'_>,
    client: &Client,
    queue: String,
    inbox: Py<AsyncInbox>,
    concurrency: usize,
    stop: &WorkerStop,
    time_limit: Option<f64>,
    kinds: Option<Vec<String>>,
) -> PyQtaskResult<ReportTuple> {
    let engine = engine(client, queue, concurrency, time_limit, kinds)?;
    run_engine(py, engine, stop, move |job| inbox.get().push(job))
}
