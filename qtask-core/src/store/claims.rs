//! Offers and claims. A delivery (a row becoming due, or an id on a Redis queue) is an
//! offer; an attempt begins only when a worker claims the task, in one atomic
//! statement that marks it processing, starts its lease and counts the attempt.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};

use super::carried::ClaimOf;
use super::durability::{relax, Commit};
use super::statements::{id_list, KeyBinds, Statements, TwoStep};
use super::{retry_conflicts, Dialect, Store};
use crate::error::Result;
use crate::task::{Claim, Fence, Message};

/// A task offered to a queue that carries offers (Redis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub task_id: i64,
    pub queue: String,
    /// Higher priority is taken from the queue first.
    pub priority: i64,
    /// How long it has been due (0 for a task created now): equal priorities are taken
    /// earliest due first.
    pub overdue_ms: i64,
}

/// A value bound to a `?` of a hot statement.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The ids of a statement keyed by them, as [`Statements::keys`] says: one bound JSON
/// array or array literal, else `{ids}` text.
pub(crate) struct Keyed {
    text: String,
    bound: bool,
}

impl Keyed {
    pub fn new(statements: &Statements, ids: &[i64]) -> Keyed {
        let list = id_list(ids.iter().copied());
        let (text, bound) = match statements.keys {
            KeyBinds::Json => (format!("[{list}]"), true),
            KeyBinds::Arrays => (format!("{{{list}}}"), true),
            KeyBinds::Inline => (list, false),
        };
        Keyed { text, bound }
    }

