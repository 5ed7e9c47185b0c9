//! The threads a callback worker (`qtask_worker_new`) calls its callback on. The
//! engine hands each claimed task over (`run_handing_off`, a few ahead of the
//! concurrency: `hand_ahead_for_bursts`) into a queue; a thread of this set, started
//! on demand up to the concurrency and kept for the whole run, takes it, starts its
//! time limit, calls the callback and replies.
//!
//! Waking is chained, as tokio's and Go's schedulers do it: a hand-over wakes one
//! waiting thread only when no other is already on its way, and a woken thread that
//! leaves tasks behind wakes the next before its callback runs. A burst of tasks from
//! one claim then wakes threads one after another instead of one per task at once,
//! and a thread whose callback returns quickly takes the next task itself, awake.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use qtask_core::blocking::Reply;
use qtask_core::{Message, Outcome, TimeUp};

use crate::worker::Callback;

/// One claimed task on its way to a callback thread.
type Job = (Message, TimeUp, Reply);

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Of those, threads woken and not yet running: while one is, a hand-over wakes
    /// no other (the woken one wakes the next if it leaves jobs behind).
    waking: usize,
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
    /// each claimed task.
    pub(crate) fn deliver(&self, message: Message, time_up: TimeUp, reply: Reply) {
        let shared = &self.0;
        let mut queue = shared.lock_queue();
        queue.jobs.push_back((message, time_up, reply));
        let next = shared.next_hand(&mut queue);
        drop(queue);
        shared.call(next);
    }

    /// Tells each thread to exit, and waits for them. Called after the run returned:
    /// every job handed over has been replied to by then.
    pub(crate) fn end(&self) {
        self.0.lock_queue().ended = true;
        self.0.ready.notify_all();
        let threads = std::mem::take(&mut *self.0.lock_threads());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Who takes the jobs left in the queue.
enum Hand {
    /// A thread is awake or on its way for them.
    Coming,
    /// Wake a waiting thread.
    Wake,
    /// None waits: start one (while fewer than the concurrency run).
    Start,
}

impl Shared {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides, under the queue's lock, who takes the jobs queued.
    fn next_hand(&self, queue: &mut Queue) -> Hand {
        if queue.jobs.is_empty() || queue.waking > 0 {
            Hand::Coming
        } else if queue.idle > 0 {
            queue.waking += 1;
            Hand::Wake
        } else {
            Hand::Start
        }
    }

    fn call(self: &Arc<Self>, hand: Hand) {
        match hand {
            Hand::Coming => {}
            Hand::Wake => self.ready.notify_one(),
            Hand::Start => self.start_thread(),
        }
    }

    /// Starts one more thread while fewer than the concurrency run; when none can
    /// start and none runs, the queued attempts fail (retried with backoff) rather
    /// than wait forever.
    fn start_thread(self: &Arc<Self>) {
        let mut threads = self.lock_threads();
        if threads.len() >= self.max {
            // Every thread is busy: the first to finish takes the job.
            return;
        }
        let shared = self.clone();
        let started = std::thread::Builder::new()
            .name("qtask-worker-callback".into())
            .spawn(move || shared.serve());
        match started {
            Ok(thread) => threads.push(thread),
            Err(err) if threads.is_empty() => {
                drop(threads);
                let jobs = std::mem::take(&mut self.lock_queue().jobs);
                for (_, _, reply) in jobs {
                    reply.send(Outcome::Retry(format!("cannot start a callback thread: {err}")));
                }
            }
            Err(_) => {}
        }
    }

    /// One thread's loop: take a job, call the callback, reply; until the run ends.
    fn serve(self: Arc<Self>) {
        let mut queue = self.lock_queue();
        loop {
            let Some((message, time_up, reply)) = queue.jobs.pop_front() else {
                if queue.ended {
                    return;
                }
                queue.idle += 1;
                queue = self
                    .ready
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                queue.idle -= 1;
                queue.waking = queue.waking.saturating_sub(1);
                continue;
            };
            // Jobs left behind: the next hand, before this callback runs.
            let next = self.next_hand(&mut queue);
            drop(queue);
            self.call(next);
            // It may have waited, handed over ahead of a free thread: its limit starts now.
            time_up.start_clock();
            let callback = self.callback;
            let returned = catch_unwind(AssertUnwindSafe(|| callback.call(message, &time_up)))
                .unwrap_or_else(|_| Err("the callback's call panicked".into()));
            reply.send_returned::<Outcome>(returned);
            queue = self.lock_queue();
        }
    }
}
