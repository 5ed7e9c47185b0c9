//! The worker engine: one fetcher per queue claims, in one statement, a task for each
//! free slot plus those the slots will run while the claim is in flight (claimed ahead,
//! bounded); each task runs its handler in a slot while its lease is renewed (fenced,
//! batched); outcomes go through the client's completer, so the finishes of many slots
//! share one commit. A stop lets running handlers end.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep;
use tracing::Instrument;

use crate::client::Client;
use crate::completer::FinishBy;
use crate::error::{invalid, Result};
use crate::outcome::{outcome_of, panic_text, time_limit_reason, Outcome, TimeUp};
use crate::store::Dialect;
use crate::task::{Fence, Fenced, Message, Status};

mod pace;
mod spare;
use pace::Pace;
use spare::Spare;

/// How long one fetch waits for work; also how soon a stop request is noticed.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// How long a claim keeps its slots to itself before it lends them (see [`Spare`]).
const LEND_AFTER: Duration = Duration::from_millis(20);
/// Claims in flight at once: the next is made while the previous one's commit is slow.
const MAX_FETCHES: usize = 2;
/// After the first slot frees up, the fetcher waits at most this long for half of the
/// slots (all on SQLite) to be free, so that claims go in batches instead of one by one
/// as handlers end.
const GATHER: Duration = Duration::from_millis(2);
/// After a failed renewal, tries come this many times per lease until one succeeds.
const RENEWAL_TRIES_PER_LEASE: u32 = 8;
/// Stands for "no time limit" where an instant is needed.
const NO_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Claimed tasks awaiting their outcome's commit, per slot: enough that claims go on
/// while earlier finishes commit, few enough that a killed worker leaves few to run again.
const UNSETTLED_PER_SLOT: usize = 4;
/// Tasks a worker may hold claimed ahead of a slot: 4 per slot, and at least this many,
/// so that with short handlers a claim takes what the slots run while it is in flight
/// (see [`Pace::claim_size`]), not one task per slot. No-op handlers on PostgreSQL at
/// concurrency 8 and 32 (20,000 tasks): 32 → 11–12k and 14–17k tasks/s, 128 → 17–19k
/// and 19–21k, 256 → 18–21k and 22–23k, claim commits 1,770 → 500.
const AHEAD_AT_LEAST: usize = 256;
const AHEAD_PER_SLOT: usize = 4;
/// Back-off while the database or queue is unreachable: never exit, never spin.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Runs a handler on the tasks of one queue.
pub struct Worker {
    client: Client,
    queue: String,
    concurrency: usize,
    time_limit: Option<Duration>,
    kinds: Option<Arc<BTreeSet<String>>>,
}

/// A handler with its type erased: the message and its time-up signal in, the
/// outcome out.
pub(crate) type Handle =
    Arc<dyn Fn(Message, TimeUp) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What a worker did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub finished: u64,
    /// Handler errors, time limits and fail-nows (retried later or failed for good).
    pub failed: u64,
    /// Outcomes of attempts that were no longer current (the lease ran out and a newer
    /// attempt began, or the task ended meanwhile): nothing was changed.
    pub skipped: u64,
    /// Retry-afters: the task comes back after the handler's delay.
    pub snoozed: u64,
    /// Tasks the handler cancelled.
    pub cancelled: u64,
}

#[derive(Default)]
struct Counters {
    finished: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    snoozed: AtomicU64,
    cancelled: AtomicU64,
}

impl Worker {
    pub fn new(client: Client, queue: impl Into<String>) -> Self {
        Worker {
            client,
            queue: queue.into(),
            concurrency: 1,
            time_limit: None,
            kinds: None,
        }
    }

