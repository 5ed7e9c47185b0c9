//! Group commit of creates. Tasks that concurrent callers of one client create queue
//! up while the previous write runs, then go to the database together as one
//! multi-row insert (store/insert_many.rs), and the new offers of a Redis queue go out
//! in one push. There is no timer: an idle creator writes a lone task at once, a busy
//! one writes whatever gathered meanwhile, up to [`WRITES_IN_FLIGHT`] batches at once.
//! Before it cuts a batch the loop yields once to the scheduler, so that the callers a
//! write just answered, who send their next create at once, join the same batch.
//! Each caller hears back, with its own id, only after its row committed (and, for a
//! create that dispatches, after the push).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::Any;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::maintenance::Metrics;
use crate::queue::Queue;
use crate::store::{Inserted, NewRow, Offer, Store};
use crate::task::ValidTask;
use crate::write_loop::LoopHandle;

/// Batches written at once: while one commits, the next gathers and starts.
const WRITES_IN_FLIGHT: usize = 2;
/// Most creates in one batch.
const MAX_BATCH: usize = 500;

/// A task to create.
pub(crate) struct NewCreate {
    pub task: ValidTask,
    /// It goes out as an offer to a queue that carries offers (see `Store::insert`).
    pub offered: bool,
    /// Push the offer after the commit (`create`), or leave it to the caller.
    pub dispatch: bool,
}

/// A create once its row committed.
pub(crate) struct CreateDone {
    pub task: ValidTask,
    pub inserted: Inserted,
    /// The creator pushed the offer (or the queue needs none).
    pub dispatched: bool,
}

enum Request {
    Create(NewCreate, oneshot::Sender<Result<CreateDone>>),
    /// Write what came before, then end the loop.
    Close,
}

/// Offers new tasks to their queue after they committed.
#[derive(Clone, Debug)]
pub(crate) struct Offerer {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub metrics: Arc<Metrics>,
}

impl Offerer {
    /// Offers new tasks to their queue; if the queue is down, withdraws the offers so
    /// the sweeper makes them again soon, and reports false. The rows are committed
    /// either way, so this never fails the caller's create.
    pub async fn offer_or_withdraw(&self, offers: &[Offer]) -> bool {
        if offers.is_empty() {
            return true;
        }
        let Err(failed) = self.queue.offer(offers).await else {
            self.metrics
                .offered
                .fetch_add(offers.len() as u64, Ordering::Relaxed);
            return true;
        };
        tracing::warn!(error = %failed.error, count = failed.failed.len(),
            "qtask: queue unreachable; tasks are saved and the sweeper will offer them");
        if let Err(err) = self.store.withdraw(&failed.failed).await {
            // The offers then time out and are made again after the tasks' timeout.
            tracing::warn!(error = %err, "qtask: could not withdraw offers; they are made again after their timeout");
        }
        false
    }
}

/// The handle callers send creates through. The loop ends at [`Creator::close`], or
/// when every handle is gone.
#[derive(Debug)]
pub(crate) struct Creator {
    requests: LoopHandle<Request>,
}

impl Creator {
    /// Starts the write loop on the current tokio runtime.
    pub fn start(offerer: Offerer) -> Creator {
        Creator {
            requests: LoopHandle::start(|incoming| write_loop(offerer, incoming)),
        }
    }

    /// Writes what was sent before, then stops the loop.
    pub async fn close(&self) {
        self.requests.close(Request::Close).await;
    }

    pub async fn create(&self, create: NewCreate) -> Result<CreateDone> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Create(create, reply))?;
        answer.await.unwrap_or(Err(Error::Closed))
    }
}

async fn write_loop(offerer: Offerer, mut incoming: mpsc::UnboundedReceiver<Request>) {
    let mut free: Vec<Writer> = (0..WRITES_IN_FLIGHT).map(|_| Writer::default()).collect();
    let mut writes: JoinSet<Writer> = JoinSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing {
        if incoming.is_empty() {
            // The callers a write just answered are about to send their next create.
            tokio::task::yield_now().await;
        }
        if incoming.is_empty() && writes.is_empty() {
            // Idle: the connections go back to the pool.
            free.iter_mut().for_each(Writer::release);
        }
        // A free writer first: while every writer is busy, creates gather into the
        // next batch.
        let received = tokio::select! {
            biased;
            Some(done) = writes.join_next(), if !writes.is_empty() => {
                free.push(done.unwrap_or_default());
                continue;
            }
            received = incoming.recv_many(&mut batch, MAX_BATCH), if !free.is_empty() => received,
        };
        if received == 0 {
            break;
        }
        // Creates sent in the same instant as the first (callers woken together) join
        // it: one turn of the scheduler, no timer.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut creates = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            match request {
                Request::Create(create, reply) => creates.push((create, reply)),
                Request::Close => closing = true,
            }
        }
        if creates.is_empty() {
            continue;
        }
        let mut writer = free.pop().expect("a free writer");
        let offerer = offerer.clone();
        writes.spawn(async move {
            writer.write(&offerer, creates).await;
            writer
        });
    }
    // Close: every write sent before it has committed.
    while writes.join_next().await.is_some() {}
}

/// One of the [`WRITES_IN_FLIGHT`] writers. It keeps its pooled connection from one
/// batch to the next while creates keep coming and the pool has others to spare,
/// which spares the pool's liveness check (a round trip) per batch, and gives it back
/// once the creator is idle or the pool has none left idle.
#[derive(Default)]
struct Writer {
    conn: Option<PoolConnection<Any>>,
}

impl Writer {
    fn release(&mut self) {
        self.conn = None;
    }

    /// Writes one batch, pushes its new offers, and answers each caller.
    async fn write(
        &mut self,
        offerer: &Offerer,
        creates: Vec<(NewCreate, oneshot::Sender<Result<CreateDone>>)>,
    ) {
        let rows: Vec<NewRow> = creates.iter().map(|(c, _)| (&c.task, c.offered)).collect();
        let results = offerer.store.insert_each(&mut self.conn, &rows).await;
        if offerer.store.pool().num_idle() == 0 {
            // Someone else may be waiting for a connection (a small pool, SQLite's, a
            // busy worker): keeping this one could starve them, or the other writer.
            self.release();
        }
        let offers: Vec<Offer> = creates
            .iter()
            .zip(&results)
            .filter_map(|((create, _), result)| match result {
                Ok(inserted) if create.dispatch && create.offered && !inserted.existing => Some(Offer {
                    task_id: inserted.id,
                    queue: create.task.queue.clone(),
                    priority: create.task.priority,
                    overdue_ms: 0,
                }),
                _ => None,
            })
            .collect();
        let dispatched = offerer.offer_or_withdraw(&offers).await;
        for ((create, reply), result) in creates.into_iter().zip(results) {
            let done = result.map(|inserted| CreateDone {
                dispatched: create.dispatch && !inserted.existing && dispatched,
                task: create.task,
                inserted,
            });
            let _ = reply.send(done);
        }
    }
}
