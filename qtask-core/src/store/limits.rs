//! Queue-wide limits, enforced where tasks are claimed: at most `max_processing` tasks
//! of a queue processing at once across every worker of every process, and at most
//! `max_per_second` claims per second (a token bucket holding one second's worth, at
//! least one token). Both live in the queue's settings row; a limited claim locks that
//! row (`FOR UPDATE`; SQLite serialises writers anyway), counts, claims and spends
//! tokens in one transaction, so racing workers never exceed a limit.
//!
//! Claims on queues without limits never touch the row: which queues have limits is
//! read with the pause flags, at most once per sweep interval.

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::admin::queue_table;
use super::claims::{Changed, Keyed};
use super::{retry_conflicts, Dialect, Store};
use crate::error::Result;
use crate::task::Message;

/// The limits of one queue; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    /// Tasks of the queue processing at once (live leases), across every worker.
    pub max_processing: Option<u32>,
    /// Claims per second, across every worker; fractions allowed (0.5 is one per 2 s).
    pub max_per_second: Option<f64>,
}

impl QueueLimits {
    pub fn is_unlimited(&self) -> bool {
        self.max_processing.is_none() && self.max_per_second.is_none()
    }

    /// Reads limits from a JSON object with the same keys (for C, Go and Python):
    /// `{"max_processing": 4, "max_per_second": 2.5}`; a missing key or `null` is no
    /// limit, and `""`, `null` or `{}` remove both.
    pub fn from_json(text: &str) -> Result<QueueLimits> {
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(QueueLimits::default());
        }
        serde_json::from_str(text).map_err(|e| crate::error::invalid(format!("queue limits: {e}")))
    }
}

/// What a limited claim may take, and the token bucket to write back.
struct Allowance {
    claims: i64,
    /// Tokens left before this claim and the database time they were counted at.
    bucket: Option<(f64, i64)>,
}

impl Store {
    /// Whether `queue` had limits when the settings were last read.
    pub(crate) fn is_limited(&self, queue: &str) -> bool {
        self.limited
            .read()
            .map(|set| set.contains(queue))
            .unwrap_or(false)
    }

    /// Publishes which queues have limits (read with the pause flags).
    pub(crate) fn set_limited(&self, queues: HashSet<String>) {
        if let Ok(mut set) = self.limited.write() {
            *set = queues;
        }
    }

    pub(crate) async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        let table = queue_table(&self.table);
        let upsert = match self.dialect {
            Dialect::MySql => {
                "ON DUPLICATE KEY UPDATE max_processing = VALUES(max_processing), \
                 max_per_second = VALUES(max_per_second), tokens = NULL, tokens_at = NULL, \
                 updated_at = VALUES(updated_at)"
            }
            _ => {
                "ON CONFLICT (namespace, queue) DO UPDATE SET max_processing = excluded.max_processing, \
                 max_per_second = excluded.max_per_second, tokens = NULL, tokens_at = NULL, \
                 updated_at = excluded.updated_at"
            }
        };
        let sql = self.sql(&format!(
            "INSERT INTO {table} (namespace, queue, paused, updated_at, max_processing, max_per_second) \
             VALUES (?, ?, 0, {{now}}, ?, ?) {upsert}"
        ));
        sqlx::query(sql)
            .bind(&self.namespace)
            .bind(queue)
            .bind(limits.max_processing.map(i64::from))
            .bind(limits.max_per_second)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The `db` queue's claim on a queue with limits.
    pub(crate) async fn claim_due_limited(&self, queue: &str, limit: u32) -> Result<Vec<Message>> {
        let statements = self.statements();
        let changed = retry_conflicts(|| async {
            let mut tx = self.begin_write().await?;
            let allowance = self.allowance(&mut tx, queue, i64::from(limit)).await?;
            let mut changed = Changed {
                rows: Vec::new(),
                before: false,
            };
            if allowance.claims > 0 {
                changed = self
                    .claim_due_on(&mut tx, &statements, queue, allowance.claims, false)
                    .await?;
                self.spend(&mut tx, queue, &allowance, changed.rows.len()).await?;
            }
            tx.commit().await?;
            Ok(changed)
        })
        .await?;
        self.claimed(changed).await
    }

