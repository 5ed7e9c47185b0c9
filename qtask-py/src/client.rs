//! `qtask._qtask.Client` and `Invoke`: qtask-core's blocking client, one method each.
//!
//! Every method first turns its Python arguments into owned Rust values, then runs
//! the core call inside `py.detach` (the GIL is released, no Python object inside),
//! then maps the result. Dicts cross as JSON text: `qtask/_client.py` does
//! `json.dumps` / `json.loads`, the engine validates.

use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;
use qtask_core::admin::TaskFilter;
use qtask_core::blocking;
use std::time::Duration;

use qtask_core::{seconds, Config, Created, Error, NewTask, ParamStyle, Task, TaskArgs};

use crate::error::PyQtaskResult;

/// A task as the Python layer sends it: `qtask_core::TaskArgs` as JSON text, parsed
/// (and its size bounded) before anything is built.
pub(crate) fn task_args(text: &str, config: &Config) -> Result<(NewTask, Duration), Error> {
    TaskArgs::from_json(text, config.max_payload_bytes)?.into_task()
}

/// A task for `create`: a delay belongs to `delay`, not here.
pub(crate) fn task_now(text: &str, config: &Config) -> Result<NewTask, Error> {
    let (task, delay) = task_args(text, config)?;
    if !delay.is_zero() {
        return Err(Error::InvalidArgument(
            "delay is not an option of create: use delay()".into(),
        ));
    }
    Ok(task)
}

pub(crate) type CreatedTuple = (i64, bool, bool);

pub(crate) fn created_tuple(c: Created) -> CreatedTuple {
    (c.id, c.existing, c.dispatched)
}

/// A blocking qtask client. Thread-safe: share one per process.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct Client {
    /// `None` once closed. Each call clones the `Arc` out, so a call never holds the lock.
    inner: Mutex<Option<Arc<blocking::Client>>>,
    db: String,
    queue: String,
    namespace: String,
    table_prefix: String,
}

impl Client {
    pub(crate) fn client(&self) -> Result<Arc<blocking::Client>, Error> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Error::Closed)
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("cannot serialise a result: {e}")))
}

#[pymethods]
impl Client {
    /// Connects (and starts the sweeper unless `"sweeper": false`). `config_json`
    /// is a JSON object with `Config`'s keys; missing keys come from the
    /// environment (`QTASK_DB_URL`, `QTASK_QUEUE_URL`, `QTASK_NAMESPACE`) or defaults.
    #[new]
    fn new(py: Python<'_>, config_json: String) -> PyQtaskResult<Self> {
        let client = py.detach(move || {
            let config = Config::from_json(&config_json)?;
            blocking::Client::open(config)
        })?;
        let config = client.config();
        Ok(Client {
            db: config.db.clone(),
            queue: config.queue.clone(),
            namespace: config.namespace.clone(),
            table_prefix: config.table_prefix.clone(),
            inner: Mutex::new(Some(Arc::new(client))),
        })
    }

    #[getter]
    fn db(&self) -> &str {
        &self.db
    }

    #[getter]
    fn queue(&self) -> &str {
        &self.queue
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.namespace
    }

