//! Engine futures awaited from asyncio, without a thread per call.
//!
//! [`spawn`] runs a future on qtask-core's runtime and returns an `asyncio.Future`
//! of the caller's running loop. Finished values go to one delivery thread per
//! process (`qtask-asyncio`), which takes the GIL once per batch and hands each
//! event loop one callback (`call_soon_threadsafe`) that sets the results on the
//! loop's own thread. Delivery is decided there, where nothing races with a cancel:
//! a future cancelled by then gets nothing, and the value's [`Undelivered`] hook runs
//! instead (`pop` hands its claimed task back).

use std::future::Future;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use qtask_core::Error;
use tokio::task::AbortHandle;

use crate::error::PyQtaskError;

/// Turns a value into a Python object or exception; runs holding the GIL.
type Convert = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Py<PyAny>> + Send>;

/// Runs on the loop's thread when a value could not be delivered (its future was
/// cancelled, or its loop closed).
pub(crate) type Undelivered = Box<dyn FnOnce() + Send>;

/// What cancelling the `await` does to the engine's future.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnCancel {
    /// Drop it at once: for waits (`pop`, `result`), which write nothing.
    Abort,
    /// Let it run to its end, its value unused: for writes, so that whether a
    /// cancelled call wrote is the engine's doing, not the moment of the cancel.
    Finish,
}

/// Runs `work` on the engine's runtime; returns the `asyncio.Future` of its value.
pub(crate) fn spawn<'py, F, T>(py: Python<'py>, on_cancel: OnCancel, work: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    spawn_with_hook(py, on_cancel, async move { (work.await, None) })
}

/// [`spawn`] for work whose value must not be lost: its hook runs if it is not delivered.
pub(crate) fn spawn_with_hook<'py, F, T>(
    py: Python<'py>,
    on_cancel: OnCancel,
    work: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = (Result<T, Error>, Option<Undelivered>)> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let runtime = qtask_core::blocking::runtime().map_err(PyQtaskError::from)?;
    let sender = sender().map_err(PyQtaskError::from)?;
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let completion_loop = event_loop.unbind();
    let completion_future = future.clone().unbind();
    let task = runtime.spawn(async move {
        let (result, undelivered) = work.await;
        let value: Convert = Box::new(move |py| match result {
            Ok(value) => value.into_py_any(py),
            Err(err) => Err(PyQtaskError::from(err).into()),
        });
        // Fails only in a process that lost its delivery thread; nothing to tell then.
        let _ = sender.send(Completion {
            event_loop: completion_loop,
            item: Item {
                future: completion_future,
                value,
                undelivered,
            },
        });
    });
    if on_cancel == OnCancel::Abort {
        let abort = AbortOnCancel {
            task: task.abort_handle(),
        };
        future.call_method1("add_done_callback", (abort,))?;
    }
    Ok(future)
}

/// Runs `work` on the engine's runtime without waiting for it (a hand-back).
pub(crate) fn run_detached<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(runtime) = qtask_core::blocking::runtime() {
        runtime.spawn(work);
    }
}

struct Completion {
    event_loop: Py<PyAny>,
    item: Item,
}

struct Item {
    future: Py<PyAny>,
    value: Convert,
    undelivered: Option<Undelivered>,
}

impl Item {
    /// On the loop's thread: sets the result unless the future is already done.
    fn deliver(self, py: Python<'_>) {
        let future = self.future.bind(py);
        let done = future
            .call_method0("done")
            .and_then(|done| done.is_truthy())
            .unwrap_or(true);
        if done {
            self.give_up();
            return;
        }
        let set = match (self.value)(py) {
            Ok(value) => future.call_method1("set_result", (value,)),
            Err(err) => future.call_method1("set_exception", (err.into_value(py),)),
        };
        if let Err(err) = set {
            err.write_unraisable(py, Some(future));
        }
    }

    fn give_up(self) {
        if let Some(undelivered) = self.undelivered {
            undelivered();
        }
    }
}

/// The delivery thread of this process, leaked like qtask-core's runtime and for
/// the same reason: a forked child starts its own and never touches the parent's.
struct Deliverer {
    pid: u32,
    sender: mpsc::Sender<Completion>,
}

static CURRENT: AtomicPtr<Deliverer> = AtomicPtr::new(ptr::null_mut());

fn sender() -> Result<&'static mpsc::Sender<Completion>, Error> {
    let pid = std::process::id();
    let seen = CURRENT.load(Ordering::Acquire);
    // SAFETY: every non-null pointer in CURRENT comes from Box::into_raw and is never freed.
    if let Some(deliverer) = unsafe { seen.as_ref() } {
        if deliverer.pid == pid {
            return Ok(&deliverer.sender);
        }
    }
    let (tx, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("qtask-asyncio".into())
        .spawn(move || deliver_forever(receiver))
        .map_err(|e| Error::Internal(format!("cannot start the asyncio delivery thread: {e}")))?;
    let fresh = Box::into_raw(Box::new(Deliverer { pid, sender: tx }));
    match CURRENT.compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` was just leaked and is never freed.
        Ok(_) => Ok(unsafe { &(*fresh).sender }),
        Err(_) => {
            // Another thread installed one first; dropping our sender ends our thread.
            // SAFETY: `fresh` was never shared.
            drop(unsafe { Box::from_raw(fresh) });
            sender()
        }
    }
}

fn deliver_forever(receiver: mpsc::Receiver<Completion>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter());
        // `None`: the interpreter is finalizing; nobody awaits anything any more.
        let _ = Python::try_attach(|py| hand_to_loops(py, batch));
    }
}

/// One `call_soon_threadsafe` per event loop for the whole batch.
fn hand_to_loops(py: Python<'_>, batch: Vec<Completion>) {
    let mut by_loop: Vec<(Py<PyAny>, Vec<Item>)> = Vec::new();
    for Completion { event_loop, item } in batch {
        match by_loop.iter_mut().find(|(l, _)| l.is(&event_loop)) {
            Some((_, items)) => items.push(item),
            None => by_loop.push((event_loop, vec![item])),
        }
    }
    for (event_loop, items) in by_loop {
        let deliver = match Py::new(
            py,
            Deliver {
                items: Mutex::new(items),
            },
        ) {
            Ok(deliver) => deliver,
            Err(err) => {
                err.write_unraisable(py, None);
                continue;
            }
        };
        // An error means the loop is closed: `deliver` is dropped unrun (see its Drop).
        let _ = event_loop.call_method1(py, "call_soon_threadsafe", (deliver,));
    }
}

/// The callback each loop runs to receive its batch.
#[pyclass(module = "qtask._qtask", frozen)]
struct Deliver {
    items: Mutex<Vec<Item>>,
}

impl Deliver {
    fn take(&self) -> Vec<Item> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Never run (its loop was closed first): nobody can await these any more.
impl Drop for Deliver {
    fn drop(&mut self) {
        self.take().into_iter().for_each(Item::give_up);
    }
}

#[pymethods]
impl Deliver {
    fn __call__(&self, py: Python<'_>) {
        for item in self.take() {
            item.deliver(py);
        }
    }
}

/// The done-callback that drops the engine's future when its `await` is cancelled.
#[pyclass(module = "qtask._qtask", frozen)]
struct AbortOnCancel {
    task: AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}
