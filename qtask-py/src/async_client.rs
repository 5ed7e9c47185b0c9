//! `qtask._qtask.AsyncClient`: qtask-core's async client, each method returning an
//! `asyncio.Future` (see `asyncio.rs`). Arguments are converted on the caller's
//! thread; the call itself runs on the engine's runtime, holding no Python object.
//!
//! The client connects on first use (or `connect()`), on the runtime, so that no
//! constructor blocks the event loop; concurrent first calls share one connect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use qtask_core::admin::TaskFilter;
use qtask_core::{seconds, Config, Error, Fence, Fenced, Outcome, ParamStyle};
use tokio::sync::OnceCell;

use crate::asyncio::{run_detached, spawn, spawn_with_hook, OnCancel, Undelivered};
use crate::client::{created_tuple, task_args, task_now, to_json};
use crate::error::{PyQtaskError, PyQtaskResult};

/// The engine client behind one `AsyncClient`, shared with its calls in flight.
struct Engine {
    config: Config,
    client: OnceCell<qtask_core::Client>,
    closed: AtomicBool,
    opened_in: u32,
}

impl Engine {
    /// The connected client, connecting first if no call has yet.
    async fn client(&self) -> Result<qtask_core::Client, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let client = self
            .client
            .get_or_try_init(|| qtask_core::Client::open(self.config.clone()))
            .await?
            .clone();
        if self.closed.load(Ordering::SeqCst) {
            // close() ran while this call connected: it found nothing to close.
            client.close().await;
            return Err(Error::Closed);
        }
        Ok(client)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(client) = self.client.get() {
            client.close().await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if self.opened_in != std::process::id() {
            // Inherited across fork: it belongs to the parent's runtime (see
            // qtask_core::blocking::Client's Drop).
            std::mem::forget(client);
        } else if !client.is_closed() {
            run_detached(async move { client.close().await });
        }
    }
}

/// Gives a claimed task whose message reached nobody back: waiting again, due now,
/// no attempt used (`Outcome::RetryAfter(0)`), and offered to its queue again.
fn hand_back(client: qtask_core::Client, fence: Fence) -> Undelivered {
    Box::new(move || {
        run_detached(async move {
            let returned = client.settle(fence, &Outcome::retry_after(Duration::ZERO)).await;
            let failed = match returned {
                Ok(Fenced::Current(_)) => client.dispatch(fence.task_id).await.err(),
                Ok(Fenced::Stale) => None,
                Err(err) => Some(err),
            };
            if let Some(err) = failed {
                crate::logs::emit(
                    qtask_core::logs::LogLevel::Warn,
                    &format!(
                        "task {} was claimed by a cancelled pop and could not be handed back ({err}); \
                         it is dispatched again when its lease ends",
                        fence.task_id
                    ),
                );
            }
        });
    })
}

/// One engine call: `|c| body` runs on the runtime with the connected client `c`.
macro_rules! call {
    ($self:ident, $py:ident, $on_cancel:expr, |$c:ident| $body:expr) => {{
        let engine = $self.engine().map_err(py_err)?;
        spawn($py, $on_cancel, async move {
            let $c = engine.client().await?;
            let result: Result<_, Error> = $body;
            result
        })
    }};
}

fn py_err(err: Error) -> PyErr {
    PyQtaskError::from(err).into()
}

/// An asyncio qtask client; every I/O method returns an `asyncio.Future`.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct AsyncClient {
    engine: Arc<Engine>,
}

impl AsyncClient {
    fn engine(&self) -> Result<Arc<Engine>, Error> {
        let engine = &self.engine;
        if engine.opened_in != std::process::id() || engine.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(engine.clone())
    }
}

#[pymethods]
impl AsyncClient {
    /// Reads the settings (`config_json`, as for `Client`) without connecting.
    #[new]
    fn new(config_json: String) -> PyQtaskResult<Self> {
        Ok(AsyncClient {
            engine: Arc::new(Engine {
                config: Config::from_json(&config_json)?,
                client: OnceCell::new(),
                closed: AtomicBool::new(false),
                opened_in: std::process::id(),
            }),
        })
    }

    #[getter]
    fn db(&self) -> &str {
        &self.engine.config.db
    }

    #[getter]
    fn queue(&self) -> &str {
        &self.engine.config.queue
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.engine.config.namespace
    }

    #[getter]
    fn table_prefix(&self) -> &str {
        &self.engine.config.table_prefix
    }

