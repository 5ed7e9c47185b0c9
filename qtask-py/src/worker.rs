//! `qtask._qtask.run_worker`, `WorkerStop` and `TimeUp`: Python handlers driven by
//! qtask-core's one worker engine (`blocking::Worker`).
//!
//! The engine runs with the GIL released; each handler call takes the GIL only
//! while Python runs. The Python side (`qtask/_worker.py`) passes one callable per
//! queue (and the task names it routes, if any: `kinds`) that takes the message as
//! JSON text ([`message_json`]) and the attempt's `TimeUp` (None without a time
//! limit) and returns how the attempt ends: `None` (finish), the
//! error text (retry with backoff, kept as `last_error`), or a pair
//! `(kind, value)`: `("result", json_text)`, `("retry_after", seconds)`,
//! `("cancel", reason)`, `("fail_now", reason)`. It also runs `async def` handlers
//! on its asyncio loop, waiting on them with the GIL released.

use pyo3::prelude::*;
use qtask_core::blocking::{StopSignal, Worker};
use qtask_core::{seconds, Error, Message, Outcome};

use crate::client::Client;
use crate::error::PyQtaskResult;

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
    inner: qtask_core::TimeUp,
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
fn outcome_of(returned: &Bound<'_, PyAny>) -> Outcome {
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

/// Calls the Python callable and reads its outcome; an exception out of the wrapper
/// fails the attempt with the exception's type and message.
fn call_handler(handler: &Py<PyAny>, message: Message, time_up: Option<&qtask_core::TimeUp>) -> Outcome {
    let text = message_json(message);
    Python::try_attach(|py| {
        let time_up = match time_up {
            Some(t) => match Py::new(py, TimeUp { inner: t.clone() }) {
                Ok(t) => t.into_any(),
                Err(err) => return Outcome::Retry(err.to_string()),
            },
            None => py.None(),
        };
        match handler.call1(py, (text, time_up)) {
            Ok(returned) => outcome_of(returned.bind(py)),
            Err(err) => Outcome::Retry(err.to_string()),
        }
    })
    .unwrap_or_else(|| Outcome::Retry("the Python interpreter is shutting down".to_owned()))
}

/// Works on `queue` with `handler` until `stop` is set, then lets running handlers
/// end; returns `(finished, failed, skipped, snoozed, cancelled)`. `time_limit` is
/// in seconds; `kinds`: the task names `handler` takes (default: all; the engine
/// retries the others, see `Worker::kinds`).
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
) -> PyQtaskResult<(u64, u64, u64, u64, u64)> {
    if concurrency == 0 {
        return Err(Error::InvalidArgument("concurrency must be at least 1".into()).into());
    }
    let time_limit = time_limit.map(|s| seconds("time_limit", s)).transpose()?;
    let client = client.client()?;
    let signal = stop.signal.clone();
    let report = py.detach(move || {
        let mut worker = Worker::new(&client, queue).concurrency(concurrency);
        if let Some(limit) = time_limit {
            worker = worker.time_limit(limit);
        }
        if let Some(kinds) = kinds {
            worker = worker.kinds(kinds);
        }
        let limited = time_limit.is_some();
        worker.run_with_time_up(
            move |message, time_up| {
                Ok::<_, String>(call_handler(&handler, message, limited.then_some(time_up)))
            },
            &signal,
        )
    })?;
    Ok((
        report.finished,
        report.failed,
        report.skipped,
        report.snoozed,
        report.cancelled,
    ))
}