    /// The task names (kinds) this worker's handler takes (default: every task of the
    /// queue). The handler routes by [`Message::name`]; a task of another name does
    /// not reach it: its attempt fails with "no handler for task name …" as its last
    /// error and it is retried with backoff, like an error, so that during a rolling
    /// deploy a worker that has the kind's handler takes it later. Its attempts and
    /// deadline still bound it.
    pub fn kinds<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = Some(Arc::new(names.into_iter().map(Into::into).collect()));
        self
    }

    /// The longest one attempt may run (default: none). When it passes, the handler's
    /// future is dropped (a blocking handler is told through its [`TimeUp`]) and the
    /// attempt fails with "time limit of Ns exceeded", retried with backoff like an
    /// error. Zero is refused by [`Worker::run`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Handlers running at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Works until `shutdown` resolves, then lets running handlers end and returns.
    ///
    /// The handler returns `Ok(x)` with `x` anything that converts into an
    /// [`Outcome`]: `()` finishes the task, a `serde_json::Value` finishes it keeping
    /// the value as its result, and `Outcome::retry_after`, `Outcome::cancel` and
    /// `Outcome::fail_now` end it those ways. `Err(text)` fails the attempt with
    /// `text` as its last error (retried with backoff); a panic fails it too.
    pub async fn run<H, Fut, D>(self, handler: H, shutdown: impl Future<Output = ()>) -> Result<WorkerReport>
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<D, String>> + Send + 'static,
        D: Into<Outcome> + 'static,
    {
        let handle: Handle = Arc::new(move |message, _time_up| {
            let job = handler(message);
            Box::pin(async move { outcome_of(job.await) })
        });
        self.run_handle(handle, true, shutdown).await
    }

    /// [`Worker::run`] over an erased handler. `abort_on_time_up`: drop the handler's
    /// future when its time is up; otherwise (a handler on a thread, which cannot be
    /// dropped) only tell it, and keep its slot until it returns.
    pub(crate) async fn run_handle(
        self,
        handler: Handle,
        abort_on_time_up: bool,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport> {
        if self.time_limit == Some(Duration::ZERO) {
            return Err(invalid("time_limit must be longer than zero"));
        }
        let handler = match &self.kinds {
            Some(kinds) if kinds.is_empty() => return Err(invalid("kinds must name at least one task name")),
            Some(kinds) => only_kinds(handler, kinds.clone()),
            None => handler,
        };
        let limits = Limits {
            time_limit: self.time_limit,
            abort_on_time_up,
        };
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // A task claimed ahead of a free slot holds one of these until it has a slot
        // and a share of `unsettled`.
        let most_ahead = ahead_room(self.concurrency);
        let ahead = Arc::new(Semaphore::new(most_ahead));
        // Started tasks whose outcome has not committed yet: bounded, so a slow
        // database holds the fetcher back (and tasks claimed ahead from starting), and
        // a worker that dies leaves few run tasks to run again. A claim's worth more
        // than the slots' share: finishes wait for the next claim to carry them, and
        // with 4 per slot alone a c=8 drain stalled on them (31k → 6k tasks/s).
        let capacity = self.concurrency * UNSETTLED_PER_SLOT + most_ahead;
        let unsettled = Arc::new(Semaphore::new(capacity));
        let fetches = Arc::new(Semaphore::new(MAX_FETCHES));
        let errors = Arc::new(AtomicU32::new(0));
        let pace = Arc::new(Pace::default());
        let spare = Arc::new(Spare::default());
        // A claim waits (up to GATHER) for half of the slots; on SQLite, whose one
        // connection runs one statement at a time so that two half claims only queue,
        // for all of them: client CPU per task 33–34.5 → 26.5–31 µs (20,000 tasks, c=32).
        let enough = match self.client.store().dialect() {
            Dialect::Sqlite => self.concurrency,
            _ => self.concurrency.div_ceil(2),
        };
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let fetch_permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = fetches.clone().acquire_owned() => permit.expect("never closed"),
            };
            // Handlers shorter than a claim: claim as soon as fewer tasks wait than
            // half of what the slots run during a claim, not only when a slot is free,
            // so that tasks are ready when slots free up (and one offered after the
            // others of a claim does not wait for a slot while every slot is busy).
            let meanwhile = pace.claim_size(0, self.concurrency, 0, most_ahead);
            let refill = meanwhile >= self.concurrency;
            let refill_room = (most_ahead - meanwhile / 2) as u32;
            let first = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => Some(permit.expect("never closed")),
                _ = ahead.acquire_many(refill_room), if refill => None,
            };
            let free = match first {
                Some(first) => gather(&slots, first, enough).await,
                None => Vec::new(),
            };
            let room = ahead.available_permits();
            let claim = pace.claim_size(free.len(), self.concurrency, most_ahead - room, room);
            if claim == 0 {
                // The pace changed since the room freed up: wait for a slot instead.
                continue;
            }
            // The tasks for free slots start at once: their shares of `unsettled` now.
            let settle = match free.len() {
                0 => None,
                n => match unsettled.clone().try_acquire_many_owned(n as u32) {
                    Ok(settle) => Some(settle),
                    Err(_) => {
                        // Outcomes lag behind: let them commit before claiming more.
                        drop(free);
                        let _ = unsettled.clone().acquire_many_owned(n as u32).await;
                        continue;
                    }
                },
            };
            let room = match claim - free.len() {
                0 => None,
                extra => Some(
                    ahead
                        .clone()
                        .try_acquire_many_owned(extra as u32)
                        .expect("only this loop takes"),
                ),
            };
            while running.try_join_next().is_some() {}
            let fetch = Fetch {
                client: self.client.clone(),
                queue: self.queue.clone(),
                counters: counters.clone(),
                errors: errors.clone(),
                limits,
                slots: slots.clone(),
                unsettled: unsettled.clone(),
                spare: spare.clone(),
                pace: pace.clone(),
            };
            running.spawn(fetch.run(claim, free, room, settle, fetch_permit, handler.clone()));
            // After a failed fetch, pause before the next (never exit, never spin).
            let failures = errors.load(Ordering::Relaxed);
            if failures > 0 {
                let pause = Duration::from_millis(100 * u64::from(failures.min(50))).min(MAX_ERROR_PAUSE);
                tokio::select! {
                    _ = sleep(pause) => {}
                    _ = &mut shutdown => break,
                }
            }
        }
        // Fetches in flight still hand out what they claimed: every claimed task runs.
        while running.join_next().await.is_some() {}
        // Every task claimed ahead has started (it takes its share of `unsettled`
        // before it gives back its room), and every started one holds a share of
        // `unsettled` until its outcome committed.
        let _all_started = ahead.acquire_many(most_ahead as u32).await;
        let _all_settled = unsettled.acquire_many(capacity as u32).await;
        Ok(WorkerReport {
            finished: counters.finished.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            skipped: counters.skipped.load(Ordering::Relaxed),
            snoozed: counters.snoozed.load(Ordering::Relaxed),
            cancelled: counters.cancelled.load(Ordering::Relaxed),
        })
    }
}

