//! The async client: every operation of the seed and more, on one namespace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use crate::clock::duration_ms;
use crate::completer::{Completer, FinishBy};
use crate::config::Config;
use crate::creator::{CreateDone, Creator, NewCreate, Offerer};
use crate::error::{invalid, Error, Result};
use crate::maintenance::{self, Context, Maintainer, Metrics, SweepReport};
use crate::queue::{self, Queue};
use crate::store::{retry_conflicts, CallerInsert, Inserted, NewRow, Offer, ParamStyle, Store};
use crate::task::{check_key, Created, Fence, Fenced, Message, NewTask, Stats, Status, Task, ValidTask};

/// A connection to one namespace of a task table and its queue. Cheap to clone;
/// clones share the pool and the sweeper. Call [`Client::close`] to stop the sweeper.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    queue: Arc<dyn Queue>,
    completer: Completer,
    /// Group commit of creates (creator.rs).
    creator: Creator,
    offerer: Offerer,
    metrics: Arc<Metrics>,
    maintainer: Mutex<Option<Maintainer>>,
    closed: AtomicBool,
    /// Issue 11: paused queues, read at most once per sweep interval (admin.rs).
    paused: crate::admin::PausedCache,
}

/// Dispatches a task created in a caller's transaction, after that transaction commits
/// (the seed's `invoke`). If it is never called, the sweeper dispatches the task once
/// its timeout has passed.
#[derive(Debug)]
#[must_use = "call invoke() after the transaction commits, or the task waits for its timeout"]
pub struct Invoke {
    client: Client,
    offer: Option<Offer>,
}

impl Invoke {
    /// Offers the task to its queue. Returns whether it is on the queue now; on false
    /// the row is safe and the sweeper offers it once the queue is reachable.
    pub async fn invoke(self) -> Result<bool> {
        match self.offer {
            None => Ok(true),
            Some(offer) => self.client.offer_or_withdraw(&[offer]).await,
        }
    }

    pub fn task_id(&self) -> Option<i64> {
        self.offer.as_ref().map(|o| o.task_id)
    }
}

impl Client {
    /// Connects to the database and queue the config names and, unless
    /// `config.sweeper` is false, starts the sweeper on the current tokio runtime.
    /// Does not create tables: call [`Client::install`] once.
    pub async fn open(config: Config) -> Result<Client> {
        config.validate()?;
        crate::telemetry::serve(&config)?;
        crate::otlp::start(&config)?;
        let store = Store::connect(&config).await?;
        let queue = queue::connect(&config, &store).await?;
        let metrics = Arc::<Metrics>::default();
        let offerer = Offerer {
            store: store.clone(),
            queue: queue.clone(),
            metrics: metrics.clone(),
        };
        let client = Client {
            inner: Arc::new(Inner {
                completer: Completer::start(store.clone()),
                creator: Creator::start(offerer.clone()),
                offerer,
                store,
                queue,
                metrics,
                maintainer: Mutex::new(None),
                closed: AtomicBool::new(false),
                paused: Default::default(),
                config,
            }),
        };
        if client.inner.config.sweeper {
            let maintainer = Maintainer::start(client.context(), client.inner.config.sweep_interval);
            *client.inner.maintainer.lock().await = Some(maintainer);
        }
        Ok(client)
    }

