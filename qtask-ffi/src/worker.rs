//! The C worker: `qtask_core::blocking::Worker` with a C function as the handler
//! (`qtask_worker_new`), or handing its tasks to the caller in batches
//! (`qtask_worker_new_pull`, `qtask_worker_next`, `qtask_worker_complete`: what Go
//! uses, so that no engine thread ever calls into Go).
//!
//! A worker handle is the address of one byte in a static region, and that byte is
//! the worker's stop flag: `qtask_worker_stop` finds it by arithmetic and stores to
//! it, nothing else, so it is safe in a signal handler. While `qtask_worker_run`
//! runs, a small thread hands the flag on to the engine's `StopSignal`.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qtask_core::blocking::{Client, Reply, StopSignal, Worker};
use qtask_core::{Error, Message, Outcome, TimeUp};

use crate::callback_threads::CallbackThreads;
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
/// Called on threads the worker starts for its callbacks (up to the worker's
/// `concurrency`, started as needed and kept until `qtask_worker_run` returns),
/// never on the thread inside `qtask_worker_run`; so it and `user_data` must be
/// safe to use from several threads at once. It may call any `qtask_*` function
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
pub(crate) struct Callback {
    function: unsafe extern "C" fn(*const c_char, *mut qtask_outcome, *mut c_void) -> i32,
    user_data: *mut c_void,
}

unsafe impl Send for Callback {}
unsafe impl Sync for Callback {}

impl Callback {
    pub(crate) fn call(&self, message: Message, time_up: &TimeUp) -> Result<Outcome, String> {
        let json = message_text(&message).map_err(|e| format!("message: {e}"))?;
        let mut outcome = qtask_outcome {
            error: None,
            delay: None,
            result: None,
            time_up: time_up.clone(),
        };
        let code = unsafe { (self.function)(json.as_ptr(), &mut outcome, self.user_data) };
        Ok(outcome_of(
            code,
            outcome.error,
            outcome.delay,
            outcome.result,
            "callback",
        ))
    }
}

/// `Message::to_json` as C text, written in one pass: the input's keys (but
/// `task_id` and `attempt`) after the ids, with no copy of the input first.
fn message_text(message: &Message) -> Result<CString, String> {
    use std::io::Write;
    let mut text = Vec::with_capacity(64);
    let _ = write!(
        text,
        "{{\"task_id\":{},\"attempt\":{}",
        message.task_id, message.attempt
    );
    for (key, value) in &message.input {
        if key == "task_id" || key == "attempt" {
            continue;
        }
        text.push(b',');
        serde_json::to_writer(&mut text, key).map_err(|e| e.to_string())?;
        text.push(b':');
        serde_json::to_writer(&mut text, value).map_err(|e| e.to_string())?;
    }
    text.push(b'}');
    // serde_json escapes NUL, so the text has none.
    CString::new(text).map_err(|e| e.to_string())
}

/// How an attempt ends, from a returned code and what was set beside it.
fn outcome_of(
    code: i32,
    error: Option<String>,
    delay: Option<Duration>,
    result: Option<serde_json::Value>,
    who: &str,
) -> Outcome {
    let text = |default: String| error.clone().unwrap_or(default);
    match code {
        0 => Outcome::Finish(result),
        2 => match delay {
            Some(delay) => Outcome::RetryAfter(delay),
            None => Outcome::Retry(text(format!(
                "{who} returned QTASK_OUTCOME_CODE_RETRY_AFTER without a delay"
            ))),
        },
        3 => Outcome::Cancel(text(format!("cancelled by the {who}"))),
        4 => Outcome::FailNow(text(format!("failed by the {who}"))),
        code => Outcome::Retry(text(format!("{who} returned {code}"))),
    }
}

/// A task handed out by `qtask_worker_next`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct qtask_task {
    /// Names the task to `qtask_worker_complete` and `qtask_worker_time_up`; unique
    /// within the worker.
    pub token: u64,
    /// The task's input object plus `task_id` and `attempt`. qtask's: valid until
    /// this token's completion is passed to `qtask_worker_complete` (or the run ends).
    pub message_json: *const c_char,
}

