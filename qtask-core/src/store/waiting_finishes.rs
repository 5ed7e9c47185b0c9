//! Finishes waiting for a write. The completer writes them, and a claim that starts
//! first carries them in its own statement and commit (carried.rs): a busy worker's
//! finishes and its next claim then cost the database one statement, not two.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::task::{Fence, Fenced};

/// Where a finish's caller hears whether its attempt was current.
pub(crate) type FinishReply = oneshot::Sender<Result<Fenced<()>>>;

/// A finish not written yet.
pub(crate) struct WaitingFinish {
    pub fence: Fence,
    pub reply: FinishReply,
}

/// The finishes no write has taken yet, in the order they came, and whether a worker's
/// last claim found a backlog (it filled): then its next claim comes soon, as soon as
/// its slots free up, and is worth waiting for.
#[derive(Default)]
pub(crate) struct WaitingFinishes {
    waiting: Mutex<Vec<WaitingFinish>>,
    backlog: AtomicBool,
}

impl std::fmt::Debug for WaitingFinishes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingFinishes").finish_non_exhaustive()
    }
}

impl WaitingFinishes {
    pub fn push(&self, fence: Fence, reply: FinishReply) {
        self.lock().push(WaitingFinish { fence, reply });
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Up to `max` of the oldest, for one write.
    pub fn take(&self, max: usize) -> Vec<WaitingFinish> {
        let mut waiting = self.lock();
        let n = waiting.len().min(max);
        waiting.drain(..n).collect()
    }

    /// A worker's claim came back full (`true`) or short.
    pub fn set_backlog(&self, backlog: bool) {
        self.backlog.store(backlog, Ordering::Relaxed);
    }

    pub fn backlog(&self) -> bool {
        self.backlog.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WaitingFinish>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tells each caller whether its attempt was among the rows finished (`done`), or
/// hands each a copy of the write's error.
pub(crate) fn answer_finishes(
    finishes: Vec<WaitingFinish>,
    done: std::result::Result<&HashSet<i64>, &Error>,
) {
    for finish in finishes {
        let result = match &done {
            Ok(done) if done.contains(&finish.fence.task_id) => Ok(Fenced::Current(())),
            Ok(_) => Ok(Fenced::Stale),
            Err(err) => Err(err.duplicate()),
        };
        let _ = finish.reply.send(result);
    }
}
