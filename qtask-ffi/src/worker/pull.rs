//! The pull API of a worker (`qtask_worker_new_pull`): the engine hands each claimed
//! task to an `Exchange`, where callers take them in batches (`qtask_worker_next`,
//! `qtask_worker_take`, woken by `qtask_worker_wake_fd`) and report them, also in
//! batches (`qtask_worker_complete`, or `qtask_worker_complete_take`, which takes the
//! next ones in the same call).
//!
//! The engine hands over tasks ahead of the concurrency (`hand_ahead_for_bursts`). They
//! wait in the exchange, their leases renewed, until a caller has room for them (at
//! most `concurrency` are taken and not completed), and their time limits start when
//! they are taken. A caller that completes and takes in one call then runs a burst of
//! short tasks without a round trip through the engine's thread for each.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_char;
use std::ffi::CString;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qtask_core::blocking::Reply;
use qtask_core::{Error, Message, Outcome, TimeUp};

use super::convert::{completed, message_text};
use super::{qtask_worker, Mode, WORKERS};
use crate::client::reset;
use crate::error::qtask_result;
use crate::ffi::invalid;
use crate::panic::ffi_boundary;

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

/// A task handed over and not completed yet.
struct Out {
    message: CString,
    name: CString,
    task_id: i64,
    attempt: i64,
    /// The attempt's time limit: the task's own, else the worker's.
    limit: Option<Duration>,
    /// When the engine ends the attempt for its time limit, once taken (the clock
    /// starts then).
    deadline: Option<Instant>,
    time_up: TimeUp,
    reply: Reply,
}

/// Where a pull-mode worker's tasks wait for `qtask_worker_next`.
pub(super) struct Exchange {
    handed: Mutex<Handed>,
    ready: Condvar,
    /// `qtask_worker_wake_fd`'s pipe, made on the first call.
    wake: std::sync::OnceLock<WakePipe>,
    /// Tasks taken and not completed at most.
    concurrency: usize,
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
    /// Every task handed over and not completed, by token (taken or not).
    out: HashMap<u64, Out>,
    next_token: u64,
    /// The run has returned: `qtask_worker_next` says so instead of waiting.
    ended: bool,
    /// Callers waiting in `qtask_worker_next` / `qtask_worker_take`: a hand-off
    /// wakes one only when there is one (a wake is a system call).
    waiting: usize,
    /// A wake of the takers is on its way (`Exchange::wake_after_burst`).
    wake_scheduled: bool,
}

impl Handed {
    /// Tasks a caller may take now: waiting ones, as far as the concurrency allows.
    fn takeable(&self, concurrency: usize) -> usize {
        let taken = self.out.len() - self.queue.len();
        self.queue.len().min(concurrency.saturating_sub(taken))
    }
}

