//! The C worker: `qtask_core::blocking::Worker` with a C function as the handler.
//!
//! A worker handle is the address of one byte in a static region, and that byte is
//! the worker's stop flag: `qtask_worker_stop` finds it by arithmetic and stores to
//! it, nothing else, so it is safe in a signal handler. While `qtask_worker_run`
//! runs, a small thread hands the flag on to the engine's `StopSignal`.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qtask_core::blocking::{Client, StopSignal, Worker};
use qtask_core::{Error, Message};

use crate::client::{client, qtask_client, reset};
use crate::error::qtask_result;
use crate::ffi::{invalid, str_arg, try_ref};
use crate::handle::{Registry, Space};
use crate::panic::ffi_boundary;

/// A worker: runs a callback on the tasks of one queue. Opaque; created by
/// `qtask_worker_new`, released by `qtask_worker_free`. Thread-safe: may be
/// stopped from any thread (and from a signal handler) while another thread is
/// inside `qtask_worker_run`.
#[allow(non_camel_case_types)]
pub struct qtask_worker {
    _private: [u8; 0],
}

/// Where a callback records why its attempt failed (`qtask_outcome_set_error`).
/// Opaque; owned by qtask and valid only during the callback that received it.
#[allow(non_camel_case_types)]
pub struct qtask_outcome {
    error: Option<String>,
}

/// The handler of a worker. `message_json` is the task's input object plus
/// `task_id` and `attempt` (borrowed: valid until the callback returns; copy it
/// to keep it). Return 0 to finish the task; any other value fails this attempt:
/// the task is retried after a backoff (or failed for good when its attempts or
/// deadline are spent) with the text given to `qtask_outcome_set_error` kept as
/// its `last_error` (or "callback returned N" when none was given).
///
/// Called on the engine's blocking threads, up to the worker's `concurrency` at
/// once, never on the thread inside `qtask_worker_run`; so it and `user_data` must
/// be safe to use from several threads at once. It may call any `qtask_*` function
/// on other handles (a client, even the worker's own, another worker) and
/// `qtask_worker_stop` on its own worker, but not `qtask_worker_free` on its own
/// worker. It must return normally: no longjmp or C++ exception out of it.
#[allow(non_camel_case_types)]
pub type qtask_worker_callback = Option<
    unsafe extern "C" fn(
        message_json: *const c_char,
        outcome: *mut qtask_outcome,
        user_data: *mut c_void,
    ) -> i32,
>;

/// What a worker did during one `qtask_worker_run`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct qtask_worker_report {
    /// Attempts the callback finished (returned 0).
    pub finished: u64,
    /// Attempts the callback failed (retried later or failed for good).
    pub failed: u64,
    /// Outcomes of attempts that were no longer current (the lease ran out and
    /// a newer attempt began, or the task ended meanwhile): nothing changed.
    pub skipped: u64,
}

/// The callback and its `user_data`, which the header makes the caller promise
/// are usable from the engine's threads.
#[derive(Clone, Copy)]
struct Callback {
    function: unsafe extern "C" fn(*const c_char, *mut qtask_outcome, *mut c_void) -> i32,
    user_data: *mut c_void,
}

unsafe impl Send for Callback {}
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self, message: Message) -> Result<(), String> {
        // serde_json escapes NUL, so the text has none.
        let json = CString::new(message.to_json().to_string()).map_err(|e| format!("message: {e}"))?;
        let mut outcome = qtask_outcome { error: None };
        let code = unsafe { (self.function)(json.as_ptr(), &mut outcome, self.user_data) };
        match code {
            0 => Ok(()),
            code => Err(outcome
                .error
                .unwrap_or_else(|| format!("callback returned {code}"))),
        }
    }
}

struct WorkerState {
    client: Arc<Client>,
    queue: String,
    concurrency: usize,
    callback: Callback,
    running: AtomicBool,
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
        if queue.is_empty() {
            return Err(invalid("queue is empty"));
        }
        if concurrency == 0 {
            return Err(invalid("concurrency must be at least 1"));
        }
        let function = callback.ok_or_else(|| invalid("callback is NULL"))?;
        let state = WorkerState {
            client,
            queue: queue.to_string(),
            concurrency: concurrency as usize,
            callback: Callback { function, user_data },
            running: AtomicBool::new(false),
        };
        let worker: *mut qtask_worker = WORKERS.insert(Arc::new(state))?;
        // The slot may have served an earlier, stopped worker.
        stop_flag(worker)?.store(0, Ordering::Release);
        *out = worker;
        Ok(())
    })
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
        let callback = state.callback;
        let report = Worker::new(&state.client, state.queue.as_str())
            .concurrency(state.concurrency)
            .run(move |message| callback.call(message), &stop);
        run_ended.store(true, Ordering::Release);
        relay.thread().unpark();
        let _ = relay.join();
        let report = report?;
        reset(out_report, qtask_worker_report {
            finished: report.finished,
            failed: report.failed,
            skipped: report.skipped,
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

/// Called from a worker callback: fails the attempt with `message` (borrowed,
/// copied, UTF-8; invalid bytes are replaced) kept as the task's `last_error`,
/// provided the callback then returns non-zero. A second call replaces the text.
/// `outcome` is the pointer the callback received, and only during that call.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_error(
    outcome: *mut qtask_outcome,
    message: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        if message.is_null() {
            return Err(invalid("message is NULL"));
        }
        let text = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned();
        outcome.error = Some(text);
        Ok(())
    })
}