    #[getter]
    fn closed(&self) -> bool {
        self.engine().is_err()
    }

    /// Connects now (and starts the sweeper unless `"sweeper": false`).
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |_c| Ok(()))
    }

    fn install<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.install().await)
    }

    /// `(id, existing, dispatched)`.
    fn create<'py>(&self, py: Python<'py>, task_json: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let task = task_now(&task_json, c.config())?;
            c.create(task).await.map(created_tuple)
        })
    }

    /// `(id, existing, invoke)`; awaiting `invoke()` dispatches the task.
    fn create_deferred<'py>(&self, py: Python<'py>, task_json: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let task = task_now(&task_json, c.config())?;
            let (created, invoke) = c.create_deferred(task).await?;
            let invoke = AsyncInvoke {
                task_id: created.id,
                inner: Mutex::new(Some(invoke)),
            };
            Ok((created.id, created.existing, invoke))
        })
    }

    /// The delay is the task's `delay` key; `(id, existing, dispatched)`.
    fn delay<'py>(&self, py: Python<'py>, task_json: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let (task, delay) = task_args(&task_json, c.config())?;
            c.delay(task, delay).await.map(created_tuple)
        })
    }

    /// `(id, existing, dispatched)` per task, in order. All or nothing.
    fn create_many<'py>(&self, py: Python<'py>, tasks: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let tasks = tasks
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    task_now(text, c.config()).map_err(|e| Error::InvalidArgument(format!("tasks[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let created = c.create_many(tasks).await?;
            Ok(created.into_iter().map(created_tuple).collect::<Vec<_>>())
        })
    }

    /// The insert for the caller's own connection, as JSON text (no I/O once connected).
    fn create_statement<'py>(
        &self,
        py: Python<'py>,
        task_json: String,
        param_style: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let style = ParamStyle::from_name(&param_style).map_err(py_err)?;
        call!(self, py, OnCancel::Abort, |c| {
            let (task, delay) = task_args(&task_json, c.config())?;
            to_json(&c.caller_insert(&task, delay, Some(style))?)
        })
    }

    fn dispatch<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.dispatch(task_id).await)
    }

    /// The message as JSON text, or `None`. Cancelling the await ends the wait; a
    /// message claimed but not delivered is handed back (see `hand_back`).
    fn pop<'py>(&self, py: Python<'py>, queue: String, wait: f64) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine().map_err(py_err)?;
        let wait = seconds("wait", wait).map_err(py_err)?;
        spawn_with_hook(py, OnCancel::Abort, async move {
            let client = match engine.client().await {
                Ok(client) => client,
                Err(err) => return (Err(err), None),
            };
            match client.pop(&queue, wait).await {
                Ok(Some(message)) => {
                    let undelivered = hand_back(client, message.fence());
                    (Ok(Some(message.to_json().to_string())), Some(undelivered))
                }
                Ok(None) => (Ok(None), None),
                Err(err) => (Err(err), None),
            }
        })
    }

    /// Hands back a message that was delivered but whose awaiting task was cancelled
    /// before it could take it. Returns at once and never raises (it runs while a
    /// `CancelledError` propagates); the write runs on the engine, and a failure is
    /// logged (a closed client's fails: the task then waits for its lease to end).
    fn hand_back(&self, task_id: i64, attempt: i64) {
        if self.engine.opened_in != std::process::id() {
            return;
        }
        if let Some(client) = self.engine.client.get().cloned() {
            hand_back(client, Fence { task_id, attempt })();
        }
    }

    /// The lease granted in seconds, or `None`: skip the task.
    fn processing<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let lease = c.processing_lease(task_id).await?;
            Ok(lease.map(|d| d.as_secs_f64()))
        })
    }

    fn finish<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.finish(task_id).await)
    }

    /// The new status: `"waiting"` or `"failed"`.
    fn fail<'py>(&self, py: Python<'py>, task_id: i64, error: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c
            .fail(task_id, &error)
            .await
            .map(|s| s.as_str()))
    }

    fn cancel<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.cancel(task_id).await)
    }

    /// The result as JSON text, waiting up to `wait` seconds; a cancel ends the wait.
    fn result<'py>(&self, py: Python<'py>, task_id: i64, wait: f64) -> PyResult<Bound<'py, PyAny>> {
        let wait = seconds("wait", wait).map_err(py_err)?;
        call!(self, py, OnCancel::Abort, |c| to_json(
            &c.result(task_id, wait).await?
        ))
    }

    fn get<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Abort, |c| to_json(&c.get(task_id).await?))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Abort, |c| to_json(&c.stats().await?))
    }

    fn sweep_once<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| to_json(&c.sweep_once().await?))
    }

    #[pyo3(signature = (filter_json, before_id, limit))]
    fn list_tasks<'py>(
        &self,
        py: Python<'py>,
        filter_json: String,
        before_id: Option<i64>,
        limit: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let filter = TaskFilter::from_json(&filter_json).map_err(py_err)?;
        call!(self, py, OnCancel::Abort, |c| to_json(
            &c.list_tasks(&filter, before_id, limit).await?
        ))
    }

    fn count_tasks<'py>(&self, py: Python<'py>, filter_json: String) -> PyResult<Bound<'py, PyAny>> {
        let filter = TaskFilter::from_json(&filter_json).map_err(py_err)?;
        call!(self, py, OnCancel::Abort, |c| c.count_tasks(&filter).await)
    }

    fn retry<'py>(&self, py: Python<'py>, task_id: i64) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.retry(task_id).await)
    }

    fn retry_matching<'py>(&self, py: Python<'py>, filter_json: String) -> PyResult<Bound<'py, PyAny>> {
        let filter = TaskFilter::from_json(&filter_json).map_err(py_err)?;
        call!(self, py, OnCancel::Finish, |c| c.retry_matching(&filter).await)
    }

    fn cancel_matching<'py>(&self, py: Python<'py>, filter_json: String) -> PyResult<Bound<'py, PyAny>> {
        let filter = TaskFilter::from_json(&filter_json).map_err(py_err)?;
        call!(self, py, OnCancel::Finish, |c| c.cancel_matching(&filter).await)
    }

    fn pause_queue<'py>(&self, py: Python<'py>, queue: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.pause_queue(&queue).await)
    }

    fn resume_queue<'py>(&self, py: Python<'py>, queue: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.resume_queue(&queue).await)
    }

    fn set_queue_limits<'py>(
        &self,
        py: Python<'py>,
        queue: String,
        limits_json: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limits = qtask_core::QueueLimits::from_json(&limits_json).map_err(py_err)?;
        call!(self, py, OnCancel::Finish, |c| c
            .set_queue_limits(&queue, limits)
            .await)
    }

    fn queues<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Abort, |c| to_json(&c.queues().await?))
    }

    fn rates<'py>(&self, py: Python<'py>, minutes: u32) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Abort, |c| to_json(&c.rates(minutes).await?))
    }

    /// As `Client.schedule`; the stored schedule as JSON text.
    fn schedule<'py>(
        &self,
        py: Python<'py>,
        name: String,
        input_json: String,
        options_json: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| {
            let max = c.config().max_payload_bytes;
            let schedule = qtask_core::Schedule::from_json(&name, &input_json, &options_json, max)?;
            to_json(&c.schedule(schedule).await?)
        })
    }

    fn unschedule<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Finish, |c| c.unschedule(&name).await)
    }

    fn schedules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        call!(self, py, OnCancel::Abort, |c| to_json(&c.schedules().await?))
    }

    /// Stops the sweeper and closes the pool; later calls raise `qtask.ClosedError`.
    /// Closing twice is fine; a call already running ends as the engine decides.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        if engine.opened_in != std::process::id() {
            engine.closed.store(true, Ordering::SeqCst);
            return spawn(py, OnCancel::Finish, async { Ok(()) });
        }
        spawn(py, OnCancel::Finish, async move {
            engine.close().await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        let config = &self.engine.config;
        format!(
            "<qtask AsyncClient db={:?} queue={:?} namespace={:?} table_prefix={:?}{}>",
            qtask_core::redact(&config.db),
            qtask_core::redact(&config.queue),
            config.namespace,
            config.table_prefix,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// Dispatches a task created by `AsyncClient.create_deferred`, once.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct AsyncInvoke {
    task_id: i64,
    inner: Mutex<Option<qtask_core::Invoke>>,
}

#[pymethods]
impl AsyncInvoke {
    #[getter]
    fn task_id(&self) -> i64 {
        self.task_id
    }

    /// An awaitable of `True` (on the queue) or `False` (queue down; the sweeper will).
    fn __call__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let invoke = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                py_err(Error::InvalidState(format!(
                    "task {} was already invoked",
                    self.task_id
                )))
            })?;
        spawn(py, OnCancel::Finish, invoke.invoke())
    }
}
