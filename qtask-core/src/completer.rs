//! Group commit of outcomes. Lease renewals and finishes from worker loops and from
//! user calls queue up while the previous write runs, then go to the database in one
//! statement per kind. There is no timer: an idle completer writes a lone outcome at
//! once, a busy one writes whatever gathered meanwhile, up to [`WRITES_IN_FLIGHT`]
//! batches at once (one on SQLite). A caller hears back only after its batch committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::store::{Dialect, Store, MAX_BATCH};
use crate::task::{Fence, Fenced};
use crate::write_loop::LoopHandle;

/// Batches written at once: the database overlaps their commits. A deadlock between
/// two of them (a renewal and a finish of one task) is retried like any other.
const WRITES_IN_FLIGHT: usize = 4;

/// Batches written at once on SQLite, whose pool has one connection: further writes
/// would only queue behind it in smaller batches, each its own commit and fsync.
const SQLITE_WRITES_IN_FLIGHT: usize = 1;

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
    let writers = Arc::new(Semaphore::new(in_flight));
    let mut writes = JoinSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing {
        // A free writer first: while every writer is busy, requests gather into the
        // next batch.
        let writer = writers.clone().acquire_owned().await.expect("never closed");
        if incoming.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let mut renews = Vec::new();
        let mut finishes = Vec::new();
        for request in batch.drain(..) {
            match request {
                Request::Renew(fence, reply) => renews.push((fence, reply)),
                Request::Finish(fence, reply) => finishes.push((fence, reply)),
                Request::Close => closing = true,
            }
        }
        let store = store.clone();
        writes.spawn(async move {
            let _writer = writer;
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
        while writes.try_join_next().is_some() {}
    }
    // Close: every write sent before it has committed.
    while writes.join_next().await.is_some() {}
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