/// How many tasks a worker of `concurrency` slots may hold claimed ahead of a slot.
fn ahead_room(concurrency: usize) -> usize {
    concurrency.saturating_mul(AHEAD_PER_SLOT).max(AHEAD_AT_LEAST)
}

/// `handler` for the tasks named in `kinds`; an outcome of "no handler" for others.
fn only_kinds(handler: Handle, kinds: Arc<BTreeSet<String>>) -> Handle {
    Arc::new(move |message, time_up| {
        if kinds.contains(&message.name) {
            return handler(message, time_up);
        }
        let reason = unknown_kind_reason(&message.name, &message.queue, &kinds);
        Box::pin(std::future::ready(Outcome::Retry(reason)))
    })
}

/// Why a task did not run: its name has no handler on this worker.
fn unknown_kind_reason(name: &str, queue: &str, kinds: &BTreeSet<String>) -> String {
    let known: Vec<&str> = kinds.iter().map(String::as_str).collect();
    format!(
        "no handler for task name {name:?} in queue {queue:?} on this worker (it handles {known:?}); \
         retried with backoff"
    )
}

/// How long an attempt may run, and how it is stopped when its time is up.
#[derive(Clone, Copy)]
struct Limits {
    time_limit: Option<Duration>,
    abort_on_time_up: bool,
}

/// Takes free slots until `enough` are held, or [`GATHER`] passed since the first.
async fn gather(
    slots: &Arc<Semaphore>,
    first: OwnedSemaphorePermit,
    enough: usize,
) -> Vec<OwnedSemaphorePermit> {
    let mut free = vec![first];
    let until = tokio::time::sleep_until(tokio::time::Instant::now() + GATHER);
    tokio::pin!(until);
    loop {
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            free.push(permit);
        }
        if free.len() >= enough {
            return free;
        }
        tokio::select! {
            permit = slots.clone().acquire_owned() => free.push(permit.expect("never closed")),
            _ = &mut until => return free,
        }
    }
}

