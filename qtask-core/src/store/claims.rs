//! Offers and claims. A delivery (a row becoming due, or an id on a Redis queue) is an
//! offer; an attempt begins only when a worker claims the task, in one atomic
//! statement that marks it processing, starts its lease and counts the attempt.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Executor, Row};

use super::statements::{id_list, TwoStep};
use super::{retry_conflicts, Store};
use crate::error::Result;
use crate::task::{Fence, Message};

/// A task offered to a queue that carries offers (Redis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub task_id: i64,
    pub queue: String,
}

/// A value bound to a `?` of a hot statement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Rows a [`TwoStep`] changed, and whether they show the values from before the change.
pub(crate) struct Changed {
    pub rows: Vec<AnyRow>,
    pub before: bool,
}

impl Store {
    /// The `db` queue: claims up to `limit` due tasks of `queue` (a row becoming due is
    /// the offer). Concurrent claimers never share a row.
    pub(crate) async fn claim_due(&self, queue: &str, limit: u32) -> Result<Vec<Message>> {
        let statements = self.statements();
        let binds = [
            Bind::Text(self.namespace()),
            Bind::Text(queue),
            Bind::Int(i64::from(limit)),
        ];
        let changed = retry_conflicts(|| self.change(&statements.claim_due, &binds, "")).await?;
        self.claimed(changed).await
    }

    /// Claims offered tasks by id (ids taken from a Redis queue). Ids that are no longer
    /// offered (claimed by another copy, ended, past their deadline) are left alone.
    pub(crate) async fn claim_offered(&self, ids: &[i64]) -> Result<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let statements = self.statements();
        let list = id_list(ids.iter().copied());
        let changed = retry_conflicts(|| self.change(&statements.claim_offered, &[], &list)).await?;
        self.claimed(changed).await
    }

    /// Marks up to `limit` due tasks offered (their offer lasts one timeout) and returns
    /// them for the queue to carry. Uses no attempt.
    pub(crate) async fn offer_due(&self, limit: u32) -> Result<Vec<Offer>> {
        let statements = self.statements();
        let binds = [Bind::Text(self.namespace()), Bind::Int(i64::from(limit))];
        let changed = retry_conflicts(|| self.change(&statements.offer_due, &binds, "")).await?;
        changed
            .rows
            .iter()
            .map(|row| {
                Ok(Offer {
                    task_id: row.try_get(0)?,
                    queue: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// Offers that did not reach the queue: due again now, so the next sweep offers them
    /// as soon as the queue is back. Their attempt count is untouched.
    pub(crate) async fn withdraw(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.sql(&format!(
            "UPDATE {{t}} SET next_at = {{now}} WHERE id IN ({}) AND status = 21",
            id_list(ids.iter().copied())
        ));
        retry_conflicts(|| async { Ok(self.pool.execute(AssertSqlSafe(sql.0.as_str())).await?) }).await?;
        Ok(())
    }

    /// Turns claimed rows into messages. A row whose payload cannot be read fails with
    /// its reason; the others are delivered.
    async fn claimed(&self, changed: Changed) -> Result<Vec<Message>> {
        let mut messages = Vec::with_capacity(changed.rows.len());
        for row in &changed.rows {
            let count: i64 = row.try_get(3)?;
            let fence = Fence {
                task_id: row.try_get(0)?,
                attempt: count + i64::from(changed.before),
            };
            let payload: String = row.try_get(2)?;
            let queue: String = row.try_get(1)?;
            if fence.attempt == 1 {
                crate::telemetry::started(&queue, row.try_get(6)?);
            }
            let lease_lost: Option<i64> = row.try_get(7)?;
            if lease_lost.is_some_and(|lost| lost == fence.attempt - 1) {
                crate::telemetry::rescued(&queue);
            }
            match Message::from_claim(fence, queue, &payload, row.try_get(4)?, row.try_get(5)?) {
                Ok(message) => messages.push(message),
                Err(reason) => {
                    tracing::warn!(task_id = fence.task_id, %reason, "qtask: task failed: unreadable payload");
                    self.fail_unreadable(fence, &reason).await?;
                }
            }
        }
        Ok(messages)
    }

    async fn fail_unreadable(&self, fence: Fence, reason: &str) -> Result<()> {
        let sql = self.sql(&format!(
            "UPDATE {{t}} SET status = 90, live_key = NULL, next_at = NULL, last_error = ?, \
             delete_at = {}, updated_at = {{now}} WHERE id = ? AND dispatch_count = ?",
            super::failed_delete_at(self.dialect)
        ));
        sqlx::query(sql)
            .bind(reason)
            .bind(fence.task_id)
            .bind(fence.attempt)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs a [`TwoStep`] once. `{ids}` / `{fence}` in its text are filled by `fill`
    /// (already done for fences; `ids` fills a plain `{ids}`).
    pub(crate) async fn change(&self, step: &TwoStep, binds: &[Bind<'_>], ids: &str) -> Result<Changed> {
        let fill = |sql: &str| sql.replace("{ids}", ids);
        match step {
            TwoStep::Returning(sql) => {
                let rows = self.fetch(&self.pool, &fill(sql), binds).await?;
                Ok(Changed { rows, before: false })
            }
            TwoStep::Locking { select, update } => {
                let mut tx = self.pool.begin().await?;
                let rows = self.fetch(&mut *tx, &fill(select), binds).await?;
                if !rows.is_empty() {
                    let locked = rows
                        .iter()
                        .map(|row| row.try_get::<i64, _>(0))
                        .collect::<Result<Vec<_>, _>>()?;
                    let sql = update.replace("{ids}", &id_list(locked));
                    tx.execute(AssertSqlSafe(sql)).await?;
                }
                tx.commit().await?;
                Ok(Changed { rows, before: true })
            }
        }
    }

    /// One statement: prepared (and cached) when it has binds; sent as plain text when
    /// it has none (batch statements differ each time, so preparing would cost a trip).
    async fn fetch<'e, E>(&self, executor: E, sql: &str, binds: &[Bind<'_>]) -> Result<Vec<AnyRow>>
    where
        E: Executor<'e, Database = sqlx::Any>,
    {
        if binds.is_empty() {
            return Ok(executor.fetch_all(AssertSqlSafe(sql.to_owned())).await?);
        }
        let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
        for bind in binds {
            query = match *bind {
                Bind::Text(text) => query.bind(text.to_owned()),
                Bind::Int(n) => query.bind(n),
            };
        }
        Ok(query.fetch_all(executor).await?)
    }
}