    /// Opens with [`Config::from_env`]: `QTASK_DB_URL`, `QTASK_QUEUE_URL`, else SQLite `qtask.db`.
    pub async fn open_default() -> Result<Client> {
        Client::open(Config::from_env()).await
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The task table's store; its pool serves callers' own transactions for [`Client::create_in`].
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Creates or migrates qtask's tables. Idempotent; never drops data.
    pub async fn install(&self) -> Result<()> {
        self.check_open()?;
        self.inner.store.install().await
    }

    /// Writes the task and dispatches it now (the seed's `Create` followed by `invoke`).
    /// Concurrent creates on one client share their commit and their push (group
    /// commit); each returns once its own row committed.
    pub async fn create(&self, task: NewTask) -> Result<Created> {
        let span = crate::trace::create_span(&task.queue, "create");
        async {
            let (created, _) = self.create_alone(task, &Span::current(), true).await?;
            Ok(created)
        }
        .instrument(span)
        .await
    }

    /// Writes the task and returns an [`Invoke`] that dispatches it.
    pub async fn create_deferred(&self, task: NewTask) -> Result<(Created, Invoke)> {
        let span = crate::trace::create_span(&task.queue, "create_deferred");
        self.create_alone(task, &span, false)
            .instrument(span.clone())
            .await
    }

    /// Writes the task through the creator (group commit); `dispatch`: the creator
    /// also offers it, else the returned [`Invoke`] does.
    async fn create_alone(&self, task: NewTask, span: &Span, dispatch: bool) -> Result<(Created, Invoke)> {
        self.check_open()?;
        let valid = self.check_task(&task, Duration::ZERO, span)?;
        let offers = self.inner.queue.carries_offers();
        let CreateDone {
            task: valid,
            inserted,
            dispatched,
        } = self
            .inner
            .creator
            .create(NewCreate {
                task: valid,
                offered: offers,
                dispatch,
            })
            .await?;
        let (created, invoke) = self.created(inserted, &valid, offers && !dispatch, span);
        Ok((
            Created {
                dispatched,
                ..created
            },
            invoke,
        ))
    }

    /// Writes the task on the caller's connection, typically inside the caller's own
    /// transaction (`client.store().pool().begin()`); call the returned [`Invoke`]
    /// after it commits. Until then no worker can see the task.
    pub async fn create_in(&self, conn: &mut AnyConnection, task: NewTask) -> Result<(Created, Invoke)> {
        let span = crate::trace::create_span(&task.queue, "create_in");
        async {
            self.check_open()?;
            let valid = self.check_task(&task, Duration::ZERO, &span)?;
            let offers = self.inner.queue.carries_offers();
            let inserted = self.inner.store.insert(conn, &valid, offers).await?;
            Ok(self.created(inserted, &valid, offers, &span))
        }
        .instrument(span.clone())
        .await
    }

    /// Checks a new task and gives it the trace context of its create span.
    fn check_task(&self, task: &NewTask, delay: Duration, span: &Span) -> Result<ValidTask> {
        let mut valid = ValidTask::check(task, delay, self.inner.config.max_payload_bytes)?;
        valid.trace_context = crate::trace::context_of(span);
        Ok(valid)
    }

    /// The insert of `task` for the caller to run in its own transaction on its own
    /// connection (Python DB-API, Go `*sql.Tx`, C): see [`CallerInsert`]. Nothing is
    /// written here. The row is written waiting and due after `delay`: workers see it
    /// once the caller commits; a rollback leaves nothing. On a Redis queue the sweeper
    /// offers it within a sweep interval, or the caller calls [`Client::dispatch`].
    pub fn caller_insert(
        &self,
        task: &NewTask,
        delay: Duration,
        style: Option<ParamStyle>,
    ) -> Result<CallerInsert> {
        self.check_open()?;
        // As for any create: the row carries the producer's trace context.
        let span = crate::trace::create_span(&task.queue, "caller_insert");
        let valid = self.check_task(task, delay, &span)?;
        let store = &self.inner.store;
        let style = style.unwrap_or_else(|| ParamStyle::of(store.dialect()));
        Ok(store.caller_insert(&valid, style, !self.inner.queue.carries_offers()))
    }

    /// Offers a committed, waiting, due task to its Redis queue now instead of at the
    /// next sweep (after a [`Client::caller_insert`] committed). True when the message is
    /// on the queue now, or the queue is `db` (workers claim due rows themselves); false
    /// when the task was not waiting and due (already offered, claimed, ended, not yet
    /// committed, or delayed) or the queue was down (the sweeper offers it later).
    pub async fn dispatch(&self, task_id: i64) -> Result<bool> {
        self.check_open()?;
        if !self.inner.queue.carries_offers() {
            return Ok(true);
        }
        let Some(offer) = self.inner.store.offer_one(task_id).await? else {
            return Ok(false);
        };
        self.offer_or_withdraw(&[offer]).await
    }

    /// What a create returns once its row is written.
    fn created(&self, inserted: Inserted, valid: &ValidTask, offers: bool, span: &Span) -> (Created, Invoke) {
        span.record("task_id", inserted.id);
        let offer = (offers && !inserted.existing).then(|| Offer {
            task_id: inserted.id,
            queue: valid.queue.clone(),
            priority: valid.priority,
            overdue_ms: 0,
        });
        if !inserted.existing {
            crate::telemetry::created(&valid.queue);
        }
        let created = Created {
            id: inserted.id,
            existing: inserted.existing,
            dispatched: false,
        };
        (
            created,
            Invoke {
                client: self.clone(),
                offer,
            },
        )
    }

    /// Writes the task only; the sweeper dispatches it `delay` from now (the seed's `Delay`).
    pub async fn delay(&self, task: NewTask, delay: Duration) -> Result<Created> {
        let span = crate::trace::create_span(&task.queue, "delay");
        async {
            self.check_open()?;
            let valid = self.check_task(&task, delay, &span)?;
            let new = NewCreate {
                task: valid,
                offered: false,
                dispatch: false,
            };
            let CreateDone {
                task: valid,
                inserted,
                ..
            } = self.inner.creator.create(new).await?;
            span.record("task_id", inserted.id);
            if !inserted.existing {
                crate::telemetry::created(&valid.queue);
            }
            Ok(Created {
                id: inserted.id,
                existing: inserted.existing,
                dispatched: false,
            })
        }
        .instrument(span.clone())
        .await
    }

    /// Creates many tasks in one transaction, then dispatches them together. All are
    /// checked first: one bad task and nothing is written.
    pub async fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
        let span = crate::trace::create_many_span(tasks.len());
        self.create_many_in_span(tasks, &span)
            .instrument(span.clone())
            .await
    }