/// One claim of `claim` tasks: as many as it holds slots for, plus those expected to
/// find a slot freed by a running handler while the claim is in flight (see [`Pace`]).
struct Fetch {
    client: Client,
    queue: String,
    counters: Arc<Counters>,
    errors: Arc<AtomicU32>,
    limits: Limits,
    slots: Arc<Semaphore>,
    unsettled: Arc<Semaphore>,
    spare: Arc<Spare>,
    pace: Arc<Pace>,
}

impl Fetch {
    async fn run(
        self,
        claim: usize,
        free: Vec<OwnedSemaphorePermit>,
        mut room: Option<OwnedSemaphorePermit>,
        mut settle: Option<OwnedSemaphorePermit>,
        _in_flight: OwnedSemaphorePermit,
        handler: Handle,
    ) {
        let asked = std::time::Instant::now();
        let fetch = self.client.fetch(&self.queue, claim, POLL_WAIT);
        tokio::pin!(fetch);
        // A claim that takes this long is most likely waiting on an empty queue: tasks
        // claimed ahead may take its slots meanwhile. Lending on every claim instead
        // split claims mid-drain (commits per 20,000 tasks 1,180 → 1,370).
        let (fetched, mut free) = match tokio::time::timeout(LEND_AFTER, &mut fetch).await {
            Ok(fetched) => (fetched, free),
            Err(_) => {
                let held = free.len();
                self.spare.lend(free);
                let fetched = fetch.await;
                (fetched, self.spare.take_back(held))
            }
        };
        match fetched {
            Ok(messages) => {
                self.errors.store(0, Ordering::Relaxed);
                // Only a claim that filled found a backlog: its time is a round trip.
                // One that came back short may have waited for tasks to arrive, and
                // counting that wait would make a trickle look like a backlog worth
                // claiming far ahead for (a killed worker then held hundreds).
                let full = messages.len() == claim;
                if full {
                    self.pace.claimed(asked.elapsed());
                }
                self.client.store().waiting_finishes().set_backlog(full);
                let claimed = tokio::time::Instant::now();
                for message in messages {
                    let permit = free.pop();
                    // A task without a slot yet keeps its room ahead until it has one.
                    let ahead = if permit.is_none() {
                        take_one(&mut room)
                    } else {
                        None
                    };
                    let slot = Slot {
                        client: self.client.clone(),
                        counters: self.counters.clone(),
                        limits: self.limits,
                        pace: self.pace.clone(),
                        permit,
                        ahead,
                        failed_renewals: 0,
                    };
                    // Its share of `unsettled`: one of the claim's if it has a slot; a
                    // task claimed ahead takes its own once it has one.
                    let settled = if slot.permit.is_some() {
                        take_one(&mut settle)
                    } else {
                        None
                    };
                    let span = crate::trace::handle_span(&message);
                    let attempt = slot
                        .wait_and_run(
                            Waits {
                                slots: self.slots.clone(),
                                unsettled: self.unsettled.clone(),
                                spare: self.spare.clone(),
                            },
                            message,
                            claimed,
                            handler.clone(),
                        )
                        .instrument(span);
                    // Freed once the attempt's span has closed too (`map` drops the
                    // attempt first): a run that ends when every outcome committed has
                    // then reported every span. Not an async block, which would move the
                    // attempt (kilobytes) once more when first polled.
                    tokio::spawn(attempt.map(move |own| drop((settled, own))));
                }
                // The room this claim did not fill goes back before its unused slots
                // do: a slot freed here starts the next claim, which must see the room.
                drop(room);
                drop(free);
            }
            Err(err) => {
                let failures = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %err, queue = %self.queue, "qtask worker: fetch failed; retrying");
                }
            }
        }
    }
}

/// One permit of those `permits` holds (the last one is the permit itself).
fn take_one(permits: &mut Option<OwnedSemaphorePermit>) -> Option<OwnedSemaphorePermit> {
    match permits {
        Some(many) if many.num_permits() > 1 => many.split(1),
        _ => permits.take(),
    }
}

/// What a task claimed ahead waits for: a slot (a lent one first), then its share
/// of the started tasks not settled yet.
struct Waits {
    slots: Arc<Semaphore>,
    unsettled: Arc<Semaphore>,
    spare: Arc<Spare>,
}

