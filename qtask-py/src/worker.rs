//! `qtask._qtask.run_worker` and `WorkerStop`: Python handlers driven by qtask-core's
//! one worker engine (`blocking::Worker`).
//!
//! The engine runs with the GIL released; each handler call takes the GIL only
//! while Python runs. The Python side (`qtask/_worker.py`) passes one callable per
//! queue that takes the message as JSON text and returns `None` (finish) or the
//! error text (retry with backoff, kept as `last_error`); it also runs `async def`
//! handlers on its asyncio loop, waiting on them with the GIL released.

use pyo3::prelude::*;
use qtask_core::blocking::{StopSignal, Worker};
use qtask_core::{Error, Message};

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

/// Calls the Python callable; `None` finishes the attempt, a string fails it with
/// that text, an exception fails it with the exception's type and message.
fn call_handler(handler: &Py<PyAny>, message: Message) -> Result<(), String> {
    let text = message.to_json().to_string();
    Python::try_attach(|py| match handler.call1(py, (text,)) {
        Ok(result) if result.is_none(py) => Ok(()),
        Ok(result) => Err(result
            .extract::<String>(py)
            .unwrap_or_else(|_| "the handler wrapper returned a non-string error".to_owned())),
        Err(err) => Err(err.to_string()),
    })
    .unwrap_or_else(|| Err("the Python interpreter is shutting down".to_owned()))
}

/// Works on `queue` with `handler` until `stop` is set, then lets running handlers
/// end; returns `(finished, failed, skipped)`.
#[pyfunction]
pub fn run_worker(
    py: Python<'_>,
    client: &Client,
    queue: String,
    handler: Py<PyAny>,
    concurrency: usize,
    stop: &WorkerStop,
) -> PyQtaskResult<(u64, u64, u64)> {
    if concurrency == 0 {
        return Err(Error::InvalidArgument("concurrency must be at least 1".into()).into());
    }
    let client = client.client()?;
    let signal = stop.signal.clone();
    let report = py.detach(move || {
        Worker::new(&client, queue)
            .concurrency(concurrency)
            .run(move |message| call_handler(&handler, message), &signal)
    })?;
    Ok((report.finished, report.failed, report.skipped))
}