    async fn create_many_in_span(&self, tasks: Vec<NewTask>, span: &Span) -> Result<Vec<Created>> {
        self.check_open()?;
        let valid = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.check_task(t, Duration::ZERO, span)
                    .map_err(|e| invalid(format!("task {i}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let offers = self.inner.queue.carries_offers();
        let rows: Vec<NewRow> = valid.iter().map(|task| (task, offers)).collect();
        let inserted = retry_conflicts(|| async {
            let mut tx = self.inner.store.pool().begin().await?;
            let inserted = self.inner.store.insert_many(&mut tx, &rows).await?;
            tx.commit().await?;
            Ok(inserted)
        })
        .await?;
        for (task, ins) in valid.iter().zip(&inserted) {
            if !ins.existing {
                crate::telemetry::created(&task.queue);
            }
        }
        let new_offers: Vec<Offer> = valid
            .into_iter()
            .zip(&inserted)
            .filter(|(_, ins)| offers && !ins.existing)
            .map(|(task, ins)| Offer {
                task_id: ins.id,
                queue: task.queue,
                priority: task.priority,
                overdue_ms: 0,
            })
            .collect();
        let dispatched = self.offer_or_withdraw(&new_offers).await?;
        Ok(inserted
            .into_iter()
            .map(|ins| Created {
                id: ins.id,
                existing: ins.existing,
                dispatched: dispatched && !ins.existing,
            })
            .collect())
    }

    /// Waits up to `wait` for a task of `queue` and claims it: the returned message is
    /// an attempt that has begun (its lease runs). The worker runs it and calls
    /// [`Client::finish_attempt`] or [`Client::fail_attempt`] with `message.fence()`.
    pub async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Message>> {
        Ok(self.fetch(queue, 1, wait).await?.pop())
    }

    /// [`Client::pop`] whose wait also ends when `cancel` is cancelled, as if it ran
    /// out: `None`, and nothing claimed or taken off the queue, so a task that arrives
    /// later is left for the next pop. A claim already running when `cancel` fires is
    /// completed, and its message returned: an attempt is never begun and dropped.
    pub async fn pop_cancellable(
        &self,
        queue: &str,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Message>> {
        Ok(self.fetch_cancellable(queue, 1, wait, cancel).await?.pop())
    }

    /// Claims up to `max` tasks of `queue` in one statement, waiting up to `wait` for
    /// the first. Waits longer than [`crate::MAX_WAIT`] are cut to it.
    pub async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Message>> {
        self.fetch_cancellable(queue, max, wait, &CancellationToken::new())
            .await
    }

    /// [`Client::fetch`] whose wait ends early when `cancel` is cancelled (see
    /// [`Client::pop_cancellable`]).
    pub async fn fetch_cancellable(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>> {
        self.check_open()?;
        check_key("queue", queue)?;
        // A paused queue delivers nothing: wait for the resume within `wait`.
        let Some(wait) = self.wait_while_paused(queue, wait, cancel).await? else {
            return Ok(Vec::new());
        };
        let mut messages = self.inner.queue.fetch(queue, max, wait, cancel).await?;
        if messages.is_empty() {
            return Ok(messages);
        }
        // After the claim, so that an idle worker's empty polls make no spans.
        let claim = crate::trace::claim_span(queue, messages.len());
        for message in &mut messages {
            self.inner.metrics.count_claim(message.attempt);
            crate::trace::dispatch(message, &claim);
        }
        Ok(messages)
    }

    /// Extends the lease of the attempt `fence` names by its timeout. Stale when that
    /// attempt is no longer current (a newer one began, or the task ended).
    pub async fn renew(&self, fence: Fence) -> Result<Fenced<Duration>> {
        self.check_open()?;
        self.inner.completer.renew(fence).await
    }

    /// Finishes the task if `fence` names its current attempt; stale otherwise, and
    /// then nothing changed. Returns once the write committed (shared with others).
    pub async fn finish_attempt(&self, fence: Fence) -> Result<Fenced<()>> {
        self.finish_attempt_by(fence, FinishBy::Completer).await
    }

    /// [`Client::finish_attempt`], written by `by`.
    pub(crate) async fn finish_attempt_by(&self, fence: Fence, by: FinishBy) -> Result<Fenced<()>> {
        self.check_open()?;
        let done = self.inner.completer.finish(fence, by).await?;
        if !done.is_stale() {
            crate::telemetry::finished();
        }
        Ok(done)
    }

    /// Records that the attempt `fence` names failed: retried after a backoff that
    /// doubles per attempt, or failed for good when attempts or time are spent.
    pub async fn fail_attempt(&self, fence: Fence, error: &str) -> Result<Fenced<Status>> {
        self.check_open()?;
        let backoff = self.backoff_ms(fence.attempt);
        let done = self
            .inner
            .store
            .fail_attempt(fence, truncate(error, MAX_ERROR_BYTES), backoff)
            .await?;
        if let Fenced::Current(status) = done {
            crate::telemetry::failed(status);
        }
        Ok(done)
    }

    /// Cancels the task from within its current attempt; stale when that attempt is over.
    pub async fn cancel_attempt(&self, fence: Fence) -> Result<Fenced<()>> {
        self.check_open()?;
        self.inner.store.cancel_attempt(fence, None).await
    }

    /// Unfenced (the seed's `Processing`): extends the lease of whatever attempt of the
    /// task runs now. False when the caller must skip it: not running (finished,
    /// failed, cancelled, offered to another worker), past its deadline, or gone.
    pub async fn processing(&self, task_id: i64) -> Result<bool> {
        Ok(self.processing_lease(task_id).await?.is_some())
    }

    /// [`Client::processing`], returning the lease it granted.
    pub async fn processing_lease(&self, task_id: i64) -> Result<Option<Duration>> {
        self.check_open()?;
        self.inner.store.processing(task_id).await
    }

    /// Unfenced (the seed's `Finish`): marks the task finished whatever attempt runs.
    /// Finishing twice is fine; finishing a cancelled task is an error. A worker that
    /// holds a message should prefer [`Client::finish_attempt`].
    pub async fn finish(&self, task_id: i64) -> Result<()> {
        self.check_open()?;
        self.inner.store.finish(task_id).await?;
        crate::telemetry::finished();
        Ok(())
    }

    /// Unfenced: fails whatever attempt is current (retry with backoff, or failed for
    /// good). Returns the new status. Prefer [`Client::fail_attempt`] in workers.
    pub async fn fail(&self, task_id: i64, error: &str) -> Result<Status> {
        self.check_open()?;
        let error = truncate(error, MAX_ERROR_BYTES);
        let status = self
            .inner
            .store
            .fail(task_id, error, |attempt| self.backoff_ms(attempt))
            .await?;
        crate::telemetry::failed(status);
        Ok(status)
    }

    fn backoff_ms(&self, attempt: i64) -> i64 {
        let config = &self.inner.config;
        backoff_ms(
            duration_ms(config.retry_backoff),
            duration_ms(config.retry_backoff_max),
            attempt,
        )
    }

    /// Stops a live task; cancelling twice is fine, cancelling a finished task is an error.
    pub async fn cancel(&self, task_id: i64) -> Result<()> {
        self.check_open()?;
        self.inner.store.cancel(task_id).await
    }

    pub async fn get(&self, task_id: i64) -> Result<Task> {
        self.check_open()?;
        self.inner.store.get(task_id).await
    }

    /// Task counts of this namespace and this client's sweeper counters.
    pub async fn stats(&self) -> Result<Stats> {
        self.check_open()?;
        let mut stats = self.inner.store.stats().await?;
        let m = &self.inner.metrics;
        stats.offered = m.offered.load(Ordering::Relaxed);
        stats.dispatched = m.dispatched.load(Ordering::Relaxed);
        stats.redispatched = m.redispatched.load(Ordering::Relaxed);
        stats.gave_up = m.gave_up.load(Ordering::Relaxed);
        stats.deleted = m.deleted.load(Ordering::Relaxed);
        Ok(stats)
    }

    /// Runs one sweep now, whether or not the background sweeper runs.
    pub async fn sweep_once(&self) -> Result<SweepReport> {
        self.check_open()?;
        maintenance::sweep_once(&self.context()).await
    }

    /// Stops the sweeper and closes the pool. Later calls fail with [`Error::Closed`].
    /// Closing twice is fine.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(mut maintainer) = self.inner.maintainer.lock().await.take() {
            maintainer.stop().await;
        }
        self.inner.completer.close().await;
        self.inner.creator.close().await;
        self.inner.store.close().await;
        crate::otlp::flush().await;
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn paused_cache(&self) -> &crate::admin::PausedCache {
        &self.inner.paused
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn context(&self) -> Context {
        Context {
            store: self.inner.store.clone(),
            queue: self.inner.queue.clone(),
            metrics: self.inner.metrics.clone(),
            batch_size: self.inner.config.batch_size,
        }
    }

    /// Offers new tasks to their queue; if the queue is down, withdraws the offers so
    /// the sweeper makes them again soon, and reports false. The rows are committed
    /// either way, so this never fails the caller's create.
    async fn offer_or_withdraw(&self, offers: &[Offer]) -> Result<bool> {
        Ok(self.inner.offerer.offer_or_withdraw(offers).await)
    }
}

/// Retry delay after the `count`-th dispatch failed: base · 2^(count-1), capped, plus up
/// to 10 % jitter so retries of a burst spread out.
pub(crate) fn backoff_ms(base: i64, max: i64, count: i64) -> i64 {
    let exponent = count.clamp(1, 40) - 1;
    let delay = base.saturating_mul(1i64 << exponent).min(max);
    delay + (delay as f64 * 0.1 * fastrand::f64()) as i64
}

/// Longest last error kept; longer texts are cut (at a character boundary).
pub(crate) const MAX_ERROR_BYTES: usize = 16 * 1024;

pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        for (count, low) in [(1, 1000), (2, 2000), (3, 4000), (10, 60_000), (99, 60_000)] {
            let b = backoff_ms(1000, 60_000, count);
            assert!(b >= low && b <= low + low / 10, "count {count}: {b}");
        }
    }

    #[test]
    fn truncate_keeps_utf8_whole() {
        assert_eq!(truncate("任务", 4), "任");
        assert_eq!(truncate("ab", 4), "ab");
    }
}
