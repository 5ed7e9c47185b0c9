//! Group commit of outcomes. Lease renewals and finishes from worker loops and from
//! user calls queue up while the previous write runs, then go to the database in one
//! statement per kind. There is no timer: an idle completer writes a lone outcome at
//! once; a busy one writes whatever gathered meanwhile when a write returns, and starts
//! another beside it only for a batch of [`WORTH_ANOTHER_WRITE`] or more, up to
//! [`WRITES_IN_FLIGHT`] at once (one on SQLite). A caller hears back only after its
//! batch committed. Finishes wait in the store's list, where a claim that starts before
//! the completer's next write carries them (store/carried.rs).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::error::{Error, Result};
use crate::store::{answer_finishes, Dialect, Store, MAX_BATCH};
use crate::task::{Fence, Fenced};
use crate::write_loop::LoopHandle;

/// Batches written at once: the database overlaps their commits. A deadlock between
/// two of them (a renewal and a finish of one task) is retried like any other.
const WRITES_IN_FLIGHT: usize = 4;

/// Batches written at once on SQLite, whose pool has one connection: further writes
/// would only queue behind it in smaller batches, each its own commit.
const SQLITE_WRITES_IN_FLIGHT: usize = 1;

/// Outcomes gathered that start a write beside one in flight; fewer wait for it.
const WORTH_ANOTHER_WRITE: usize = 16;

/// How long an idle loop leaves a worker's finishes to the claim that the worker's
/// freed slot is about to make (a claim starts within the worker's 2 ms gather); the
/// loop writes whatever is still waiting after that.
const CARRY_WAIT: Duration = Duration::from_millis(5);

/// [`CARRY_WAIT`] while a worker drains a backlog (its last claim filled): its next
/// claim comes once its room ahead runs low, which outcomes handed back in batches (a
/// Go or C worker's) reach later than the 5 ms; only finish confirmations wait longer,
/// never a task.
const CARRY_WAIT_BACKLOG: Duration = Duration::from_millis(20);

/// Who is to write a finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinishBy {
    /// The completer, as soon as it can (a caller waits on it).
    Completer,
    /// The claim the worker makes next, which carries it; the completer after
    /// [`CARRY_WAIT`] if none did.
    NextClaim,
}

enum Request {
    Renew(Fence, oneshot::Sender<Result<Fenced<Duration>>>),
    /// A finish was added to the store's waiting list.
    Finish(FinishBy),
    /// Write what came before, then end the loop.
    Close,
}

/// The handle callers send outcomes through. The loop ends at [`Completer::close`], or
/// when every handle is gone.
#[derive(Debug)]
pub(crate) struct Completer {
    store: Store,
    requests: LoopHandle<Request>,
}

impl Completer {
    /// Starts the write loop on the current tokio runtime.
    pub fn start(store: Store) -> Completer {
        Completer {
            store: store.clone(),
            requests: LoopHandle::start(|incoming| write_loop(store, incoming)),
        }
    }

    /// Writes what was sent before, then stops the loop (and lets go of the pool).
    pub async fn close(&self) {
        self.requests.close(Request::Close).await;
    }

    pub async fn renew(&self, fence: Fence) -> Result<Fenced<Duration>> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Renew(fence, reply))?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    pub async fn finish(&self, fence: Fence, by: FinishBy) -> Result<Fenced<()>> {
        let (reply, answer) = oneshot::channel();
        self.store.waiting_finishes().push(fence, reply);
        // Once the loop has ended, the finish would wait forever: take it back.
        if let Err(closed) = self.requests.send(Request::Finish(by)) {
            answer_finishes(self.store.waiting_finishes().take(MAX_BATCH), Err(&closed));
        }
        answer.await.unwrap_or(Err(Error::Closed))
    }
}

