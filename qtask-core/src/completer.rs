//! Group commit of outcomes. Lease renewals and finishes from worker loops and from
//! user calls queue up while the previous write runs, then go to the database in one
//! statement per kind. There is no timer: an idle completer writes a lone outcome at
//! once; a busy one writes whatever gathered meanwhile when a write returns, and starts
//! another beside it only for a batch of [`WORTH_ANOTHER_WRITE`] or more, up to
//! [`WRITES_IN_FLIGHT`] at once (one on SQLite). A caller hears back only after its
//! batch committed.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::store::{Dialect, Store, MAX_BATCH};
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

enum Request {
    Renew(Fence, oneshot::Sender<Result<Fenced<Duration>>>),
    Finish(Fence, oneshot::Sender<Result<Fenced<()>>>),
    /// Write what came before, then end the loop.
    Close,
}

/// The handle callers send outcomes through. The loop ends at [`Completer::close`], or
/// when every handle is gone.
#[derive(Debug)]
pub(crate) struct Completer {
    requests: LoopHandle<Request>,
}

impl Completer {
    /// Starts the write loop on the current tokio runtime.
    pub fn start(store: Store) -> Completer {
        Completer {
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

    pub async fn finish(&self, fence: Fence) -> Result<Fenced<()>> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Finish(fence, reply))?;
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
        if !batch.is_empty() && (writes.is_empty() || worth_it || ended) {
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
    let mut finishes = Vec::new();
    let mut closing = false;
    for request in batch {
        match request {
            Request::Renew(fence, reply) => renews.push((fence, reply)),
            Request::Finish(fence, reply) => finishes.push((fence, reply)),
            Request::Close => closing = true,
        }
    }
    let store = store.clone();
    writes.spawn(async move {
        // Finishes first: a finished task needs no renewal.
        if !finishes.is_empty() {
            let fences: Vec<Fence> = finishes.iter().map(|(f, _)| *f).collect();
            answer(store.finish_many(&fences).await, finishes);
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
