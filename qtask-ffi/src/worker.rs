//! The C worker: `qtask_core::blocking::Worker` with a C function as the handler.
//!
//! A worker handle is the address of one byte in a static region, and that byte is
//! the worker's stop flag: `qtask_worker_stop` finds it by arithmetic and stores to
//! it, nothing else, so it is safe in a signal handler. While `qtask_worker_run`
//! runs, a small thread hands the flag on to the engine's `StopSignal`.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qtask_core::blocking::{Client, StopSignal, Worker};
use qtask_core::{Error, Message, Outcome, TimeUp};

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

/// What a callback adds to the code it returns: a text (`qtask_outcome_set_error`),
/// a delay (`qtask_outcome_set_delay`), a result (`qtask_outcome_set_result`); and
/// whether its time limit passed (`qtask_outcome_time_up`). Opaque; owned by qtask
/// and valid only during the callback that received it.
#[allow(non_camel_case_types)]
pub struct qtask_outcome {
    error: Option<String>,
    delay: Option<Duration>,
    result: Option<serde_json::Value>,
    time_up: TimeUp,
}

/// What a worker callback returns: how the attempt ends. Any other non-zero value
/// means `QTASK_OUTCOME_CODE_RETRY`.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum qtask_outcome_code {
    /// Finished; with the value given to `qtask_outcome_set_result` (if any) kept as
    /// the task's result (see `qtask_task_result`).
    Finish = 0,
    /// This attempt failed: retried after a backoff (or failed for good when its
    /// attempts or deadline are spent), the `qtask_outcome_set_error` text (or
    /// "callback returned N") kept as `last_error`.
    Retry = 1,
    /// Comes back after the `qtask_outcome_set_delay` delay, giving its attempt back
    /// (`max_count` grows by one); fails for good if the delay passes its deadline.
    /// Without a delay it counts as `QTASK_OUTCOME_CODE_RETRY`.
    RetryAfter = 2,
    /// Ends as cancelled, never runs again; the `qtask_outcome_set_error` text is kept
    /// as the reason.
    Cancel = 3,
    /// Ends as failed for good, no more retries; the `qtask_outcome_set_error` text is
    /// kept as the reason.
    FailNow = 4,
}

/// The handler of a worker. `message_json` is the task's input object plus
/// `task_id` and `attempt` (borrowed: valid until the callback returns; copy it
/// to keep it). It returns a `qtask_outcome_code` (0 finishes the task) and may
/// set a text, delay or result on `outcome` first.
///
/// Called on the engine's blocking threads, up to the worker's `concurrency` at
/// once, never on the thread inside `qtask_worker_run`; so it and `user_data` must
/// be safe to use from several threads at once. It may call any `qtask_*` function
/// on other handles (a client, even the worker's own, another worker) and
/// `qtask_worker_stop` on its own worker, but not `qtask_worker_free` on its own
/// worker. It must return normally: no longjmp or C++ exception out of it.
///
/// With a time limit (`qtask_worker_set_time_limit`), a long callback should poll
/// `qtask_outcome_time_up(outcome)` and return soon once it is true: the attempt has
/// then already failed, and what the callback returns is ignored. A callback that
/// never looks keeps its slot (one of `concurrency`) until it returns.
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
    fn call(&self, message: Message, time_up: &TimeUp) -> Result<Outcome, String> {
        // serde_json escapes NUL, so the text has none.
        let json = CString::new(message.to_json().to_string()).map_err(|e| format!("message: {e}"))?;
        let mut outcome = qtask_outcome {
            error: None,
            delay: None,
            result: None,
            time_up: time_up.clone(),
        };
        let code = unsafe { (self.function)(json.as_ptr(), &mut outcome, self.user_data) };
        let text = |default: String| outcome.error.clone().unwrap_or(default);
        Ok(match code {
            0 => Outcome::Finish(outcome.result),
            2 => match outcome.delay {
                Some(delay) => Outcome::RetryAfter(delay),
                None => Outcome::Retry(text(
                    "callback returned QTASK_OUTCOME_CODE_RETRY_AFTER without qtask_outcome_set_delay".into(),
                )),
            },
            3 => Outcome::Cancel(text("cancelled by the callback".into())),
            4 => Outcome::FailNow(text("failed by the callback".into())),
            code => Outcome::Retry(text(format!("callback returned {code}"))),
        })
    }
}

struct WorkerState {
    client: Arc<Client>,
    queue: String,
    concurrency: usize,
    callback: Callback,
    running: AtomicBool,
    /// `qtask_worker_set_time_limit`, in milliseconds; 0 for none.
    time_limit_ms: AtomicU64,
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
            time_limit_ms: AtomicU64::new(0),
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
        let mut engine = Worker::new(&state.client, state.queue.as_str()).concurrency(state.concurrency);
        let limit_ms = state.time_limit_ms.load(Ordering::Acquire);
        if limit_ms > 0 {
            engine = engine.time_limit(Duration::from_millis(limit_ms));
        }
        let report = engine.run_with_time_up(move |message, time_up| callback.call(message, time_up), &stop);
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

/// Called from a worker callback: true once the worker's time limit for this
/// attempt has passed (then return soon; the attempt has already failed). False
/// without a time limit, and for NULL.
#[no_mangle]
pub extern "C" fn qtask_outcome_time_up(outcome: *const qtask_outcome) -> bool {
    ffi_boundary!({
        match unsafe { outcome.as_ref() } {
            Some(outcome) => outcome.time_up.is_up(),
            None => false,
        }
    })
}

/// Called from a worker callback that returns `QTASK_OUTCOME_CODE_RETRY_AFTER`: the
/// task comes back after `seconds` (>= 0). A second call replaces the delay.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_delay(outcome: *mut qtask_outcome, seconds: f64) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        outcome.delay = Some(qtask_core::seconds("delay", seconds)?);
        Ok(())
    })
}

/// Called from a worker callback that returns `QTASK_OUTCOME_CODE_FINISH`: keeps
/// `result_json` (borrowed, copied; any JSON value) as the task's result, readable
/// with `qtask_task_result` while the finished row is kept (its delete_deadline).
/// Malformed JSON is `QTASK_RESULT_INVALID_ARGUMENT` and sets nothing.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_result(
    outcome: *mut qtask_outcome,
    result_json: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        let text = unsafe { str_arg(result_json, "result_json") }?;
        let value = serde_json::from_str(text).map_err(|e| invalid(format!("result_json: {e}")))?;
        outcome.result = Some(value);
        Ok(())
    })
}

/// Called from a worker callback: the text kept as the task's `last_error` when the
/// callback returns `QTASK_OUTCOME_CODE_RETRY` (or any other non-zero code), and as
/// the reason of `QTASK_OUTCOME_CODE_CANCEL` and `QTASK_OUTCOME_CODE_FAIL_NOW`.
/// `message` is borrowed and copied (UTF-8; invalid bytes are replaced). A second
/// call replaces the text. `outcome` is the pointer the callback received, and only
/// during that call.
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
