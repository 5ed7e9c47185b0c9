//! The threads a callback worker (`qtask_worker_new`) calls its callback on. The
//! engine hands each claimed task over (`run_handing_off`) into a flume channel; a
//! thread of this set, started on demand up to the concurrency and kept for the
//! whole run, takes it, calls the callback and replies. A task then costs a channel
//! send and at most one wake-up, instead of a job on the runtime's blocking pool (a
//! spawn, a wake of a pool thread, and a join handle to wake the engine back).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use qtask_core::blocking::Reply;
use qtask_core::{Message, Outcome, TimeUp};

use crate::worker::Callback;

/// One claimed task on its way to a callback thread; `None` tells one thread to exit.
type Job = Option<(Message, TimeUp, Reply)>;

struct Shared {
    jobs: flume::Sender<Job>,
    taken: flume::Receiver<Job>,
    callback: Callback,
    max: usize,
    /// Threads waiting for a job: a task delivered while none waits starts one more.
    idle: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The callback threads of one `qtask_worker_run`.
#[derive(Clone)]
pub(crate) struct CallbackThreads(Arc<Shared>);

impl CallbackThreads {
    pub(crate) fn new(callback: Callback, concurrency: usize) -> Self {
        let (jobs, taken) = flume::unbounded();
        CallbackThreads(Arc::new(Shared {
            jobs,
            taken,
            callback,
            max: concurrency.max(1),
            idle: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
        }))
    }

    /// Called by the engine (on its runtime threads; never blocks for long) with
    /// each claimed task.
    pub(crate) fn deliver(&self, message: Message, time_up: TimeUp, reply: Reply) {
        let shared = &self.0;
        // The receiver lives as long as `shared`: the send cannot fail.
        let _ = shared.jobs.send(Some((message, time_up, reply)));
        if shared.idle.load(Ordering::Acquire) == 0 {
            self.0.start_thread();
        }
    }

    /// Tells each thread to exit, and waits for them. Called after the run returned:
    /// every job handed over has been replied to by then.
    pub(crate) fn end(&self) {
        let threads = std::mem::take(&mut *self.0.lock_threads());
        for _ in &threads {
            let _ = self.0.jobs.send(None);
        }
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
                for (_, _, reply) in self.taken.try_iter().flatten() {
                    reply.send(Outcome::Retry(format!("cannot start a callback thread: {err}")));
                }
            }
            Err(_) => {}
        }
    }

    /// One thread's loop: take a job, call the callback, reply; until told to exit.
    fn serve(self: Arc<Self>) {
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let job = self.taken.recv();
            self.idle.fetch_sub(1, Ordering::AcqRel);
            let Ok(Some((message, time_up, reply))) = job else {
                return;
            };
            // More queued and no thread waiting for them (tasks delivered while this
            // one waited did not start one): the next hand, before this callback runs.
            if !self.taken.is_empty() && self.idle.load(Ordering::Acquire) == 0 {
                self.start_thread();
            }
            let callback = self.callback;
            let returned = catch_unwind(AssertUnwindSafe(|| callback.call(message, &time_up)))
                .unwrap_or_else(|_| Err("the callback's call panicked".into()));
            reply.send_returned::<Outcome>(returned);
        }
    }
}