    /// Claims offered ids (from a Redis queue) of a queue with limits, in the order
    /// given, as many as the limits allow. Returns the messages and the ids refused
    /// for the limits, which the caller withdraws so that a later sweep offers them again.
    pub(crate) async fn claim_offered_limited(
        &self,
        queue: &str,
        ids: &[i64],
    ) -> Result<(Vec<Message>, Vec<i64>)> {
        let statements = self.statements();
        let (changed, refused) = retry_conflicts(|| async {
            let mut tx = self.begin_write().await?;
            let allowance = self.allowance(&mut tx, queue, ids.len() as i64).await?;
            let take = usize::try_from(allowance.claims).unwrap_or(0).min(ids.len());
            let (taken, refused) = ids.split_at(take);
            let mut changed = Changed {
                rows: Vec::new(),
                before: false,
            };
            if !taken.is_empty() {
                let keyed = Keyed::new(&statements, taken);
                changed = self
                    .change_on(
                        &mut tx,
                        &statements.claim_offered,
                        &keyed.binds(),
                        keyed.ids(),
                        false,
                    )
                    .await?;
                self.spend(&mut tx, queue, &allowance, changed.rows.len()).await?;
            }
            tx.commit().await?;
            Ok((changed, refused.to_vec()))
        })
        .await?;
        Ok((self.claimed(changed).await?, refused))
    }

    /// How many tasks `queue` may take now, without locking (a Redis fetch pops no more).
    pub(crate) async fn room(&self, queue: &str, want: i64) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.allowance_read(&mut conn, queue, want, "").await?.claims)
    }

    /// A transaction that writes: on SQLite it takes the write lock at once, so that
    /// no other writer slips in between its reads and its writes.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.pool.begin().await?,
        })
    }

    /// Locks the queue's settings row and works out what may be claimed now.
    async fn allowance(&self, conn: &mut AnyConnection, queue: &str, want: i64) -> Result<Allowance> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            _ => " FOR UPDATE",
        };
        self.allowance_read(conn, queue, want, lock).await
    }

    async fn allowance_read(
        &self,
        conn: &mut AnyConnection,
        queue: &str,
        want: i64,
        lock: &str,
    ) -> Result<Allowance> {
        let table = queue_table(&self.table);
        let row = sqlx::query(self.sql(&format!(
            "SELECT max_processing, max_per_second, tokens, tokens_at, {{now}} FROM {table} \
             WHERE namespace = ? AND queue = ?{lock}"
        )))
        .bind(&self.namespace)
        .bind(queue)
        .fetch_optional(&mut *conn)
        .await?;
        let mut allowance = Allowance {
            claims: want,
            bucket: None,
        };
        let Some(row) = row else {
            return Ok(allowance);
        };
        let max_processing: Option<i64> = row.try_get(0)?;
        let per_second: Option<f64> = row.try_get(1)?;
        let now: i64 = row.try_get(4)?;
        if let Some(max) = max_processing {
            // Live leases only: a task whose worker died is due again and claimable.
            let processing: i64 = sqlx::query_scalar(self.sql(
                "SELECT COUNT(*) FROM {t} WHERE namespace = ? AND status = 30 AND queue = ? AND next_at > {now}",
            ))
            .bind(&self.namespace)
            .bind(queue)
            .fetch_one(&mut *conn)
            .await?;
            allowance.claims = allowance.claims.min((max - processing).max(0));
        }
        if let Some(rate) = per_second {
            let capacity = rate.max(1.0);
            let tokens: Option<f64> = row.try_get(2)?;
            let tokens_at: Option<i64> = row.try_get(3)?;
            let level = match (tokens, tokens_at) {
                (Some(tokens), Some(at)) => (tokens + (now - at).max(0) as f64 * rate / 1000.0).min(capacity),
                _ => capacity,
            };
            allowance.claims = allowance.claims.min(level.floor() as i64);
            allowance.bucket = Some((level, now));
        }
        Ok(allowance)
    }

    /// Takes the claimed tasks' tokens from the bucket.
    async fn spend(
        &self,
        conn: &mut AnyConnection,
        queue: &str,
        allowance: &Allowance,
        claimed: usize,
    ) -> Result<()> {
        let Some((level, now)) = allowance.bucket else {
            return Ok(());
        };
        let table = queue_table(&self.table);
        sqlx::query(self.sql(&format!(
            "UPDATE {table} SET tokens = ?, tokens_at = ? WHERE namespace = ? AND queue = ?"
        )))
        .bind(level - claimed as f64)
        .bind(now)
        .bind(&self.namespace)
        .bind(queue)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