    #[getter]
    fn table_prefix(&self) -> &str {
        &self.table_prefix
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn install(&self, py: Python<'_>) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.install())?)
    }

    /// Returns `(id, existing, dispatched)`.
    fn create(&self, py: Python<'_>, task_json: String) -> PyQtaskResult<CreatedTuple> {
        let client = self.client()?;
        let created = py.detach(move || client.create(task_now(&task_json, client.config())?))?;
        Ok(created_tuple(created))
    }

    /// Returns `(id, existing, invoke)`; call `invoke()` after your transaction commits.
    fn create_deferred(&self, py: Python<'_>, task_json: String) -> PyQtaskResult<(i64, bool, Invoke)> {
        let client = self.client()?;
        let (created, invoke) =
            py.detach(move || client.create_deferred(task_now(&task_json, client.config())?))?;
        let invoke = Invoke {
            task_id: created.id,
            inner: Mutex::new(Some(invoke)),
        };
        Ok((created.id, created.existing, invoke))
    }

    /// Writes the task only (its `delay` is in the task); returns `(id, existing, dispatched)`.
    fn delay(&self, py: Python<'_>, task_json: String) -> PyQtaskResult<CreatedTuple> {
        let client = self.client()?;
        let created = py.detach(move || {
            let (task, delay) = task_args(&task_json, client.config())?;
            client.delay(task, delay)
        })?;
        Ok(created_tuple(created))
    }

    /// Returns `(id, existing, dispatched)` per task, in order. All or nothing.
    fn create_many(&self, py: Python<'_>, tasks: Vec<String>) -> PyQtaskResult<Vec<CreatedTuple>> {
        let client = self.client()?;
        let created = py.detach(move || {
            let tasks = tasks
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    task_now(text, client.config())
                        .map_err(|e| Error::InvalidArgument(format!("tasks[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            client.create_many(tasks)
        })?;
        Ok(created.into_iter().map(created_tuple).collect())
    }

    /// The insert of a task for the caller's own connection, as JSON text
    /// (`qtask_core::CallerInsert`); `param_style` is the driver's placeholder style.
    fn create_statement(&self, task_json: String, param_style: String) -> PyQtaskResult<String> {
        let client = self.client()?;
        let style = ParamStyle::from_name(&param_style)?;
        let (task, delay) = task_args(&task_json, client.config())?;
        Ok(to_json(&client.caller_insert(&task, delay, Some(style))?)?)
    }

    /// Offers a committed, waiting, due task to its Redis queue now.
    fn dispatch(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<bool> {
        let client = self.client()?;
        Ok(py.detach(move || client.dispatch(task_id))?)
    }

    /// The message as JSON text (input plus `task_id` and `attempt`), or `None`.
    fn pop(&self, py: Python<'_>, queue: String, wait: f64) -> PyQtaskResult<Option<String>> {
        let client = self.client()?;
        let message = py.detach(move || {
            let wait = seconds("wait", wait)?;
            client.pop(&queue, wait)
        })?;
        Ok(message.map(|m| m.to_json().to_string()))
    }

    /// The lease granted in seconds, or `None` when the caller must skip the task.
    fn processing(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<Option<f64>> {
        let client = self.client()?;
        let lease = py.detach(move || {
            let client = client.live()?.clone();
            blocking::wait(async move { client.processing_lease(task_id).await })
        })?;
        Ok(lease.map(|d| d.as_secs_f64()))
    }

    fn finish(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.finish(task_id))?)
    }

    /// Returns the new status: `"waiting"` (retried later) or `"failed"`.
    fn fail(&self, py: Python<'_>, task_id: i64, error: String) -> PyQtaskResult<&'static str> {
        let client = self.client()?;
        let status = py.detach(move || client.fail(task_id, &error))?;
        Ok(status.as_str())
    }

    fn cancel(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.cancel(task_id))?)
    }

    /// The result a finished task kept, as JSON text, waiting up to `wait` seconds.
    fn result(&self, py: Python<'_>, task_id: i64, wait: f64) -> PyQtaskResult<String> {
        let client = self.client()?;
        let wait = seconds("wait", wait)?;
        let value = py.detach(move || client.result(task_id, wait))?;
        Ok(to_json(&value)?)
    }

    /// The task's row as JSON text.
    fn get(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<String> {
        let client = self.client()?;
        let task: Task = py.detach(move || client.get(task_id))?;
        Ok(to_json(&task)?)
    }

    /// Counts as JSON text.
    fn stats(&self, py: Python<'_>) -> PyQtaskResult<String> {
        let client = self.client()?;
        let stats = py.detach(move || client.stats())?;
        Ok(to_json(&stats)?)
    }

    /// One sweep now, as JSON text (`dispatched`, `gave_up`, `deleted`).
    fn sweep_once(&self, py: Python<'_>) -> PyQtaskResult<String> {
        let client = self.client()?;
        let report = py.detach(move || client.sweep_once())?;
        Ok(to_json(&report)?)
    }

    /// Tasks matching `filter_json` (see `TaskFilter::from_json`), newest first, ids below
    /// `before_id`, as JSON text: `{"tasks": [...], "next_before_id": id or null}`.
    #[pyo3(signature = (filter_json, before_id, limit))]
    fn list_tasks(
        &self,
        py: Python<'_>,
        filter_json: String,
        before_id: Option<i64>,
        limit: u32,
    ) -> PyQtaskResult<String> {
        let client = self.client()?;
        let page = py.detach(move || {
            let filter = TaskFilter::from_json(&filter_json)?;
            client.list_tasks(&filter, before_id, limit)
        })?;
        Ok(to_json(&page)?)
    }

    fn count_tasks(&self, py: Python<'_>, filter_json: String) -> PyQtaskResult<i64> {
        let client = self.client()?;
        Ok(py.detach(move || client.count_tasks(&TaskFilter::from_json(&filter_json)?))?)
    }

    fn retry(&self, py: Python<'_>, task_id: i64) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.retry(task_id))?)
    }

    /// Retries every failed or cancelled task matching the filter; returns how many.
    fn retry_matching(&self, py: Python<'_>, filter_json: String) -> PyQtaskResult<u64> {
        let client = self.client()?;
        Ok(py.detach(move || client.retry_matching(&TaskFilter::from_json(&filter_json)?))?)
    }

    /// Cancels every live task matching the filter; returns how many.
    fn cancel_matching(&self, py: Python<'_>, filter_json: String) -> PyQtaskResult<u64> {
        let client = self.client()?;
        Ok(py.detach(move || client.cancel_matching(&TaskFilter::from_json(&filter_json)?))?)
    }

    fn pause_queue(&self, py: Python<'_>, queue: String) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.pause_queue(&queue))?)
    }

    fn resume_queue(&self, py: Python<'_>, queue: String) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || client.resume_queue(&queue))?)
    }

    /// Sets (or, with `{}`, removes) a queue's limits, given as JSON text.
    fn set_queue_limits(&self, py: Python<'_>, queue: String, limits_json: String) -> PyQtaskResult<()> {
        let client = self.client()?;
        Ok(py.detach(move || {
            client.set_queue_limits(&queue, qtask_core::QueueLimits::from_json(&limits_json)?)
        })?)
    }

    /// Every queue with its counts by status, pause flag and limits, as JSON text.
    fn queues(&self, py: Python<'_>) -> PyQtaskResult<String> {
        let client = self.client()?;
        let queues = py.detach(move || client.queues())?;
        Ok(to_json(&queues)?)
    }

    /// Tasks finished and failed per minute, oldest first, as JSON text.
    fn rates(&self, py: Python<'_>, minutes: u32) -> PyQtaskResult<String> {
        let client = self.client()?;
        let rates = py.detach(move || client.rates(minutes))?;
        Ok(to_json(&rates)?)
    }

    /// Declares or replaces the periodic task `name`; `options_json` as
    /// `qtask_core::Schedule::from_json` reads it. The stored schedule as JSON text.
    fn schedule(
        &self,
        py: Python<'_>,
        name: String,
        input_json: String,
        options_json: String,
    ) -> PyQtaskResult<String> {
        let client = self.client()?;
        let info = py.detach(move || {
            let max = client.config().max_payload_bytes;
            client.schedule(qtask_core::Schedule::from_json(
                &name,
                &input_json,
                &options_json,
                max,
            )?)
        })?;
        Ok(to_json(&info)?)
    }

    /// Removes a schedule; whether it existed.
    fn unschedule(&self, py: Python<'_>, name: String) -> PyQtaskResult<bool> {
        let client = self.client()?;
        Ok(py.detach(move || client.unschedule(&name))?)
    }

    /// Every schedule of the namespace, by name, as JSON text.
    fn schedules(&self, py: Python<'_>) -> PyQtaskResult<String> {
        let client = self.client()?;
        let schedules = py.detach(move || client.schedules())?;
        Ok(to_json(&schedules)?)
    }

    /// Stops the sweeper and closes the pool; later calls raise `qtask.ClosedError`.
    /// Closing twice is fine.
    fn close(&self, py: Python<'_>) {
        let client = self.inner.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(client) = client {
            py.detach(move || client.close());
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<qtask Client db={:?} queue={:?} namespace={:?} table_prefix={:?}{}>",
            qtask_core::redact(&self.db),
            qtask_core::redact(&self.queue),
            self.namespace,
            self.table_prefix,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// Dispatches a task created by `create_deferred`, once. Call it after the
/// transaction that made the task meaningful commits.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct Invoke {
    task_id: i64,
    inner: Mutex<Option<blocking::Invoke>>,
}

#[pymethods]
impl Invoke {
    #[getter]
    fn task_id(&self) -> i64 {
        self.task_id
    }

    /// Pushes the message. `False`: the queue was down; the sweeper dispatches it later.
    fn __call__(&self, py: Python<'_>) -> PyQtaskResult<bool> {
        let invoke = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| invalid_state(self.task_id))?;
        Ok(py.detach(move || invoke.invoke())?)
    }

    fn __repr__(&self) -> String {
        let done = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none();
        format!(
            "<qtask Invoke task_id={}{}>",
            self.task_id,
            if done { " invoked" } else { "" }
        )
    }
}

fn invalid_state(task_id: i64) -> Error {
    Error::InvalidState(format!("task {task_id} was already invoked"))
}
