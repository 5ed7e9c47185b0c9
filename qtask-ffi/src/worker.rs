//! The C worker: `qtask_core::blocking::Worker` with a C function as the handler
//! (`qtask_worker_new`, see `callback`), or handing its tasks to the caller in
//! batches (`qtask_worker_new_pull`, see `pull`: what Go uses, so that no engine
//! thread ever calls into Go). This file holds what both share: creating, running,
//! stopping and freeing a worker, and its settings.
//!
//! A worker handle is the address of one byte in a static region, and that byte is
//! the worker's stop flag: `qtask_worker_stop` finds it by arithmetic and stores to
//! it, nothing else, so it is safe in a signal handler. While `qtask_worker_run`
//! runs, a small thread hands the flag on to the engine's `StopSignal`.

mod callback;
mod convert;
mod pull;

pub use callback::*;
pub use convert::qtask_outcome_code;
pub use pull::*;

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qtask_core::blocking::{Client, StopSignal, Worker};
use qtask_core::Error;

use crate::callback_threads::CallbackThreads;
use crate::client::{client, qtask_client, reset};
use crate::error::qtask_result;
use crate::ffi::{invalid, str_arg, try_ref};
use crate::handle::{Registry, Space};
use crate::panic::ffi_boundary;

pub(crate) use callback::Callback;
use pull::Exchange;

/// A worker: runs a callback on the tasks of one queue. Opaque; created by
/// `qtask_worker_new`, released by `qtask_worker_free`. Thread-safe: may be
/// stopped from any thread (and from a signal handler) while another thread is
/// inside `qtask_worker_run`.
#[allow(non_camel_case_types)]
pub struct qtask_worker {
    _private: [u8; 0],
}

/// What a worker did during one `qtask_worker_run`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct qtask_worker_report {
    /// Attempts the callback finished (returned 0).
    pub finished: u64,
    /// Attempts the callback failed, failed now, or that ran past the time limit
    /// (retried later or failed for good).
    pub failed: u64,
    /// Outcomes of attempts that were no longer current (the lease ran out and
    /// a newer attempt began, or the task ended meanwhile): nothing changed.
    pub skipped: u64,
    /// Attempts that asked to come back later (`QTASK_OUTCOME_CODE_RETRY_AFTER`).
    pub snoozed: u64,
    /// Tasks the callback cancelled.
    pub cancelled: u64,
}

/// What the worker runs its tasks with.
enum Mode {
    Callback(Callback),
    Pull(Arc<Exchange>),
}

struct WorkerState {
    client: Arc<Client>,
    queue: String,
    concurrency: usize,
    mode: Mode,
    running: AtomicBool,
    /// `qtask_worker_set_time_limit`, in milliseconds; 0 for none.
    time_limit_ms: AtomicU64,
    /// `qtask_worker_set_kinds`: the task names this worker takes (None: all).
    kinds: Mutex<Option<Vec<String>>>,
}

static WORKER_SPACE: Space = Space::new();
static WORKERS: Registry<Arc<WorkerState>> = Registry::new("worker", &WORKER_SPACE);

/// How often a running worker hands its stop flag on to the engine.
const STOP_POLL: Duration = Duration::from_millis(10);

/// Creates a worker for the tasks of `queue` (borrowed, copied) of `client`,
/// running `callback` on up to `concurrency` (at least 1) tasks at once with
/// `user_data` passed through untouched (qtask never reads or frees it; it must
/// stay valid until `qtask_worker_free`). Stop and free the worker before
/// `qtask_close` on its client.
///
/// On success `*out_worker` is a new handle that the caller owns and must release
/// with `qtask_worker_free`; on failure it is NULL.
#[no_mangle]
pub extern "C" fn qtask_worker_new(
    client: *mut qtask_client,
    queue: *const c_char,
    concurrency: u32,
    callback: qtask_worker_callback,
    user_data: *mut c_void,
    out_worker: *mut *mut qtask_worker,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_worker, "out_worker");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        let function = callback.ok_or_else(|| invalid("callback is NULL"))?;
        *out = new_worker(client, queue, concurrency, Mode::Callback(Callback { function, user_data }))?;
        Ok(())
    })
}

