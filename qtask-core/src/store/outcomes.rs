//! Outcomes of attempts. Fenced outcomes name their attempt and change nothing when it
//! is no longer current; batches of them are one statement. The seed's id-only calls
//! stay, unfenced, for callers that hold no attempt number.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Row};

use super::carried::sorted_pairs;
use super::claims::Bind;
use super::durability::Commit;
use super::statements::{fence_arrays, fences_json, fill_fences, KeyBinds, TwoStep, LIVE};
use super::{retry_conflicts, Dialect, Store};
use crate::error::{Error, Result};
use crate::task::{Fence, Fenced, Status};

/// Largest batch one statement carries.
pub(crate) const MAX_BATCH: usize = 1000;

impl Store {
    /// Renews the leases of running attempts; per fence, the lease granted or stale.
    pub(crate) async fn renew_many(&self, fences: &[Fence]) -> Result<Vec<Fenced<Duration>>> {
        let statements = self.statements();
        let rows = self.fenced_batch(&statements.renew, fences).await?;
        let mut leases: HashMap<i64, Duration> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let ms: i64 = row.try_get(1)?;
            leases.insert(row.try_get(0)?, Duration::from_millis(ms.max(0) as u64));
        }
        Ok(fences
            .iter()
            .map(|f| {
                leases
                    .get(&f.task_id)
                    .map_or(Fenced::Stale, |l| Fenced::Current(*l))
            })
            .collect())
    }

    /// Finishes attempts: the ids of those that were current (the others are stale).
    pub(crate) async fn finish_many(&self, fences: &[Fence]) -> Result<HashSet<i64>> {
        let statements = self.statements();
        let rows = self.fenced_batch(&statements.finish, fences).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<HashSet<_>, _>>()?)
    }

    /// One fenced batch statement, retried when the database picked it as a deadlock
    /// victim. Row locks are taken in id order (MariaDB), like every batch here.
    /// The fences go in as binds (SQLite: one JSON array; PostgreSQL: arrays), or
    /// inlined into the text (MariaDB).
    async fn fenced_batch(&self, step: &TwoStep, fences: &[Fence]) -> Result<Vec<sqlx::any::AnyRow>> {
        if fences.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = sorted_pairs(fences);
        let texts = match self.statements().keys {
            KeyBinds::Json => vec![fences_json(&pairs)],
            KeyBinds::Arrays => fence_arrays(&pairs).to_vec(),
            KeyBinds::Inline => {
                let step = match step {
                    TwoStep::Returning(sql) => TwoStep::Returning(fill_fences(sql, &pairs)),
                    TwoStep::Locking { select, update } => TwoStep::Locking {
                        select: fill_fences(select, &pairs),
                        update: update.clone(),
                    },
                };
                let changed = retry_conflicts(|| self.change(&step, &[], "", Commit::Relaxed)).await?;
                return Ok(changed.rows);
            }
        };
        let binds: Vec<Bind<'_>> = texts.iter().map(|text| Bind::Text(text)).collect();
        let changed = retry_conflicts(|| self.change(step, &binds, "", Commit::Relaxed)).await?;
        Ok(changed.rows)
    }

    /// Records a failed attempt: waiting again after `backoff_ms`, or failed for good when
    /// no attempt or time is left. Returns the status it ends in, or stale.
    pub(crate) async fn fail_attempt(
        &self,
        fence: Fence,
        error: &str,
        backoff_ms: i64,
    ) -> Result<Fenced<Status>> {
        let give_up = "(dispatch_count >= max_count OR {now} + ? >= deadline_at)";
        let status = format!("CASE WHEN {give_up} THEN 90 ELSE 20 END");
        let (status_set, returning) = match self.dialect {
            // LAST_INSERT_ID(expr) hands the new status back in the statement's own reply.
            Dialect::MySql => (format!("LAST_INSERT_ID({status})"), ""),
            _ => (status, " RETURNING status"),
        };
        let sql = self
            .sql(&format!(
                "UPDATE {{t}} SET last_error = ?, updated_at = {{now}}, \
             delete_at = CASE WHEN {give_up} THEN {} ELSE delete_at END, \
             live_key = CASE WHEN {give_up} THEN NULL ELSE live_key END, \
             next_at = CASE WHEN {give_up} THEN NULL ELSE {{now}} + ? END, \
             status = {status_set} \
             WHERE id = ? AND namespace = ? AND status IN {LIVE} AND dispatch_count = ?{returning}",
                super::failed_delete_at(self.dialect),
            ))
            .0;
        let run = || async {
            let query = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(error)
                .bind(backoff_ms)
                .bind(backoff_ms)
                .bind(backoff_ms)
                .bind(backoff_ms)
                .bind(backoff_ms)
                .bind(fence.task_id)
                .bind(self.namespace())
                .bind(fence.attempt);
            let code: Option<i64> = if self.dialect == Dialect::MySql {
                let done = query.execute(&self.pool).await?;
                if done.rows_affected() == 0 {
                    None
                } else {
                    done.last_insert_id()
                }
            } else {
                match query.fetch_optional(&self.pool).await? {
                    Some(row) => Some(row.try_get(0)?),
                    None => None,
                }
            };
            Ok::<_, Error>(code)
        };
        match retry_conflicts(run).await? {
            Some(code) => Ok(Fenced::Current(Status::from_code(code)?)),
            None => self.stale_or_missing(fence.task_id).await,
        }
    }

    /// Cancels a task from within its attempt, keeping `reason` (if any) as its last error.
    pub(crate) async fn cancel_attempt(&self, fence: Fence, reason: Option<&str>) -> Result<Fenced<()>> {
        let sql = self
            .sql(&format!(
                "UPDATE {{t}} SET status = 91, live_key = NULL, next_at = NULL, updated_at = {{now}}, \
             last_error = COALESCE(?, last_error) \
             WHERE id = ? AND namespace = ? AND status IN {LIVE} AND dispatch_count = ?"
            ))
            .0;
        let run = || async {
            let done = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(reason)
                .bind(fence.task_id)
                .bind(self.namespace())
                .bind(fence.attempt)
                .execute(&self.pool)
                .await?;
            Ok::<_, Error>(done.rows_affected())
        };
        match retry_conflicts(run).await? {
            0 => self.stale_or_missing(fence.task_id).await,
            _ => Ok(Fenced::Current(())),
        }
    }

    pub(super) async fn stale_or_missing<T>(&self, id: i64) -> Result<Fenced<T>> {
        match self.status(id).await? {
            None => Err(Error::NotFound(id)),
            Some(_) => Ok(Fenced::Stale),
        }
    }

    /// Unfenced (the seed's `processing`): extends the lease of whatever attempt runs
    /// now. None when the caller must skip: not running, past its deadline, or gone.
    pub(crate) async fn processing(&self, id: i64) -> Result<Option<Duration>> {
        let statements = self.statements();
        let sql = statements.processing.as_str();
        let run = || async {
            let changed = sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(self.namespace())
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok::<_, Error>(changed)
        };
        if retry_conflicts(run).await? == 0 {
            return Ok(None);
        }
        let ms: Option<i64> = sqlx::query_scalar(self.sql("SELECT timeout_ms FROM {t} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    /// Unfenced finish: finishing twice is fine; finishing a cancelled task is an error.
    pub(crate) async fn finish(&self, id: i64) -> Result<()> {
        let sql = self
            .sql(
                "UPDATE {t} SET status = 0, live_key = NULL, next_at = NULL, \
             delete_at = {now} + delete_after_ms, updated_at = {now} \
             WHERE id = ? AND namespace = ? AND status IN (20, 21, 30, 90)",
            )
            .0;
        let run = || async {
            let done = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .bind(self.namespace())
                .execute(&self.pool)
                .await?;
            Ok::<_, Error>(done.rows_affected())
        };
        if retry_conflicts(run).await? > 0 {
            return Ok(());
        }
        match self.status(id).await? {
            None => Err(Error::NotFound(id)),
            Some(Status::Cancelled) => Err(Error::InvalidState(format!("task {id} was cancelled"))),
            Some(_) => Ok(()),
        }
    }

    /// Unfenced fail: fails whatever attempt is current. Returns the status it ends in
    /// (an ended task keeps its status).
    pub(crate) async fn fail(&self, id: i64, error: &str, backoff: impl Fn(i64) -> i64) -> Result<Status> {
        for _ in 0..5 {
            let row = sqlx::query(
                self.sql("SELECT dispatch_count, status FROM {t} WHERE id = ? AND namespace = ?"),
            )
            .bind(id)
            .bind(self.namespace())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound(id))?;
            let (attempt, code): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            let status = Status::from_code(code)?;
            if !status.is_live() {
                return Ok(status);
            }
            let fence = Fence { task_id: id, attempt };
            if let Fenced::Current(status) = self.fail_attempt(fence, error, backoff(attempt)).await? {
                return Ok(status);
            }
        }
        Err(Error::InvalidState(format!(
            "task {id} kept starting new attempts while failing it"
        )))
    }

    /// Unfenced cancel: cancelling twice is fine, cancelling an ended task is an error.
    pub(crate) async fn cancel(&self, id: i64) -> Result<()> {
        let sql = self
            .sql(&format!(
                "UPDATE {{t}} SET status = 91, live_key = NULL, next_at = NULL, updated_at = {{now}} \
             WHERE id = ? AND namespace = ? AND status IN {LIVE}"
            ))
            .0;
        let run = || async {
            let done = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id)
                .bind(self.namespace())
                .execute(&self.pool)
                .await?;
            Ok::<_, Error>(done.rows_affected())
        };
        if retry_conflicts(run).await? > 0 {
            return Ok(());
        }
        match self.status(id).await? {
            None => Err(Error::NotFound(id)),
            Some(Status::Cancelled) => Ok(()),
            Some(status) => Err(Error::InvalidState(format!(
                "task {id} is already {}",
                status.as_str()
            ))),
        }
    }
}
