//! The blocking client: the async [`crate::Client`]'s methods, waited on.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::wait;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::maintenance::SweepReport;
use crate::outcome::Outcome;
use crate::task::{Created, Fence, Fenced, Message, NewTask, Stats, Status, Task};

/// A blocking handle to a task table and its queue. `Send + Sync`: share it between
/// threads (by reference or in an `Arc`). Dropping it stops its sweeper.
///
/// A client belongs to the process that opened it: in a forked child every call
/// fails with [`Error::Closed`] (its connections and sweeper live on the parent's
/// runtime); open a new one in the child.
#[derive(Debug)]
pub struct Client {
    inner: crate::Client,
    opened_in: u32,
}

/// Blocking form of [`crate::client::Invoke`].
#[derive(Debug)]
#[must_use = "call invoke() after the transaction commits, or the task waits for its timeout"]
pub struct Invoke {
    inner: crate::client::Invoke,
}

impl Invoke {
    /// Pushes the message; false means the queue was down and the sweeper will push it.
    pub fn invoke(self) -> Result<bool> {
        wait(self.inner.invoke())
    }
}

macro_rules! blocking {
    ($self:ident, |$c:ident| $body:expr) => {{
        let $c = $self.live()?.clone();
        wait(async move { $body.await })
    }};
}

impl Client {
    /// Connects and, unless `config.sweeper` is false, starts the sweeper on the shared runtime.
    pub fn open(config: Config) -> Result<Client> {
        let inner = wait(crate::Client::open(config))?;
        Ok(Client {
            inner,
            opened_in: std::process::id(),
        })
    }

    /// The async client behind this one, for async code in the same program.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// The async client, or [`Error::Closed`] in a process forked after it was opened.
    pub fn live(&self) -> Result<&crate::Client> {
        if self.opened_in == std::process::id() {
            Ok(&self.inner)
        } else {
            Err(Error::Closed)
        }
    }

    pub fn config(&self) -> &Config {
        self.inner.config()
    }

    pub fn install(&self) -> Result<()> {
        blocking!(self, |c| c.install())
    }

    pub fn create(&self, task: NewTask) -> Result<Created> {
        blocking!(self, |c| c.create(task))
    }

    pub fn create_deferred(&self, task: NewTask) -> Result<(Created, Invoke)> {
        let (created, inner) = blocking!(self, |c| c.create_deferred(task))?;
        Ok((created, Invoke { inner }))
    }

    pub fn delay(&self, task: NewTask, delay: Duration) -> Result<Created> {
        blocking!(self, |c| c.delay(task, delay))
    }

    pub fn create_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
        blocking!(self, |c| c.create_many(tasks))
    }

    /// See [`crate::Client::caller_insert`]; does no I/O.
    pub fn caller_insert(
        &self,
        task: &NewTask,
        delay: Duration,
        style: Option<crate::ParamStyle>,
    ) -> Result<crate::CallerInsert> {
        self.live()?.caller_insert(task, delay, style)
    }

    pub fn dispatch(&self, task_id: i64) -> Result<bool> {
        blocking!(self, |c| c.dispatch(task_id))
    }

    pub fn pop(&self, queue: &str, wait_for: Duration) -> Result<Option<Message>> {
        let queue = queue.to_owned();
        blocking!(self, |c| c.pop(&queue, wait_for))
    }

    /// [`crate::Client::pop_cancellable`]: `None` at once when `cancel` is cancelled
    /// while waiting (from another thread).
    pub fn pop_cancellable(
        &self,
        queue: &str,
        wait_for: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Message>> {
        let (queue, cancel) = (queue.to_owned(), cancel.clone());
        blocking!(self, |c| c.pop_cancellable(&queue, wait_for, &cancel))
    }

    pub fn processing(&self, task_id: i64) -> Result<bool> {
        blocking!(self, |c| c.processing(task_id))
    }

    pub fn finish(&self, task_id: i64) -> Result<()> {
        blocking!(self, |c| c.finish(task_id))
    }

    pub fn fail(&self, task_id: i64, error: &str) -> Result<Status> {
        let error = error.to_owned();
        blocking!(self, |c| c.fail(task_id, &error))
    }

    pub fn cancel(&self, task_id: i64) -> Result<()> {
        blocking!(self, |c| c.cancel(task_id))
    }

    /// [`crate::Client::result`]: a finished task's result, waiting up to `wait_for`.
    pub fn result(&self, task_id: i64, wait_for: Duration) -> Result<serde_json::Value> {
        blocking!(self, |c| c.result(task_id, wait_for))
    }

    /// [`crate::Client::result_cancellable`]: [`crate::Error::Timeout`] at once when
    /// `cancel` is cancelled while the task is live.
    pub fn result_cancellable(
        &self,
        task_id: i64,
        wait_for: Duration,
        cancel: &CancellationToken,
    ) -> Result<serde_json::Value> {
        let cancel = cancel.clone();
        blocking!(self, |c| c.result_cancellable(task_id, wait_for, &cancel))
    }

    /// [`crate::Client::settle`]: ends the attempt `fence` names as `outcome` says.
    pub fn settle(&self, fence: Fence, outcome: Outcome) -> Result<Fenced<Status>> {
        blocking!(self, |c| c.settle(fence, &outcome))
    }

    pub fn get(&self, task_id: i64) -> Result<Task> {
        blocking!(self, |c| c.get(task_id))
    }

    pub fn stats(&self) -> Result<Stats> {
        blocking!(self, |c| c.stats())
    }

    pub fn sweep_once(&self) -> Result<SweepReport> {
        blocking!(self, |c| c.sweep_once())
    }

    /// Stops the sweeper and closes the pool; later calls fail with `Error::Closed`.
    pub fn close(&self) {
        let Ok(c) = self.live().cloned() else {
            return; // inherited across fork: the parent owns it
        };
        let _ = wait(async move {
            c.close().await;
            Ok(())
        });
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.live().is_err() {
            // Inherited across fork: its tasks, pool and sweeper belong to the parent's
            // runtime, and dropping them here could wait on threads that are not
            // there. Keep one reference forever, so that nothing of it is dropped.
            std::mem::forget(self.inner.clone());
            return;
        }
        self.close();
    }
}