async fn write_loop(store: Store, mut incoming: mpsc::UnboundedReceiver<Request>) {
    let in_flight = match store.dialect() {
        Dialect::Sqlite => SQLITE_WRITES_IN_FLIGHT,
        _ => WRITES_IN_FLIGHT,
    };
    let mut writes = JoinSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut ended = false;
    // While only a worker's finishes wait, the time the loop leaves them to its claim.
    // Made once per wait (a timer registered anew on every pass wakes the runtime's
    // driver each time).
    let mut carry_wait: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        if batch.is_empty() && (ended || incoming.recv_many(&mut batch, MAX_BATCH).await == 0) {
            break;
        }
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        while writes.try_join_next().is_some() {}
        // An idle loop writes at once. Beside a write in flight, only a batch worth its
        // own commit starts another; a smaller one waits for a write to return (no timer),
        // so outcomes that trickle in (a Go or C worker's replies) share commits.
        let worth_it = writes.len() < in_flight && batch.len() >= WORTH_ANOTHER_WRITE;
        let for_a_claim = store.claims_carry_finishes()
            && batch
                .iter()
                .all(|request| matches!(request, Request::Finish(FinishBy::NextClaim)));
        if for_a_claim && store.waiting_finishes().is_empty() {
            // A claim carried them all.
            batch.clear();
            carry_wait = None;
            continue;
        }
        if for_a_claim && writes.is_empty() && !ended {
            let wait = carry_wait.get_or_insert_with(|| {
                let wait = match store.waiting_finishes().backlog() {
                    true => CARRY_WAIT_BACKLOG,
                    false => CARRY_WAIT,
                };
                Box::pin(sleep_until(Instant::now() + wait))
            });
            if Instant::now() < wait.deadline() {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    _ = wait.as_mut() => {}
                    received = incoming.recv_many(&mut batch, room), if room > 0 => ended = received == 0,
                }
                continue;
            }
        }
        if !batch.is_empty() && (writes.is_empty() || worth_it || ended) {
            carry_wait = None;
            let closing = spawn_write(&store, &mut writes, batch.drain(..));
            if closing || ended {
                break;
            }
            continue;
        }
        let room = MAX_BATCH - batch.len();
        tokio::select! {
            _ = writes.join_next() => {}
            received = incoming.recv_many(&mut batch, room), if room > 0 => {
                // Every handle is gone: write what is left, then end.
                ended = received == 0;
            }
        }
    }
    // Close: every write sent before it has committed.
    while writes.join_next().await.is_some() {}
}

/// Starts one batch's write: finishes, then renewals, each one statement. True when the
/// batch holds the close request.
fn spawn_write(store: &Store, writes: &mut JoinSet<()>, batch: impl Iterator<Item = Request>) -> bool {
    let mut renews = Vec::new();
    let mut closing = false;
    for request in batch {
        match request {
            Request::Renew(fence, reply) => renews.push((fence, reply)),
            // Whatever is waiting now is taken below; a claim may have carried some.
            Request::Finish(_) => {}
            Request::Close => closing = true,
        }
    }
    let finishes = store.waiting_finishes().take(MAX_BATCH);
    let store = store.clone();
    writes.spawn(async move {
        // Finishes first: a finished task needs no renewal.
        if !finishes.is_empty() {
            let fences: Vec<Fence> = finishes.iter().map(|f| f.fence).collect();
            answer_finishes(finishes, store.finish_many(&fences).await.as_ref());
        }
        if !renews.is_empty() {
            let fences: Vec<Fence> = renews.iter().map(|(f, _)| *f).collect();
            answer(store.renew_many(&fences).await, renews);
        }
    });
    closing
}

/// Hands each caller its own result, or a copy of the batch's error.
fn answer<T>(results: Result<Vec<Fenced<T>>>, waiting: Vec<(Fence, oneshot::Sender<Result<Fenced<T>>>)>) {
    match results {
        Ok(results) => {
            for (result, (_, reply)) in results.into_iter().zip(waiting) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(err) => {
            for (_, reply) in waiting {
                let _ = reply.send(Err(err.duplicate()));
            }
        }
    }
}