/// Creates a worker for the tasks of `queue` (borrowed, copied) of `client` that
/// hands its tasks to the caller instead of calling a callback: while one thread is
/// inside `qtask_worker_run`, any threads take up to `concurrency` tasks at a time
/// with `qtask_worker_next`, run them where they like, and report how each ended
/// with `qtask_worker_complete`, in batches. The engine never calls into the caller,
/// and the calls cost one lock per batch, not a thread switch per task. The engine
/// hands over up to max(`concurrency`, 8) tasks more, which wait to be taken (their
/// leases renewed, their time limits not started) until a completion makes room:
/// `qtask_worker_complete_take` reports and takes the next in one call. Stop and
/// free the worker before `qtask_close` on its client.
///
/// On success `*out_worker` is a new handle that the caller owns and must release
/// with `qtask_worker_free`; on failure it is NULL.
#[no_mangle]
pub extern "C" fn qtask_worker_new_pull(
    client: *mut qtask_client,
    queue: *const c_char,
    concurrency: u32,
    out_worker: *mut *mut qtask_worker,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_worker, "out_worker");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        *out = new_worker(client, queue, concurrency, Mode::Pull(Arc::new(Exchange::new(concurrency as usize))))?;
        Ok(())
    })
}

fn new_worker(
    client: Arc<Client>,
    queue: &str,
    concurrency: u32,
    mode: Mode,
) -> Result<*mut qtask_worker, Error> {
    if queue.is_empty() {
        return Err(invalid("queue is empty"));
    }
    if concurrency == 0 {
        return Err(invalid("concurrency must be at least 1"));
    }
    let state = WorkerState {
        client,
        queue: queue.to_string(),
        concurrency: concurrency as usize,
        mode,
        running: AtomicBool::new(false),
        time_limit_ms: AtomicU64::new(0),
        kinds: Mutex::new(None),
    };
    let worker: *mut qtask_worker = WORKERS.insert(Arc::new(state))?;
    // The slot may have served an earlier, stopped worker.
    stop_flag(worker)?.store(0, Ordering::Release);
    Ok(worker)
}

fn stop_flag(worker: *const qtask_worker) -> Result<&'static AtomicU8, Error> {
    WORKER_SPACE
        .byte(worker)
        .ok_or_else(|| invalid("not a worker handle issued by qtask"))
}

/// Clears `running` when a run ends, however it ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs the worker on the calling thread until `qtask_worker_stop` (or
/// `qtask_worker_free` from another thread), then waits for running callbacks to
/// return and their outcomes to be written, and returns. A worker stopped before
/// this call returns at once: a stopped worker stays stopped. Servers that are
/// down are retried with a backoff (and logged), not returned as errors.
///
/// `out_report` may be NULL; otherwise it receives what the worker did (zeros on
/// failure). Returns `QTASK_RESULT_INVALID_STATE` when the worker is already
/// running on another thread.
#[no_mangle]
pub extern "C" fn qtask_worker_run(
    worker: *mut qtask_worker,
    out_report: *mut qtask_worker_report,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_report, qtask_worker_report::default());
        let state = WORKERS.get(worker)?;
        let flag = stop_flag(worker)?;
        if state.running.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidState("this worker is already running".into()));
        }
        let _running = Running(&state.running);

        let stop = StopSignal::new();
        let run_ended = Arc::new(AtomicBool::new(false));
        let relay = {
            let stop = stop.clone();
            let run_ended = run_ended.clone();
            std::thread::Builder::new()
                .name("qtask-worker-stop".into())
                .spawn(move || {
                    while !run_ended.load(Ordering::Acquire) {
                        if flag.load(Ordering::Acquire) != 0 {
                            stop.stop();
                            return;
                        }
                        std::thread::park_timeout(STOP_POLL);
                    }
                })
                .map_err(|e| Error::Internal(format!("starting the stop relay thread: {e}")))?
        };
        // Both modes hand tasks over ahead of a free handler; each starts their clocks.
        let mut engine = Worker::new(&state.client, state.queue.as_str())
            .concurrency(state.concurrency)
            .hand_ahead_for_bursts();
        let limit_ms = state.time_limit_ms.load(Ordering::Acquire);
        if limit_ms > 0 {
            engine = engine.time_limit(Duration::from_millis(limit_ms));
        }
        let kinds = state.kinds.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(kinds) = kinds {
            engine = engine.kinds(kinds);
        }
        let report = match &state.mode {
            Mode::Callback(callback) => {
                let threads = CallbackThreads::new(*callback, state.concurrency);
                let to = threads.clone();
                let report = engine.run_handing_off(
                    move |message, time_up, reply| to.deliver(message, time_up, reply),
                    &stop,
                );
                threads.end();
                report
            }
            Mode::Pull(exchange) => {
                let to = exchange.clone();
                let limit = (limit_ms > 0).then(|| Duration::from_millis(limit_ms));
                let report = engine.run_handing_off(
                    move |message, time_up, reply| to.deliver(message, time_up, reply, limit),
                    &stop,
                );
                exchange.end();
                report
            }
        };
        run_ended.store(true, Ordering::Release);
        relay.thread().unpark();
        let _ = relay.join();
        let report = report?;
        reset(out_report, qtask_worker_report {
            finished: report.finished,
            failed: report.failed,
            skipped: report.skipped,
            snoozed: report.snoozed,
            cancelled: report.cancelled,
        });
        Ok(())
    })
}