/// One claimed task. Its slot frees up as soon as the handler returns; its outcome
/// then commits with others, and only after that is it counted (and its share of the
/// unsettled permits freed).
struct Slot {
    client: Client,
    counters: Arc<Counters>,
    limits: Limits,
    pace: Arc<Pace>,
    permit: Option<OwnedSemaphorePermit>,
    /// Held by a task claimed ahead until it has a slot.
    ahead: Option<OwnedSemaphorePermit>,
    /// Renewals of this attempt that failed in a row (their warnings thin out).
    failed_renewals: u32,
}

impl Slot {
    /// Runs a task claimed at `claimed`; one claimed ahead of a free slot first waits
    /// for one (lent by a slow claim, or freed by a handler) and for its share of
    /// `unsettled`, its lease renewed meanwhile as a running task's is. Returns that
    /// share, for the caller to free once the attempt's span has closed.
    async fn wait_and_run(
        mut self,
        waits: Waits,
        message: Message,
        claimed: tokio::time::Instant,
        handler: Handle,
    ) -> Option<OwnedSemaphorePermit> {
        let fence = message.fence();
        let mut renew_at = claimed + message.lease / 2;
        let mut own_share = None;
        while self.permit.is_none() || self.ahead.is_some() {
            tokio::select! {
                biased;
                permit = waits.spare.acquire(&waits.slots), if self.permit.is_none() => {
                    self.permit = Some(permit);
                }
                share = waits.unsettled.clone().acquire_owned(), if self.permit.is_some() && own_share.is_none() => {
                    own_share = Some(share.expect("never closed"));
                    // Given back only now: a stop waits for the room, then for the shares.
                    self.ahead = None;
                }
                _ = tokio::time::sleep_until(renew_at) => match Box::pin(self.renew(fence, message.lease)).await {
                    Some(next) => renew_at = next,
                    // Another worker has the task now: this attempt must not start.
                    None => {
                        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        return own_share;
                    }
                },
            }
        }
        self.run(message, renew_at, handler).await;
        own_share
    }

    /// Renews the lease of `fence`'s attempt: when to renew it next (at half the
    /// granted lease; after an error, logged, an eighth of `lease` later, so that a
    /// dropped connection or a database blip is retried while the lease still runs,
    /// not at half of it, when it has run out), or None once the attempt is stale.
    /// Callers box it: most attempts never renew, and its write's state would grow
    /// every spawned attempt by that much.
    async fn renew(&mut self, fence: Fence, lease: Duration) -> Option<tokio::time::Instant> {
        // The lease runs from when the database took the renewal, no earlier than this:
        // counting from the reply would spend the round trip's time out of the margin.
        let sent = tokio::time::Instant::now();
        let next_in = match self.client.renew(fence).await {
            Ok(Fenced::Current(granted)) => {
                self.failed_renewals = 0;
                granted / 2
            }
            Ok(Fenced::Stale) => return None,
            Err(err) => {
                // Warned at the 1st, 2nd, 4th, 8th… failure in a row: an outage of a
                // minute does not log every retry of every running task.
                self.failed_renewals += 1;
                if self.failed_renewals.is_power_of_two() {
                    tracing::warn!(
                        error = %err,
                        task_id = fence.task_id,
                        failures = self.failed_renewals,
                        "qtask worker: lease renewal failed; retrying"
                    );
                }
                lease / RENEWAL_TRIES_PER_LEASE
            }
        };
        Some(sent + next_in)
    }