impl Exchange {
    pub(super) fn new(concurrency: usize) -> Exchange {
        Exchange {
            handed: Mutex::default(),
            ready: Condvar::new(),
            wake: std::sync::OnceLock::new(),
            concurrency,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Handed> {
        self.handed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called by the engine (on its runtime threads, never blocking for long) with
    /// each claimed task. `worker_limit` is the worker's time limit, which the
    /// engine applies when the task has none of its own.
    pub(super) fn deliver(
        self: &Arc<Self>,
        message: Message,
        time_up: TimeUp,
        reply: Reply,
        worker_limit: Option<Duration>,
    ) {
        let limit = message.time_limit.or(worker_limit);
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
            limit,
            deadline: None,
            time_up,
            reply,
        };
        let mut handed = self.lock();
        handed.next_token += 1;
        let token = handed.next_token;
        let could_take = handed.takeable(self.concurrency) > 0;
        handed.out.insert(token, out);
        handed.queue.push_back(token);
        // A taker waits, or the wake pipe must turn readable (it had nothing to take):
        // one wake-up for the whole burst of tasks one fetch claimed, once they are
        // all here. Not for a task that waits for room: a completion makes it.
        let takeable = handed.takeable(self.concurrency) > 0;
        let wake = takeable && (handed.waiting > 0 || !could_take) && !handed.wake_scheduled;
        handed.wake_scheduled |= wake;
        drop(handed);
        if wake {
            self.wake_after_burst();
        }
    }

    /// Wakes the takers once the runtime thread has run every task that was ready
    /// (the other attempts of the same fetch, each delivering its task), so that a
    /// taker finds the burst whole: one wake-up, one take and one completion for
    /// it, whose outcomes the engine then writes together, instead of one each.
    fn wake_after_burst(self: &Arc<Self>) {
        let exchange = self.clone();
        qtask_core::blocking::after_ready_tasks(move || exchange.wake_takers());
    }

    fn wake_takers(&self) {
        let mut handed = self.lock();
        handed.wake_scheduled = false;
        let pending = handed.takeable(self.concurrency) > 0;
        let waiting = handed.waiting > 0;
        drop(handed);
        if pending && waiting {
            self.ready.notify_one();
        }
        if pending {
            if let Some(pipe) = self.wake.get() {
                pipe.signal();
            }
        }
    }

    /// Waits up to `wait` for tasks to hand out; then takes up to `capacity` of them
    /// (as many as the concurrency has room for), starts their time limits and calls
    /// `write` with each one's token, its entry and the instant it was taken. `Ok(0)`
    /// when the wait passed, `Err(Closed)` once the run has ended.
    fn take(
        &self,
        capacity: usize,
        wait: Duration,
        write: impl FnMut(usize, u64, &Out, Instant),
    ) -> Result<usize, Error> {
        let handed = self.lock();
        self.take_locked(handed, capacity, wait, write)
            .map(|(taken, _)| taken)
    }

    /// [`Exchange::take`] with the lock held, which it lets go of: also whether tasks
    /// that the concurrency has room for still wait.
    fn take_locked(
        &self,
        mut handed: MutexGuard<'_, Handed>,
        capacity: usize,
        wait: Duration,
        mut write: impl FnMut(usize, u64, &Out, Instant),
    ) -> Result<(usize, bool), Error> {
        let until = Instant::now().checked_add(wait);
        while handed.takeable(self.concurrency) == 0 && !handed.ended {
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok((0, false));
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
        let take = handed.takeable(self.concurrency).min(capacity);
        let now = Instant::now();
        for i in 0..take {
            let token = handed.queue.pop_front().expect("counted");
            if let Some(out) = handed.out.get_mut(&token) {
                out.time_up.start_clock();
                out.deadline = out.limit.and_then(|limit| now.checked_add(limit));
                write(i, token, out, now);
            }
        }
        let more = handed.takeable(self.concurrency) > 0;
        let waiting = handed.waiting > 0;
        drop(handed);
        if more && waiting {
            // Another caller may take the rest.
            self.ready.notify_one();
        }
        Ok((take, more))
    }

    /// Takes the completed tasks out (unknown tokens are ignored): the lock, still
    /// held, and each one's reply with its outcome, to send once it is let go.
    fn complete(&self, completions: &[qtask_completion]) -> (MutexGuard<'_, Handed>, Vec<(Reply, Outcome)>) {
        let mut handed = self.lock();
        let mut replies = Vec::with_capacity(completions.len());
        for done in completions {
            if let Some(out) = handed.out.remove(&done.token) {
                replies.push((out.reply, completed(done)));
            }
        }
        (handed, replies)
    }

    pub(super) fn end(&self) {
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
        take_into(worker, out_tasks, capacity, wait_seconds, out_count, |token, out, _| qtask_task {
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
        take_into(worker, out_tasks, capacity, wait_seconds, out_count, taken_task)
    })
}

/// How `qtask_worker_take` describes a task it took at `now`.
fn taken_task(token: u64, out: &Out, now: Instant) -> qtask_taken_task {
    qtask_taken_task {
        token,
        task_id: out.task_id,
        attempt: out.attempt,
        message_json: out.message.as_ptr(),
        message_len: out.message.as_bytes().len(),
        name: out.name.as_ptr(),
        name_len: out.name.as_bytes().len(),
        time_left_seconds: out.deadline.map_or(-1.0, |deadline| {
            deadline.saturating_duration_since(now).as_secs_f64()
        }),
    }
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
    describe: impl Fn(u64, &Out, Instant) -> T,
) -> Result<(), Error> {
    reset(out_count, 0);
    if out_tasks.is_null() || capacity == 0 {
        return Err(invalid("out_tasks is NULL or capacity is 0"));
    }
    let wait = qtask_core::seconds("wait_seconds", wait_seconds)?;
    let take = exchange(worker)?.take(capacity, wait, |i, token, out, now| {
        // i < capacity: the caller's array has room for it.
        unsafe { out_tasks.add(i).write(describe(token, out, now)) };
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
        let exchange = exchange(worker)?;
        let completions = completions_arg(completions, count)?;
        let (handed, replies) = exchange.complete(completions);
        let wake = handed.takeable(exchange.concurrency) > 0;
        drop(handed);
        if wake {
            // Room freed up for tasks that wait: whoever waits for them may take them.
            exchange.wake_takers();
        }
        // One wake-up of the engine for the batch, whose outcomes then commit together.
        Reply::send_all(replies);
        Ok(())
    })
}

/// `qtask_worker_complete` and then `qtask_worker_take` with a wait of 0, in one
/// call and under one lock: reports how `count` tasks ended (`completions`,
/// borrowed, may be NULL when `count` is 0), then takes up to `capacity` of the
/// tasks that wait into `out_tasks` and their number into `*out_count` (0 when
/// none waits). The worker hands over a few tasks more than its concurrency, so a
/// caller that completes and takes in one call goes on with the next task at once.
/// `QTASK_RESULT_CLOSED` once the run has returned (the completions are then
/// ignored, as `qtask_worker_complete` ignores unknown tokens).
#[no_mangle]
pub extern "C" fn qtask_worker_complete_take(
    worker: *mut qtask_worker,
    completions: *const qtask_completion,
    count: usize,
    out_tasks: *mut qtask_taken_task,
    capacity: usize,
    out_count: *mut usize,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_count, 0);
        if out_tasks.is_null() || capacity == 0 {
            return Err(invalid("out_tasks is NULL or capacity is 0"));
        }
        let exchange = exchange(worker)?;
        let completions = completions_arg(completions, count)?;
        let (handed, replies) = exchange.complete(completions);
        let taken = exchange.take_locked(handed, capacity, Duration::ZERO, |i, token, out, now| {
            // i < capacity: the caller's array has room for it.
            unsafe { out_tasks.add(i).write(taken_task(token, out, now)) };
        });
        Reply::send_all(replies);
        let (taken, more) = taken?;
        if more {
            // Left for the other takers (the wake pipe's reader among them).
            exchange.wake_takers();
        }
        reset(out_count, taken);
        Ok(())
    })
}

/// The caller's array of `count` completions (empty when `count` is 0).
fn completions_arg<'a>(
    completions: *const qtask_completion,
    count: usize,
) -> Result<&'a [qtask_completion], Error> {
    if count == 0 {
        return Ok(&[]);
    }
    if completions.is_null() {
        return Err(invalid("completions is NULL"));
    }
    Ok(unsafe { std::slice::from_raw_parts(completions, count) })
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
