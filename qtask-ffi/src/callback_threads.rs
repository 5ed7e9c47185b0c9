//! The threads a callback worker (`qtask_worker_new`) calls its callback on. The
//! engine hands each claimed task over (`run_handing_off`); a thread of this set,
//! started on demand up to the concurrency and kept for the whole run, takes it,
//! calls the callback and replies. A task then costs a queue push and at most one
//! wake-up, instead of a job on the runtime's blocking pool (a spawn, a wake of a
//! pool thread, and a join handle to wake the engine back).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use qtask_core::blocking::Reply;
use qtask_core::{Message, Outcome, TimeUp};

use crate::worker::Callback;

/// One claimed task on its way to a callback thread.
struct Job {
    message: Message,
    time_up: TimeUp,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads blocked waiting for a job (a notified one counts until it wakes).
    waiting: usize,
    /// Threads started so far (never more than the concurrency).
    started: usize,
    /// The run has returned: threads exit once the queue is empty.
    ended: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    callback: Callback,
    max: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The callback threads of one `qtask_worker_run`.
#[derive(Clone)]
pub(crate) struct CallbackThreads(Arc<Shared>);

impl CallbackThreads {
    pub(crate) fn new(callback: Callback, concurrency: usize) -> Self {
        CallbackThreads(Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            callback,
            max: concurrency.max(1),
            threads: Mutex::new(Vec::new()),
        }))
    }

    /// Called by the engine (on its runtime threads; never blocks for long) with
    /// each claimed task. Wakes a waiting thread only when the queue was empty:
    /// the thread that takes a job wakes the next one if more are queued, so a burst
    /// of fast callbacks is run by as few threads as keep up with it.
    pub(crate) fn deliver(&self, message: Message, time_up: TimeUp, reply: Reply) {
        let mut queue = self.0.lock();
        queue.jobs.push_back(Job {
            message,
            time_up,
            reply,
        });
        let first = queue.jobs.len() == 1;
        self.0.more_hands(queue, first);
    }

    /// Lets the threads exit once the queue is empty, and waits for them. Called
    /// after the run returned: every job handed over has been replied to by then.
    pub(crate) fn end(&self) {
        self.0.lock().ended = true;
        self.0.ready.notify_all();
        let threads = std::mem::take(&mut *self.0.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// With jobs queued: wakes a waiting thread (`wake`: unless one is already on
    /// its way), else starts one more while fewer than the concurrency run.
    fn more_hands(self: &Arc<Self>, mut queue: MutexGuard<'_, Queue>, wake: bool) {
        if queue.jobs.is_empty() {
            return;
        }
        if queue.waiting > 0 {
            drop(queue);
            if wake {
                self.ready.notify_one();
            }
            return;
        }
        if queue.started >= self.max {
            // Every thread is busy: the first to finish takes the job.
            return;
        }
        queue.started += 1;
        drop(queue);
        let shared = self.clone();
        let started = std::thread::Builder::new()
            .name("qtask-worker-callback".into())
            .spawn(move || shared.serve());
        match started {
            Ok(thread) => self
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(thread),
            Err(err) => {
                // The threads already running take the job; with none, the queued
                // attempts fail (retried with backoff) rather than wait forever.
                let mut queue = self.lock();
                queue.started -= 1;
                let orphans: Vec<Job> = match queue.started {
                    0 => queue.jobs.drain(..).collect(),
                    _ => Vec::new(),
                };
                drop(queue);
                for job in orphans {
                    job.reply
                        .send(Outcome::Retry(format!("cannot start a callback thread: {err}")));
                }
            }
        }
    }

    /// One thread's loop: take a job, call the callback, reply; until the end.
    fn serve(self: Arc<Self>) {
        loop {
            let mut queue = self.lock();
            let job = loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.ended {
                    return;
                }
                queue.waiting += 1;
                queue = self
                    .ready
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                queue.waiting -= 1;
            };
            // More queued: the next hand, before this one runs its callback.
            self.more_hands(queue, true);
            let Job {
                message,
                time_up,
                reply,
            } = job;
            let callback = self.callback;
            let returned = catch_unwind(AssertUnwindSafe(|| callback.call(message, &time_up)))
                .unwrap_or_else(|_| Err("the callback's call panicked".into()));
            reply.send_returned::<Outcome>(returned);
        }
    }
}
