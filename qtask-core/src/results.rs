//! Ending an attempt with a handler's [`Outcome`], and reading a finished task's result.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::{truncate, Client, MAX_ERROR_BYTES};
use crate::clock::{duration_ms, MAX_WAIT};
use crate::completer::FinishBy;
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::task::{Fence, Fenced, Status};

/// First pause between two looks at a task whose result is awaited; it doubles up to
/// [`MAX_RESULT_POLL`], so a short task is seen soon and a long one costs few queries.
const FIRST_RESULT_POLL: Duration = Duration::from_millis(10);
const MAX_RESULT_POLL: Duration = Duration::from_millis(500);
/// Longest delay a retry-after accepts (as a task's deadline).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Client {
    /// Ends the attempt `fence` names as `outcome` says, and returns the status the task
    /// is in now (finished, waiting, failed or cancelled), or stale when that attempt is
    /// no longer current: then nothing changed.
    ///
    /// A result longer than `max_payload_bytes` fails the task for good (running it
    /// again would give the same result).
    pub async fn settle(&self, fence: Fence, outcome: &Outcome) -> Result<Fenced<Status>> {
        self.settle_by(fence, outcome, FinishBy::Completer).await
    }

    /// [`Client::settle`]; a plain finish is written by `by`.
    pub(crate) async fn settle_by(
        &self,
        fence: Fence,
        outcome: &Outcome,
        by: FinishBy,
    ) -> Result<Fenced<Status>> {
        self.check_open()?;
        let store = self.store();
        // Each path but the plain finish is boxed: a worker spawns this future's state
        // with every attempt, and the writes' own states would make it kilobytes.
        let ended = match outcome {
            // Counted in its telemetry already.
            Outcome::Finish(None) => {
                return Ok(self
                    .finish_attempt_by(fence, by)
                    .await?
                    .map(|()| Status::Finished))
            }
            Outcome::Finish(Some(result)) => {
                let text = result.to_string();
                let max = self.config().max_payload_bytes;
                if text.len() > max {
                    let reason = format!(
                        "the result is {} bytes, more than max_payload_bytes ({max})",
                        text.len()
                    );
                    Box::pin(store.fail_attempt_now(fence, &reason))
                        .await?
                        .map(|()| Status::Failed)
                } else {
                    Box::pin(store.finish_with_result(fence, &text))
                        .await?
                        .map(|()| Status::Finished)
                }
            }
            Outcome::Retry(text) => return Box::pin(self.fail_attempt(fence, text)).await,
            Outcome::RetryAfter(delay) => {
                let delay_ms = duration_ms((*delay).min(MAX_RETRY_AFTER));
                Box::pin(store.retry_attempt_after(fence, delay_ms)).await?
            }
            Outcome::Cancel(reason) => {
                Box::pin(store.cancel_attempt(fence, Some(truncate(reason, MAX_ERROR_BYTES))))
                    .await?
                    .map(|()| Status::Cancelled)
            }
            Outcome::FailNow(reason) => {
                let reason = truncate(reason, MAX_ERROR_BYTES);
                Box::pin(store.fail_attempt_now(fence, reason))
                    .await?
                    .map(|()| Status::Failed)
            }
        };
        match ended {
            Fenced::Current(Status::Finished) => crate::telemetry::finished(),
            Fenced::Current(Status::Cancelled) => crate::telemetry::cancelled(1),
            Fenced::Current(Status::Failed) => crate::telemetry::failed(Status::Failed),
            _ => {}
        }
        Ok(ended)
    }

    /// The result a finished task kept: the value its handler returned (`Value::Null`
    /// when it returned none). Waits up to `wait` (cut to [`MAX_WAIT`]) while the task is
    /// live, looking at it again after 10 ms, then doubling the pause up to 0.5 s.
    ///
    /// Errors: [`Error::NotFound`] when there is no such task (a finished row is kept
    /// only until its `delete_deadline`: a task whose result is wanted needs one longer
    /// than zero); [`Error::InvalidState`] when it failed or was cancelled (with its last
    /// error); [`Error::Timeout`] when it is still live after `wait`.
    pub async fn result(&self, task_id: i64, wait: Duration) -> Result<Value> {
        self.result_cancellable(task_id, wait, &CancellationToken::new())
            .await
    }

    /// [`Client::result`] whose wait also ends when `cancel` is cancelled, as if it
    /// ran out ([`Error::Timeout`] while the task is live).
    pub async fn result_cancellable(
        &self,
        task_id: i64,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Value> {
        self.check_open()?;
        let wait = wait.min(MAX_WAIT);
        let until = tokio::time::Instant::now() + wait;
        let mut pause = FIRST_RESULT_POLL;
        loop {
            let ending = self
                .store()
                .ending(task_id)
                .await?
                .ok_or(Error::NotFound(task_id))?;
            let reason = || {
                ending
                    .last_error
                    .as_deref()
                    .unwrap_or("no reason given")
                    .to_owned()
            };
            match ending.status {
                Status::Finished => {
                    let Some(text) = ending.result.as_deref() else {
                        return Ok(Value::Null);
                    };
                    return serde_json::from_str(text)
                        .map_err(|e| Error::Internal(format!("task {task_id} result: {e}")));
                }
                Status::Failed => {
                    return Err(Error::InvalidState(format!(
                        "task {task_id} failed: {}",
                        reason()
                    )))
                }
                Status::Cancelled => {
                    return Err(Error::InvalidState(format!(
                        "task {task_id} was cancelled: {}",
                        reason()
                    )))
                }
                Status::Waiting | Status::Processing => {}
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || cancel.is_cancelled() {
                return Err(Error::Timeout(wait.saturating_sub(left)));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left)) => {}
                _ = cancel.cancelled() => return Err(Error::Timeout(wait.saturating_sub(left))),
            }
            pause = (pause * 2).min(MAX_RESULT_POLL);
        }
    }
}
