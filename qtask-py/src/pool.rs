//! Where the engine's tasks meet Python: a pool of handler threads for sync
//! handlers, an inbox on an asyncio loop for `async def` ones.
//!
//! The engine hands each task over without blocking (`blocking::Worker::run_handing_off`)
//! and the outcome comes back through its `Reply`. A pool thread keeps its Python
//! thread state for its whole life and, once it holds the GIL, runs every task that is
//! ready before it lets go: a burst of tasks costs one GIL acquisition, not one each.
//! A task never waits behind a running one while a thread is idle: whenever tasks
//! wait and no thread is on its way to them, a hand-over (or a thread that takes a
//! task and sees more waiting) wakes a sleeping thread, or starts one while fewer than
//! the concurrency run. One thread on its way at a time, not one per task: a burst of
//! quick tasks is mostly run by the thread that already holds the GIL, and the others
//! stay asleep instead of each waking up to queue for the GIL.
//! Threads start on demand, not with the worker: an idle worker holds no handler
//! thread (nor its stack, Python thread state and malloc arena).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use pyo3::prelude::*;
use pyo3::types::PyList;
use qtask_core::blocking::Reply;
use qtask_core::{Message, Outcome};

use crate::convert::message_dict;
use crate::worker::{outcome_of, TimeUp};

/// One task handed over by the engine; `time_up` only when a time limit applies.
pub(crate) struct Job {
    pub message: Message,
    pub time_up: Option<qtask_core::TimeUp>,
    pub reply: Reply,
}

const SHUTTING_DOWN: &str = "the Python interpreter is shutting down";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    sleeping: usize,
    /// Threads woken or started that have not looked at `jobs` yet.
    coming: usize,
    closed: bool,
    threads: Vec<JoinHandle<()>>,
}

/// The sync handler threads of one queue's worker: at most `max_threads`, each started
/// when a task finds no idle one.
pub(crate) struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_threads: usize,
    handler: Py<PyAny>,
}

impl Pool {
    /// A pool whose threads call `handler(message_dict, time_up)`; none started yet.
    pub fn new(max_threads: usize, handler: Py<PyAny>) -> Arc<Pool> {
        Arc::new(Pool {
            queue: Mutex::default(),
            ready: Condvar::new(),
            max_threads,
            handler,
        })
    }

    /// Hands a task to the threads, waking an idle one or starting one if none is on
    /// its way; never blocks on Python.
    pub fn push(self: &Arc<Self>, job: Job) {
        let mut queue = lock(&self.queue);
        queue.jobs.push_back(job);
        self.call_a_thread(&mut queue);
    }

    /// Sends a thread to the waiting tasks unless one is on its way (called with the
    /// queue locked, tasks waiting).
    fn call_a_thread(self: &Arc<Self>, queue: &mut Queue) {
        if queue.coming > 0 {
            return;
        }
        if queue.sleeping > 0 {
            queue.coming += 1;
            self.ready.notify_one();
        } else if queue.threads.len() < self.max_threads {
            self.start_thread(queue);
        }
    }

    /// Starts one more thread (called with the queue locked). If none can start and
    /// none runs, the waiting tasks are retried: nothing would ever run them.
    fn start_thread(self: &Arc<Self>, queue: &mut Queue) {
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name(format!("qtask-handler-{}", queue.threads.len()))
            .spawn(move || pool.serve());
        match started {
            Ok(thread) => {
                queue.threads.push(thread);
                queue.coming += 1;
            }
            Err(err) if queue.threads.is_empty() => {
                for job in queue.jobs.drain(..) {
                    job.reply
                        .send(Outcome::Retry(format!("starting a handler thread: {err}")));
                }
            }
            Err(_) => {} // the running threads take the task
        }
    }

