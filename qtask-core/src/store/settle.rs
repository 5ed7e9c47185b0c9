//! Outcomes a handler chooses besides finish and fail: finish with a result, retry
//! after a delay, fail now; and reading how a task ended. Each names its attempt
//! (fenced) like the batched finish: an attempt that is no longer current changes
//! nothing and is reported stale.

use sqlx::{AssertSqlSafe, Row};

use super::statements::LIVE;
use super::{failed_delete_at, retry_conflicts, Store};
use crate::error::{Error, Result};
use crate::task::{Fence, Fenced, Status};

/// One bound value of a fenced update, in order before the fence's own binds.
enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

/// How a task stands, for a caller waiting on its result.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ending {
    pub status: Status,
    /// The result's JSON text, when it finished with one.
    pub result: Option<String>,
    pub last_error: Option<String>,
}

impl Store {
    /// Finishes the attempt and keeps `result` (JSON text) with the task.
    pub(crate) async fn finish_with_result(&self, fence: Fence, result: &str) -> Result<Fenced<()>> {
        let set = "status = 0, live_key = NULL, next_at = NULL, result = ?, \
                   delete_at = {now} + delete_after_ms, updated_at = {now}";
        self.fenced_update(set, "", &[Arg::Text(result)], fence).await
    }

    /// Sends the task back to waiting for `delay_ms`, giving its attempt back
    /// (`max_count + 1`: the attempt number, which fences outcomes, only goes up).
    /// Fails it for good instead when the delay would pass its deadline.
    pub(crate) async fn retry_attempt_after(&self, fence: Fence, delay_ms: i64) -> Result<Fenced<Status>> {
        let set = "status = 20, next_at = {now} + ?, max_count = max_count + 1, updated_at = {now}";
        let before_deadline = " AND {now} + ? < deadline_at";
        let args = [Arg::Int(delay_ms), Arg::Int(delay_ms)];
        if let Fenced::Current(()) = self.fenced_update(set, before_deadline, &args, fence).await? {
            return Ok(Fenced::Current(Status::Waiting));
        }
        let reason = format!(
            "retry after {}s would pass the task's deadline",
            delay_ms as f64 / 1000.0
        );
        Ok(match self.fail_attempt_now(fence, &reason).await? {
            Fenced::Current(()) => Fenced::Current(Status::Failed),
            Fenced::Stale => Fenced::Stale,
        })
    }

    /// Fails the task for good with `reason` as its last error.
    pub(crate) async fn fail_attempt_now(&self, fence: Fence, reason: &str) -> Result<Fenced<()>> {
        let set = format!(
            "status = 90, live_key = NULL, next_at = NULL, last_error = ?, \
             delete_at = {}, updated_at = {{now}}",
            failed_delete_at(self.dialect)
        );
        self.fenced_update(&set, "", &[Arg::Text(reason)], fence).await
    }

    /// Status, result and last error of a task of this namespace; None when it is gone.
    pub(crate) async fn ending(&self, id: i64) -> Result<Option<Ending>> {
        let row = sqlx::query(
            self.sql("SELECT status, result, last_error FROM {t} WHERE id = ? AND namespace = ?"),
        )
        .bind(id)
        .bind(&self.namespace)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let code: i64 = row.try_get(0)?;
        Ok(Some(Ending {
            status: Status::from_code(code)?,
            result: row.try_get(1)?,
            last_error: row.try_get(2)?,
        }))
    }

    /// `UPDATE … SET {set} WHERE` the fence's attempt is current `{also}`; `args` bind
    /// the `?` of `set` and `also`, in order. Stale when no row changed.
    async fn fenced_update(
        &self,
        set: &str,
        also: &str,
        args: &[Arg<'_>],
        fence: Fence,
    ) -> Result<Fenced<()>> {
        let sql = self
            .sql(&format!(
                "UPDATE {{t}} SET {set} WHERE id = ? AND namespace = ? AND status IN {LIVE} \
                 AND dispatch_count = ?{also}"
            ))
            .0;
        let (set_args, also_args) = args.split_at(set.matches('?').count());
        let run = || async {
            let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
            for arg in set_args {
                query = match arg {
                    Arg::Int(n) => query.bind(*n),
                    Arg::Text(text) => query.bind(*text),
                };
            }
            query = query
                .bind(fence.task_id)
                .bind(self.namespace())
                .bind(fence.attempt);
            for arg in also_args {
                query = match arg {
                    Arg::Int(n) => query.bind(*n),
                    Arg::Text(text) => query.bind(*text),
                };
            }
            Ok::<_, Error>(query.execute(&self.pool).await?.rows_affected())
        };
        match retry_conflicts(run).await? {
            0 => self.stale_or_missing(fence.task_id).await,
            _ => Ok(Fenced::Current(())),
        }
    }
}