    pub fn binds(&self) -> Vec<Bind<'_>> {
        match self.bound {
            true => vec![Bind::Text(&self.text)],
            false => Vec::new(),
        }
    }

    /// What fills `{ids}`.
    pub fn ids(&self) -> &str {
        match self.bound {
            true => "",
            false => &self.text,
        }
    }
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
        if self.is_limited(queue) {
            return self.claim_due_limited(queue, limit).await;
        }
        let carried = self.take_carried();
        if !carried.is_empty() {
            let claim = ClaimOf::Due {
                queue,
                limit: i64::from(limit),
            };
            return self.claim_carrying(claim, carried).await;
        }
        let statements = self.statements();
        if statements.claim_level.is_some() {
            let changed = retry_conflicts(|| async {
                let mut conn = self.conn_for(Commit::Relaxed).await?;
                let relaxed = conn.relaxed();
                let changed = self
                    .claim_due_on(&mut conn, &statements, queue, i64::from(limit), relaxed)
                    .await?;
                conn.ran();
                Ok(changed)
            })
            .await?;
            return self.claimed(changed).await;
        }
        let binds = [
            Bind::Text(self.namespace()),
            Bind::Text(queue),
            Bind::Int(i64::from(limit)),
        ];
        let changed =
            retry_conflicts(|| self.change(&statements.claim_due, &binds, "", Commit::Relaxed)).await?;
        self.claimed(changed).await
    }

    /// Claims up to `limit` due rows of `queue` on `conn`: in one statement, or (SQLite)
    /// one priority level at a time, highest first, until `limit` rows are claimed.
    /// Most claims end at the first level: one statement. `relaxed`: see
    /// [`Store::change_on`].
    pub(super) async fn claim_due_on(
        &self,
        conn: &mut AnyConnection,
        statements: &Statements,
        queue: &str,
        limit: i64,
        relaxed: bool,
    ) -> Result<Changed> {
        let (Some(claim_level), Some(next_level)) = (&statements.claim_level, &statements.next_level) else {
            let binds = [Bind::Text(self.namespace()), Bind::Text(queue), Bind::Int(limit)];
            return self
                .change_on(conn, &statements.claim_due, &binds, "", relaxed)
                .await;
        };
        let mut changed = Changed {
            rows: Vec::new(),
            before: false,
        };
        let mut below = i64::from(crate::task::MAX_PRIORITY) + 1;
        while (changed.rows.len() as i64) < limit {
            let left = limit - changed.rows.len() as i64;
            let binds = [
                Bind::Text(self.namespace()),
                Bind::Text(queue),
                Bind::Text(self.namespace()),
                Bind::Text(queue),
                Bind::Int(below),
                Bind::Int(left),
            ];
            let rows = self.change_on(conn, claim_level, &binds, "", relaxed).await?.rows;
            let level_ran_out = (rows.len() as i64) < left;
            changed.rows.extend(rows);
            if !level_ran_out {
                break;
            }
            // The level the claim took from has no more due rows: go on below it.
            let level: Option<i64> = sqlx::query_scalar(AssertSqlSafe(next_level.as_str()))
                .bind(self.namespace())
                .bind(queue)
                .bind(below)
                .fetch_one(&mut *conn)
                .await?;
            let Some(level) = level else {
                break;
            };
            below = level;
        }
        Ok(changed)
    }

    /// Claims offered tasks by id (ids taken from a Redis queue). Ids that are no longer
    /// offered (claimed by another copy, ended, past their deadline) are left alone.
    pub(crate) async fn claim_offered(&self, ids: &[i64]) -> Result<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let statements = self.statements();
        let keyed = Keyed::new(&statements, ids);
        let carried = self.take_carried();
        if !carried.is_empty() {
            return self.claim_carrying(ClaimOf::Offered(&keyed), carried).await;
        }
        let binds = keyed.binds();
        let changed =
            retry_conflicts(|| self.change(&statements.claim_offered, &binds, keyed.ids(), Commit::Relaxed))
                .await?;
        self.claimed(changed).await
    }

    /// Marks up to `limit` due tasks offered (their offer lasts one timeout) and returns
    /// them for the queue to carry. Uses no attempt.
    pub(crate) async fn offer_due(&self, limit: u32) -> Result<Vec<Offer>> {
        let statements = self.statements();
        let binds = [Bind::Text(self.namespace()), Bind::Int(i64::from(limit))];
        let changed =
            retry_conflicts(|| self.change(&statements.offer_due, &binds, "", Commit::Durable)).await?;
        changed
            .rows
            .iter()
            .map(|row| {
                Ok(Offer {
                    task_id: row.try_get(0)?,
                    queue: row.try_get(1)?,
                    priority: row.try_get(2)?,
                    overdue_ms: row.try_get(3)?,
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
    pub(super) async fn claimed(&self, changed: Changed) -> Result<Vec<Message>> {
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
            let lease_lost: Option<i64> = row.try_get(9)?;
            if lease_lost.is_some_and(|lost| lost == fence.attempt - 1) {
                crate::telemetry::rescued(&queue);
            }
            let time_limit_ms: Option<i64> = row.try_get(10)?;
            let claim = Claim {
                fence,
                queue,
                name: row.try_get(7)?,
                deadline_at: row.try_get(8)?,
                lease_ms: row.try_get(4)?,
                trace_context: row.try_get(5)?,
            };
            match Message::from_claim(claim, &payload) {
                Ok(mut message) => {
                    message.time_limit = time_limit_ms.map(|ms| Duration::from_millis(ms.max(1) as u64));
                    messages.push(message)
                }
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

    /// Runs a [`TwoStep`] once, in a transaction when it is two statements. `ids` fills
    /// a plain `{ids}` in its text (MariaDB inlines ids); fences are already in the text
    /// or the binds (outcomes.rs).
    pub(crate) async fn change(
        &self,
        step: &TwoStep,
        binds: &[Bind<'_>],
        ids: &str,
        commit: Commit,
    ) -> Result<Changed> {
        let mut conn = self.conn_for(commit).await?;
        let relaxed = conn.relaxed();
        let changed = match step {
            TwoStep::Returning(_) => self.change_on(&mut conn, step, binds, ids, relaxed).await?,
            TwoStep::Locking { .. } => {
                // SQLite: take the write lock first, so that no writer slips in between.
                let mut tx = match self.dialect {
                    Dialect::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
                    _ => conn.begin().await?,
                };
                let changed = self.change_on(&mut tx, step, binds, ids, false).await?;
                tx.commit().await?;
                changed
            }
        };
        conn.ran();
        Ok(changed)
    }

    /// Runs a [`TwoStep`] on a connection, inside the caller's transaction if any.
    /// `relaxed` (a statement that commits on its own): see [`relax`].
    pub(super) async fn change_on(
        &self,
        conn: &mut AnyConnection,
        step: &TwoStep,
        binds: &[Bind<'_>],
        ids: &str,
        relaxed: bool,
    ) -> Result<Changed> {
        let fill = |sql: &str| sql.replace("{ids}", ids);
        match step {
            TwoStep::Returning(sql) => {
                let sql = match relaxed {
                    true => relax(&fill(sql)),
                    false => fill(sql),
                };
                let rows = self.fetch(&mut *conn, &sql, binds).await?;
                Ok(Changed { rows, before: false })
            }
            TwoStep::Locking { select, update } => {
                let rows = self.fetch(&mut *conn, &fill(select), binds).await?;
                if !rows.is_empty() {
                    let locked = rows
                        .iter()
                        .map(|row| row.try_get::<i64, _>(0))
                        .collect::<Result<Vec<_>, _>>()?;
                    let sql = update.replace("{ids}", &id_list(locked));
                    conn.execute(AssertSqlSafe(sql)).await?;
                }
                Ok(Changed { rows, before: true })
            }
        }
    }

    /// One statement: prepared (and cached) when it has binds; sent as plain text when
    /// it has none (batch statements differ each time, so preparing would cost a trip).
    pub(super) async fn fetch<'e, E>(&self, executor: E, sql: &str, binds: &[Bind<'_>]) -> Result<Vec<AnyRow>>
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