/// A task handed out by `qtask_worker_take`: a `qtask_task` plus what a handler
/// needs without parsing the JSON, and its time limit.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct qtask_taken_task {
    /// Names the task to `qtask_worker_complete` and `qtask_worker_time_up`; unique
    /// within the worker.
    pub token: u64,
    pub task_id: i64,
    /// The attempt's number (1 for the first).
    pub attempt: i64,
    /// The task's input object plus `task_id` and `attempt`, as `qtask_task`'s:
    /// valid until this token's completion is passed to `qtask_worker_complete` (or
    /// the run ends).
    pub message_json: *const c_char,
    /// The length of `message_json` in bytes, without its NUL.
    pub message_len: usize,
    /// The task's name (its kind), valid as long as `message_json`.
    pub name: *const c_char,
    /// The length of `name` in bytes, without its NUL.
    pub name_len: usize,
    /// Seconds left, when `qtask_worker_take` returned, before this attempt's time
    /// limit (the task's own `time_limit`, else the worker's
    /// `qtask_worker_set_time_limit`) ends it as failed; `qtask_worker_time_up` then
    /// turns true. Negative when the attempt has no time limit.
    pub time_left_seconds: f64,
}

/// How one handed-out task ended, for `qtask_worker_complete`: what a callback
/// returns and sets on its `qtask_outcome`, in one struct.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct qtask_completion {
    /// The `qtask_task`'s token.
    pub token: u64,
    /// A `qtask_outcome_code` (any other non-zero value means
    /// `QTASK_OUTCOME_CODE_RETRY`).
    pub code: i32,
    /// NULL, or the text (UTF-8, borrowed) kept as `last_error` or as the reason, as
    /// with `qtask_outcome_set_error`.
    pub error: *const c_char,
    /// With `QTASK_OUTCOME_CODE_RETRY_AFTER`: the delay in seconds (>= 0).
    pub delay_seconds: f64,
    /// NULL, or with `QTASK_OUTCOME_CODE_FINISH` a JSON value (borrowed) kept as the
    /// task's result; malformed JSON fails the task for good with the parse error.
    pub result_json: *const c_char,
}

/// A task handed out and not completed yet.
struct Out {
    message: CString,
    name: CString,
    task_id: i64,
    attempt: i64,
    /// When the engine ends the attempt for its time limit (it started the clock
    /// just before the hand-off).
    deadline: Option<Instant>,
    time_up: TimeUp,
    reply: Reply,
}

/// Where a pull-mode worker's tasks wait for `qtask_worker_next`.
#[derive(Default)]
struct Exchange {
    handed: Mutex<Handed>,
    ready: Condvar,
    /// `qtask_worker_wake_fd`'s pipe, made on the first call.
    wake: std::sync::OnceLock<WakePipe>,
}

/// A pipe that turns readable when tasks wait to be taken (or the run ended), so
/// that a caller can wait in its own event loop (Go's netpoller) instead of
/// blocking a thread in `qtask_worker_next`.
struct WakePipe {
    read: i32,
    write: i32,
}