    async fn run(mut self, message: Message, mut renew_at: tokio::time::Instant, handler: Handle) {
        let fence = message.fence();
        let lease = message.lease;
        let queue = message.queue.clone();
        let started = std::time::Instant::now();
        let time_up = TimeUp::new();
        // The task's own limit, else the worker's.
        let limit = message.time_limit.or(self.limits.time_limit);
        // Polled here, in this attempt's task (so its spans nest in the attempt's
        // `qtask.handle` span), not spawned: a task of its own cost every attempt an
        // allocation and a wake-up more.
        let mut job = Some(handler(message, time_up.clone()));
        let mut time_limit_at = tokio::time::Instant::now() + limit.unwrap_or(NO_LIMIT);
        let mut current = true;
        let mut timed_out = false;
        // Renew the lease at half its length while the handler runs; once the attempt
        // is stale there is nothing left to renew.
        let outcome = loop {
            let running = job.as_mut().expect("taken only after the loop");
            tokio::select! {
                returned = AssertUnwindSafe(running).catch_unwind() => {
                    break returned.unwrap_or_else(|panic| {
                        let text = panic_text(&*panic).unwrap_or("(no message)");
                        Outcome::Retry(format!("handler panicked: {text}"))
                    })
                }
                _ = tokio::time::sleep_until(time_limit_at), if limit.is_some() => {
                    let limit = limit.unwrap_or_default();
                    // A task handed over ahead of a free handler counts from its start.
                    match time_up.limit_runs_out_later(limit) {
                        Some(later) => time_limit_at = later.into(),
                        None => {
                            timed_out = true;
                            break Outcome::Retry(time_limit_reason(limit));
                        }
                    }
                }
                _ = tokio::time::sleep_until(renew_at), if current => {
                    match Box::pin(self.renew(fence, lease)).await {
                        Some(next) => renew_at = next,
                        None => current = false,
                    }
                }
            }
        };
        if timed_out {
            // Hooks may wait for a lock the handler holds (Python's GIL): not on this thread.
            tokio::task::spawn_blocking(move || time_up.set());
            if self.limits.abort_on_time_up {
                job = None;
            }
            tracing::warn!(
                task_id = fence.task_id,
                attempt = fence.attempt,
                "qtask worker: {}",
                time_limit_reason(limit.unwrap_or_default())
            );
        }
        // A handler on a thread whose time is up keeps its slot until it returns.
        let free_slot = if timed_out { None } else { self.permit.take() };
        let finished = matches!(outcome, Outcome::Finish(_));
        let handled_for = started.elapsed();
        self.pace.handled(handled_for);
        crate::telemetry::handler_done(&queue, finished, handled_for);
        let span = tracing::Span::current();
        span.record("outcome", outcome_name(&outcome));
        if matches!(outcome, Outcome::Retry(_) | Outcome::FailNow(_)) {
            span.record("otel.status_code", "ERROR");
        }
        // The outcome is queued (the settle's first step) before the slot frees up, so
        // that the claim the free slot starts finds a finish there to carry.
        let mut settle = std::pin::pin!(self.settle(fence, &outcome));
        let queued = std::future::poll_fn(|cx| std::task::Poll::Ready(settle.as_mut().poll(cx))).await;
        drop(free_slot);
        if queued.is_pending() {
            settle.await;
        }
        crate::telemetry::claim_to_finish(&queue, finished, started.elapsed());
        if let Some(job) = job.filter(|_| timed_out) {
            // A handler on a thread keeps its slot until it returns: never more threads
            // than the concurrency. Whatever it returns now is ignored.
            let _ = AssertUnwindSafe(job).catch_unwind().await;
        }
    }

    async fn settle(&self, fence: crate::task::Fence, outcome: &Outcome) {
        let counters = &self.counters;
        let counter = match outcome {
            Outcome::Finish(_) => &counters.finished,
            Outcome::RetryAfter(_) => &counters.snoozed,
            Outcome::Cancel(_) => &counters.cancelled,
            Outcome::Retry(_) | Outcome::FailNow(_) => &counters.failed,
        };
        match self.client.settle_by(fence, outcome, FinishBy::NextClaim).await {
            Ok(Fenced::Current(status)) => {
                counter.fetch_add(1, Ordering::Relaxed);
                if status == Status::Failed {
                    let reason = match outcome {
                        Outcome::Retry(text) | Outcome::FailNow(text) => text.as_str(),
                        _ => "",
                    };
                    tracing::warn!(task_id = fence.task_id, error = %reason, "qtask worker: task failed for good");
                }
            }
            Ok(Fenced::Stale) => {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
            // The lease runs out and the task comes back: at least once.
            Err(err) => {
                tracing::warn!(error = %err, task_id = fence.task_id, "qtask worker: writing the outcome failed")
            }
        }
    }
}

/// How an attempt ended, for its span.
fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Finish(_) => "finished",
        Outcome::Retry(_) | Outcome::FailNow(_) => "failed",
        Outcome::RetryAfter(_) => "snoozed",
        Outcome::Cancel(_) => "cancelled",
    }
}