    /// Lets the threads end once the queue is empty, and waits for them. Call it
    /// without the GIL: they take it to finish what they hold.
    pub fn close_and_join(&self) {
        let threads = {
            let mut queue = lock(&self.queue);
            queue.closed = true;
            std::mem::take(&mut queue.threads)
        };
        self.ready.notify_all();
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// The next task, waiting for one; None once closed and empty. `arrived`: this
    /// thread was woken or started for the tasks (it is no longer on its way).
    fn wait_next(self: &Arc<Self>, mut arrived: bool) -> Option<Job> {
        let mut queue = lock(&self.queue);
        loop {
            if arrived {
                queue.coming = queue.coming.saturating_sub(1);
            }
            if let Some(job) = queue.jobs.pop_front() {
                self.more_waiting(&mut queue);
                return Some(job);
            }
            if queue.closed {
                return None;
            }
            queue.sleeping += 1;
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            queue.sleeping -= 1;
            arrived = true;
        }
    }

    /// Another ready task, for a thread that holds the GIL.
    fn try_next(self: &Arc<Self>) -> Option<Job> {
        let mut queue = lock(&self.queue);
        let job = queue.jobs.pop_front()?;
        self.more_waiting(&mut queue);
        Some(job)
    }

    /// After taking a task: those still waiting get a thread of their own on its way,
    /// in case this one's handler blocks.
    fn more_waiting(self: &Arc<Self>, queue: &mut Queue) {
        if !queue.jobs.is_empty() && !queue.closed {
            self.call_a_thread(queue);
        }
    }

    fn serve(self: Arc<Self>) {
        let mut arrived = true; // started for a task
        let served = Python::try_attach(|py| {
            while let Some(mut job) = py.detach(|| self.wait_next(std::mem::take(&mut arrived))) {
                // Holding the GIL: run what else is ready before letting go of it.
                loop {
                    run_sync(py, &self.handler, job);
                    match self.try_next() {
                        Some(next) => job = next,
                        None => break,
                    }
                }
            }
        });
        if served.is_none() {
            while let Some(job) = self.wait_next(std::mem::take(&mut arrived)) {
                job.reply.send(Outcome::Retry(SHUTTING_DOWN.to_owned()));
            }
        }
    }
}

/// The attempt's `TimeUp` for Python, or None.
fn time_up_object(py: Python<'_>, time_up: Option<qtask_core::TimeUp>) -> PyResult<Py<PyAny>> {
    Ok(match time_up {
        Some(inner) => Py::new(py, TimeUp { inner })?.into_any(),
        None => py.None(),
    })
}

/// Calls the wrapper and reads its outcome; an exception out of the wrapper fails the
/// attempt with the exception's type and message.
fn run_sync(py: Python<'_>, handler: &Py<PyAny>, job: Job) {
    let Job {
        message,
        time_up,
        reply,
    } = job;
    if let Some(time_up) = &time_up {
        // It may have waited, handed over ahead of a free thread: its limit starts now.
        time_up.start_clock();
    }
    let outcome = message_dict(py, &message)
        .and_then(|dict| Ok((dict, time_up_object(py, time_up)?)))
        .and_then(|args| handler.call1(py, args))
        .map(|returned| outcome_of(returned.bind(py)))
        .map_err(|err| err.to_string());
    reply.send_returned(outcome);
}

/// Ends one `async def` handler's attempt: `send(outcome)` with what the wrapper
/// computed (see `run_worker`). Sent once; later sends are ignored.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct AttemptReply {
    reply: Mutex<Option<Reply>>,
}

#[pymethods]
impl AttemptReply {
    fn send(&self, outcome: &Bound<'_, PyAny>) {
        if let Some(reply) = lock(&self.reply).take() {
            reply.send(outcome_of(outcome));
        }
    }
}

#[derive(Default)]
struct Waiting {
    jobs: VecDeque<Job>,
    /// A wake-up byte is on its way to the loop: no need for another.
    woken: bool,
}

/// Tasks for `async def` handlers, waiting for the asyncio loop. The engine writes a
/// byte to `wake_fd` (the loop watches the other end with `add_reader`) when the
/// first task arrives after a `take()`: one wake-up per burst, and no GIL on the
/// engine's threads.
#[pyclass(module = "qtask._qtask", frozen)]
pub struct AsyncInbox {
    waiting: Mutex<Waiting>,
    wake_fd: i32,
}

impl AsyncInbox {
    pub(crate) fn push(&self, job: Job) {
        let mut waiting = lock(&self.waiting);
        waiting.jobs.push_back(job);
        if !waiting.woken {
            waiting.woken = true;
            wake(self.wake_fd);
        }
    }
}

#[cfg(unix)]
fn wake(fd: i32) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // Borrowed: the Python side owns the socket and keeps it open while the worker runs.
    let mut socket = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    // A full buffer already holds a wake-up; the loop reads it.
    let _ = socket.write(&[1]);
}

#[cfg(not(unix))]
fn wake(_fd: i32) {
    compile_error!("qtask's Python worker needs a Unix-like system");
}

#[pymethods]
impl AsyncInbox {
    /// `wake_fd`: the writing end of a non-blocking socket pair.
    #[new]
    fn new(wake_fd: i32) -> Self {
        AsyncInbox {
            waiting: Mutex::new(Waiting::default()),
            wake_fd,
        }
    }

    /// Up to `most` of the tasks handed over (oldest first), as `(message, time_up,
    /// reply)`, their time limits starting now: the engine hands some over ahead of
    /// the concurrency, and the loop takes only what it has room for.
    fn take<'py>(&self, py: Python<'py>, most: usize) -> PyResult<Bound<'py, PyList>> {
        let jobs: Vec<Job> = {
            let mut waiting = lock(&self.waiting);
            waiting.woken = false;
            let most = most.min(waiting.jobs.len());
            waiting.jobs.drain(..most).collect()
        };
        let list = PyList::empty(py);
        for job in jobs {
            if let Some(time_up) = &job.time_up {
                time_up.start_clock();
            }
            let dict = match message_dict(py, &job.message) {
                Ok(dict) => dict,
                Err(err) => {
                    job.reply.send(Outcome::Retry(err.to_string()));
                    continue;
                }
            };
            let reply = AttemptReply {
                reply: Mutex::new(Some(job.reply)),
            };
            list.append((dict, time_up_object(py, job.time_up)?, Py::new(py, reply)?))?;
        }
        Ok(list)
    }
}