impl WakePipe {
    #[cfg(unix)]
    fn new() -> Result<WakePipe, Error> {
        let mut fds = [0; 2];
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(Error::Internal(format!(
                "pipe: {}",
                std::io::Error::last_os_error()
            )));
        }
        for fd in fds {
            // Non-blocking: the engine's thread never waits on a full pipe (it is
            // readable then anyway), and the reader may poll it.
            unsafe {
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
                );
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(WakePipe {
            read: fds[0],
            write: fds[1],
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<WakePipe, Error> {
        Err(Error::InvalidState(
            "qtask_worker_wake_fd needs a Unix system".into(),
        ))
    }

    fn signal(&self) {
        #[cfg(unix)]
        unsafe {
            libc::write(self.write, [1u8].as_ptr().cast(), 1);
        }
    }
}

impl Drop for WakePipe {
    fn drop(&mut self) {
        #[cfg(unix)]
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

#[derive(Default)]
struct Handed {
    /// Tokens not taken by `qtask_worker_next` yet, oldest first.
    queue: VecDeque<u64>,
    /// Every task handed over and not completed, by token.
    out: HashMap<u64, Out>,
    next_token: u64,
    /// The run has returned: `qtask_worker_next` says so instead of waiting.
    ended: bool,
    /// Callers waiting in `qtask_worker_next` / `qtask_worker_take`: a hand-off
    /// wakes one only when there is one (a wake is a system call).
    waiting: usize,
}

impl Exchange {
    fn lock(&self) -> MutexGuard<'_, Handed> {
        self.handed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by the engine (on its runtime threads, never blocking for long) with
    /// each claimed task. `worker_limit` is the worker's time limit, which the
    /// engine applies when the task has none of its own.
    fn deliver(&self, message: Message, time_up: TimeUp, reply: Reply, worker_limit: Option<Duration>) {
        let deadline = message
            .time_limit
            .or(worker_limit)
            .and_then(|limit| Instant::now().checked_add(limit));
        // A name with a NUL is cut there.
        let text = match message_text(&message) {
            Ok(text) => text,
            Err(e) => return reply.send(Outcome::Retry(format!("message: {e}"))),
        };
        let name = CString::new(message.name).unwrap_or_else(|e| {
            let end = e.nul_position();
            let mut bytes = e.into_vec();
            bytes.truncate(end);
            CString::new(bytes).unwrap_or_default()
        });
        let out = Out {
            message: text,
            name,
            task_id: message.task_id,
            attempt: message.attempt,
            deadline,
            time_up,
            reply,
        };
        let mut handed = self.lock();
        handed.next_token += 1;
        let token = handed.next_token;
        handed.out.insert(token, out);
        handed.queue.push_back(token);
        let wake = handed.waiting > 0;
        let first = handed.queue.len() == 1;
        drop(handed);
        if wake {
            self.ready.notify_one();
        }
        if first {
            if let Some(pipe) = self.wake.get() {
                pipe.signal();
            }
        }
    }

    /// Waits up to `wait` for tasks to hand out; then takes up to `capacity` of them
    /// and calls `write` with each one's token and entry. `Ok(0)` when the wait
    /// passed, `Err(Closed)` once the run has ended.
    fn take(
        &self,
        capacity: usize,
        wait: Duration,
        mut write: impl FnMut(usize, u64, &Out),
    ) -> Result<usize, Error> {
        let until = Instant::now().checked_add(wait);
        let mut handed = self.lock();
        while handed.queue.is_empty() && !handed.ended {
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok(0);
            }
            handed.waiting += 1;
            handed = self
                .ready
                .wait_timeout(handed, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
            handed.waiting -= 1;
        }
        if handed.ended {
            return Err(Error::Closed);
        }
        let take = handed.queue.len().min(capacity);
        for i in 0..take {
            let token = handed.queue.pop_front().expect("counted");
            if let Some(out) = handed.out.get(&token) {
                write(i, token, out);
            }
        }
        let more = !handed.queue.is_empty() && handed.waiting > 0;
        drop(handed);
        if more {
            // Another caller may take the rest.
            self.ready.notify_one();
        }
        Ok(take)
    }

    fn end(&self) {
        let mut handed = self.lock();
        handed.ended = true;
        handed.queue.clear();
        handed.out.clear();
        drop(handed);
        self.ready.notify_all();
        if let Some(pipe) = self.wake.get() {
            pipe.signal();
        }
    }
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
/// and the calls cost one lock per batch, not a thread switch per task. Stop and
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
        *out = new_worker(client, queue, concurrency, Mode::Pull(Arc::default()))?;
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
        let mut engine = Worker::new(&state.client, state.queue.as_str()).concurrency(state.concurrency);
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

/// The exchange of a pull-mode worker.
fn exchange(worker: *mut qtask_worker) -> Result<Arc<Exchange>, Error> {
    match &WORKERS.get(worker)?.mode {
        Mode::Pull(exchange) => Ok(exchange.clone()),
        Mode::Callback(_) => Err(Error::InvalidState(
            "this worker calls a callback: create it with qtask_worker_new_pull".into(),
        )),
    }
}

/// Takes up to `capacity` tasks of a worker made by `qtask_worker_new_pull` into
/// `out_tasks` (an array of `capacity`, written from the start) and their number
/// into `*out_count`, waiting up to `wait_seconds` (>= 0) for the first. Each task
/// must be reported with `qtask_worker_complete`: until then it keeps one of the
/// worker's `concurrency` slots, and its `message_json` stays valid.
///
/// Returns `QTASK_RESULT_OK` with `*out_count` 0 when the wait passed, also before
/// `qtask_worker_run` started; `QTASK_RESULT_CLOSED` once the run has returned (after
/// `qtask_worker_stop`, every task handed out was completed) or the worker was freed.
/// May be called from any thread, from several at once.
#[no_mangle]
pub extern "C" fn qtask_worker_next(
    worker: *mut qtask_worker,
    out_tasks: *mut qtask_task,
    capacity: usize,
    wait_seconds: f64,
    out_count: *mut usize,
) -> qtask_result {
    ffi_boundary!(result: {
        take_into(worker, out_tasks, capacity, wait_seconds, out_count, |token, out| qtask_task {
            token,
            message_json: out.message.as_ptr(),
        })
    })
}

/// `qtask_worker_next` with more about each task (`qtask_taken_task`: its id,
/// attempt, name, the JSON's length and the time left before its time limit), so
/// that a binding need not parse the JSON for them. Same rules as
/// `qtask_worker_next`: up to `capacity` tasks into `out_tasks`, their number into
/// `*out_count`, waiting up to `wait_seconds` for the first; `QTASK_RESULT_CLOSED`
/// once the run has returned. Each task must be reported with
/// `qtask_worker_complete`.
#[no_mangle]
pub extern "C" fn qtask_worker_take(
    worker: *mut qtask_worker,
    out_tasks: *mut qtask_taken_task,
    capacity: usize,
    wait_seconds: f64,
    out_count: *mut usize,
) -> qtask_result {
    ffi_boundary!(result: {
        let now = Instant::now();
        take_into(worker, out_tasks, capacity, wait_seconds, out_count, |token, out| qtask_taken_task {
            token,
            task_id: out.task_id,
            attempt: out.attempt,
            message_json: out.message.as_ptr(),
            message_len: out.message.as_bytes().len(),
            name: out.name.as_ptr(),
            name_len: out.name.as_bytes().len(),
            time_left_seconds: out
                .deadline
                .map_or(-1.0, |deadline| deadline.saturating_duration_since(now).as_secs_f64()),
        })
    })
}

/// The body of `qtask_worker_next` and `qtask_worker_take`: checks the caller's
/// array, waits up to `wait_seconds` for tasks and writes each, as `describe` makes
/// it, into the array; their number goes to `*out_count`.
fn take_into<T>(
    worker: *mut qtask_worker,
    out_tasks: *mut T,
    capacity: usize,
    wait_seconds: f64,
    out_count: *mut usize,
    describe: impl Fn(u64, &Out) -> T,
) -> Result<(), Error> {
    reset(out_count, 0);
    if out_tasks.is_null() || capacity == 0 {
        return Err(invalid("out_tasks is NULL or capacity is 0"));
    }
    let wait = qtask_core::seconds("wait_seconds", wait_seconds)?;
    let take = exchange(worker)?.take(capacity, wait, |i, token, out| {
        // i < capacity: the caller's array has room for it.
        unsafe { out_tasks.add(i).write(describe(token, out)) };
    })?;
    reset(out_count, take);
    Ok(())
}

/// Reports how `count` tasks of `qtask_worker_next` ended (`completions`, borrowed,
/// an array of `count`): each attempt ends as its code says, as a callback's return
/// would, and its slot frees up. A token that is unknown or already completed is
/// ignored (so is a completion that comes after the time limit ended the attempt).
/// May be called from any thread, from several at once.
#[no_mangle]
pub extern "C" fn qtask_worker_complete(
    worker: *mut qtask_worker,
    completions: *const qtask_completion,
    count: usize,
) -> qtask_result {
    ffi_boundary!(result: {
        if count == 0 {
            return Ok(());
        }
        if completions.is_null() {
            return Err(invalid("completions is NULL"));
        }
        let exchange = exchange(worker)?;
        let completions = unsafe { std::slice::from_raw_parts(completions, count) };
        let mut outs = Vec::with_capacity(count);
        {
            let mut handed = exchange.lock();
            for done in completions {
                if let Some(out) = handed.out.remove(&done.token) {
                    outs.push((out, done));
                }
            }
        }
        for (out, done) in outs {
            out.reply.send(completed(done));
        }
        Ok(())
    })
}

/// Gives a file descriptor of a worker made by `qtask_worker_new_pull` that turns
/// readable when tasks wait to be taken, and when the run has ended: wait for it
/// in an event loop (poll, epoll, Go's netpoller), read what it holds (the bytes
/// mean nothing; it is non-blocking), then call `qtask_worker_take` or
/// `qtask_worker_next` with a wait of 0 until they hand out nothing. It may turn
/// readable with nothing to take. The descriptor is the worker's: do not close
/// it; it stays open until `qtask_worker_free`. Unix only
/// (`QTASK_RESULT_INVALID_STATE` elsewhere).
#[no_mangle]
pub extern "C" fn qtask_worker_wake_fd(worker: *mut qtask_worker, out_fd: *mut i32) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_fd, -1);
        let exchange = exchange(worker)?;
        if exchange.wake.get().is_none() {
            let pipe = WakePipe::new()?;
            // A second caller racing this one keeps the first pipe; this one closes.
            let _ = exchange.wake.set(pipe);
        }
        let pipe = exchange.wake.get().expect("set above");
        let pending = {
            let handed = exchange.lock();
            !handed.queue.is_empty() || handed.ended
        };
        if pending {
            pipe.signal();
        }
        reset(out_fd, pipe.read);
        Ok(())
    })
}

/// The outcome a `qtask_completion` describes.
fn completed(done: &qtask_completion) -> Outcome {
    let text = |p: *const c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let error = text(done.error);
    let delay = match done.code {
        2 => match qtask_core::seconds("delay_seconds", done.delay_seconds) {
            Ok(delay) => Some(delay),
            Err(err) => return Outcome::Retry(err.to_string()),
        },
        _ => None,
    };
    let result = match (done.code, text(done.result_json)) {
        (0, Some(json)) => match serde_json::from_str(&json) {
            Ok(value) => Some(value),
            Err(e) => return Outcome::FailNow(format!("result_json: {e}")),
        },
        _ => None,
    };
    outcome_of(done.code, error, delay, result, "worker")
}

/// True once the time limit of the task `token` of a `qtask_worker_new_pull` worker
/// (the task's own `time_limit`, else the worker's) has passed: its attempt has
/// then failed; stop working on it, and complete it. False without a time limit,
/// and for a token not handed out or already completed.
#[no_mangle]
pub extern "C" fn qtask_worker_time_up(worker: *mut qtask_worker, token: u64) -> bool {
    ffi_boundary!({
        match exchange(worker) {
            Ok(exchange) => exchange
                .lock()
                .out
                .get(&token)
                .is_some_and(|out| out.time_up.is_up()),
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn message_text_is_to_json() {
        let input = json!({"n": 1, "s": "a\"b\u{e9}", "nested": {"x": [1, 2.5, null]}, "task_id": "theirs", "attempt": 9});
        let message = Message {
            task_id: 42,
            attempt: 3,
            queue: "q".into(),
            name: "kind".into(),
            deadline_at: 0,
            input: input.as_object().cloned().unwrap_or_default(),
            lease: Duration::from_secs(1),
            time_limit: None,
            trace_context: None,
        };
        let text = message_text(&message).expect("text");
        let parsed: Value = serde_json::from_str(text.to_str().expect("utf-8")).expect("json");
        assert_eq!(parsed, message.to_json());
        assert_eq!(parsed["task_id"], 42);
    }
}