/// Tells the worker to stop: `qtask_worker_run` then lets running callbacks
/// return and returns. Only one atomic store, so it may be called from any
/// thread, from the worker's own callback, and from a signal handler. A handle
/// that is not a worker's is ignored; a freed worker's handle is harmless until
/// about a million workers later, when its slot may serve a new worker.
#[no_mangle]
pub extern "C" fn qtask_worker_stop(worker: *mut qtask_worker) {
    ffi_boundary!({
        if let Some(flag) = WORKER_SPACE.byte(worker) {
            flag.store(1, Ordering::Release);
        }
    })
}

/// Releases the worker. A worker still running is stopped, and its
/// `qtask_worker_run` returns once its callbacks have returned. Not from the
/// worker's own callback. NULL is a no-op; so is a handle already freed (it
/// only sets the last error).
#[no_mangle]
pub extern "C" fn qtask_worker_free(worker: *mut qtask_worker) {
    ffi_boundary!({
        if worker.is_null() {
            return;
        }
        match WORKERS.take(worker) {
            Ok(_state) => {
                if let Some(flag) = WORKER_SPACE.byte(worker) {
                    flag.store(1, Ordering::Release);
                }
            }
            Err(err) => crate::error::set_last_error(&err),
        }
    })
}

/// Sets the longest one attempt of this worker may run, in seconds (> 0; at least
/// a millisecond), for its next `qtask_worker_run`. When it passes, the callback's
/// `qtask_outcome_time_up` turns true and the attempt fails with "time limit of Ns
/// exceeded", retried with backoff like an error. Not while the worker runs.
#[no_mangle]
pub extern "C" fn qtask_worker_set_time_limit(worker: *mut qtask_worker, seconds: f64) -> qtask_result {
    ffi_boundary!(result: {
        let state = WORKERS.get(worker)?;
        let limit = qtask_core::seconds("time_limit", seconds)?;
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(invalid("time_limit must be at least one millisecond"));
        }
        if state.running.load(Ordering::Acquire) {
            return Err(Error::InvalidState("the worker is running".into()));
        }
        state.time_limit_ms.store(ms, Ordering::Release);
        Ok(())
    })
}

/// Sets the task names (kinds) this worker takes, for its next `qtask_worker_run`:
/// `kinds_json` (borrowed) is a JSON array of at least one string, or `null` for
/// every task of the queue (the default). A task of another name does not reach
/// the callback (or `qtask_worker_next`): its attempt fails with "no handler for
/// task name …" and it is retried with backoff, so that during a rolling deploy a
/// worker that has the kind takes it later. Not while the worker runs.
#[no_mangle]
pub extern "C" fn qtask_worker_set_kinds(
    worker: *mut qtask_worker,
    kinds_json: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let state = WORKERS.get(worker)?;
        let text = unsafe { str_arg(kinds_json, "kinds_json") }?;
        let kinds: Option<Vec<String>> = serde_json::from_str(text)
            .map_err(|e| invalid(format!("kinds_json: a JSON array of task names, or null: {e}")))?;
        if kinds.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("kinds_json must name at least one task name"));
        }
        if state.running.load(Ordering::Acquire) {
            return Err(Error::InvalidState("the worker is running".into()));
        }
        *state.kinds.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = kinds;
        Ok(())
    })
}
