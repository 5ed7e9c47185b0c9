//! The source of truth: every state change of a task is one statement on its row.
//!
//! Statements are written once, with `{t}` (the table), `{now}` (the database clock)
//! and `?` placeholders; [`Dialect`] supplies what differs between databases.

pub(crate) mod admin;
mod dialect;
mod explain;
mod schema;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Executor, Row};

pub use dialect::{redact, Dialect};
pub use explain::Plan;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::task::{Message, Stats, Status, Task, ValidTask};

/// Live rows are kept at least this long, as in the seed (7 days after creation).
const LIVE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
const LIVE: &str = "(20, 30)";

/// Rows a claim may dispatch now; `{queue}` is "" or "AND queue = ?". Served by the
/// `due` / `queue_due` indexes (see schema.rs and explain.rs).
const DUE: &str = "namespace = ? {queue} AND next_at <= {now} \
                   AND dispatch_count < max_count AND deadline_at > {now}";
/// Due rows that may not be dispatched again.
const SPENT: &str = "namespace = ? AND next_at <= {now} \
                     AND (deadline_at <= {now} OR dispatch_count >= max_count)";
/// Ended rows whose delete time has passed.
const EXPIRED: &str = "namespace = ? AND delete_at <= {now} AND next_at IS NULL";

/// A task row just written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inserted {
    pub id: i64,
    /// The row already existed (same queue and order number, still live).
    pub existing: bool,
}

/// The task table of one namespace in one database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    table: String,
    namespace: String,
    clock: Clock,
}

impl Store {
    pub async fn connect(config: &Config) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(&config.db)?;
        let url = match dialect {
            // Create the file on first use, like the seed's one-command install.
            Dialect::Sqlite if !config.db.contains("mode=") => {
                let sep = if config.db.contains('?') { '&' } else { '?' };
                format!("{}{sep}mode=rwc", config.db)
            }
            _ => config.db.clone(),
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| crate::error::invalid(format!("database URL {:?}: {e}", redact(&config.db))))?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout);
        if dialect == Dialect::Sqlite {
            // WAL lets readers run beside the one writer; busy_timeout makes writers queue.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        Ok(Store {
            pool,
            dialect,
            table: config.task_table(),
            namespace: config.namespace.clone(),
            clock: config.clock.clone(),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Fills in the table name, the clock and the dialect's placeholders.
    /// Safe: templates are constants; only the validated table name and integers go in.
    pub(crate) fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        let offset = self.clock.offset_ms();
        let now = if offset == 0 {
            format!("({})", self.dialect.now_ms())
        } else {
            format!("({} + {offset})", self.dialect.now_ms())
        };
        let sql = template.replace("{t}", &self.table).replace("{now}", &now);
        AssertSqlSafe(self.dialect.placeholders(sql))
    }

    /// Creates or migrates the tables; safe to run again and from two processes at once.
    pub async fn install(&self) -> Result<()> {
        let mut statements = schema::statements(self.dialect, &self.table);
        statements.extend(admin::statements(self.dialect, &self.table)); // issue 11: queue settings
        let mut conn = self.pool.acquire().await?;
        match self.dialect {
            Dialect::Postgres => {
                let mut tx = conn.begin().await?;
                tx.execute("SELECT pg_advisory_xact_lock(7170731)").await?;
                for statement in &statements {
                    tx.execute(AssertSqlSafe(statement.as_str())).await?;
                }
                tx.commit().await?;
            }
            Dialect::MySql => {
                conn.execute("SELECT GET_LOCK('qtask_install', 60)").await?;
                let mut result = Ok(());
                for statement in &statements {
                    if let Err(e) = conn.execute(AssertSqlSafe(statement.as_str())).await {
                        result = Err(e);
                        break;
                    }
                }
                conn.execute("SELECT RELEASE_LOCK('qtask_install')").await?;
                result?;
            }
            Dialect::Sqlite => {
                for statement in &statements {
                    conn.execute(AssertSqlSafe(statement.as_str())).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes one task. `dispatched_now` marks it claimed by this very create (attempt 1,
    /// next dispatch after its timeout), for queues that carry messages themselves.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
        task: &ValidTask,
        dispatched_now: bool,
    ) -> Result<Inserted> {
        let (insert, suffix) = self.dialect.insert_unless_live();
        let sql = self.sql(&format!(
            "{insert} {{t}} (namespace, name, queue, payload, order_no, live_key, status, \
             timeout_ms, next_at, deadline_at, delete_at, delete_after_ms, max_count, \
             dispatch_count, last_error, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 20, ?, {{now}} + ?, {{now}} + ?, {{now}} + ?, ?, ?, ?, NULL, {{now}}, {{now}}) {suffix}"
        ));
        let (next_in, count) = if dispatched_now {
            (task.timeout_ms, 1)
        } else {
            (task.delay_ms, 0)
        };
        for _ in 0..3 {
            let query = sqlx::query(AssertSqlSafe(sql.0.clone()))
                .bind(&self.namespace)
                .bind(&task.name)
                .bind(&task.queue)
                .bind(&task.payload)
                .bind(&task.order_no)
                .bind(&task.order_no)
                .bind(task.timeout_ms)
                .bind(next_in)
                .bind(task.deadline_ms)
                .bind(task.deadline_ms.max(LIVE_RETENTION_MS))
                .bind(task.delete_after_ms)
                .bind(task.max_count)
                .bind(count);
            let inserted_id = if self.dialect == Dialect::MySql {
                let done = query.execute(&mut *conn).await?;
                match done.rows_affected() {
                    0 => None,
                    _ => done.last_insert_id(),
                }
            } else {
                query
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|row| row.try_get::<i64, _>(0))
                    .transpose()?
            };
            if let Some(id) = inserted_id {
                return Ok(Inserted { id, existing: false });
            }
            // A live task holds this order number: return it. If it just ended, insert again.
            let existing = sqlx::query(
                self.sql("SELECT id FROM {t} WHERE namespace = ? AND queue = ? AND live_key = ?"),
            )
            .bind(&self.namespace)
            .bind(&task.queue)
            .bind(&task.order_no)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = existing {
                return Ok(Inserted {
                    id: row.try_get(0)?,
                    existing: true,
                });
            }
        }
        Err(Error::Internal(
            "order number kept changing hands while creating".into(),
        ))
    }

    /// Claims up to `limit` due tasks (of one queue, or all), counting a dispatch and
    /// moving each lease forward by its timeout. Concurrent claimers never share a row.
    pub(crate) async fn claim(&self, queue: Option<&str>, limit: u32) -> Result<Vec<Message>> {
        retry_conflicts(|| self.claim_once(queue, limit)).await
    }

    async fn claim_once(&self, queue: Option<&str>, limit: u32) -> Result<Vec<Message>> {
        let queue_filter = if queue.is_some() { "AND queue = ?" } else { "" };
        let due = format!(
            "SELECT id, queue, payload, dispatch_count FROM {{t}} WHERE {} ORDER BY next_at LIMIT ? {}",
            DUE.replace("{queue}", queue_filter),
            self.dialect.skip_locked()
        );
        let set = "dispatch_count = dispatch_count + 1, next_at = {now} + timeout_ms, updated_at = {now}";
        let rows: Vec<AnyRow> = if self.dialect.update_returning() {
            let sql = self.sql(&format!(
                "UPDATE {{t}} SET {set} WHERE id IN ({}) RETURNING id, queue, payload, dispatch_count",
                due.replacen("id, queue, payload, dispatch_count", "id", 1)
            ));
            let mut query = sqlx::query(sql).bind(&self.namespace);
            if let Some(queue) = queue {
                query = query.bind(queue);
            }
            query.bind(i64::from(limit)).fetch_all(&self.pool).await?
        } else {
            let mut tx = self.pool.begin().await?;
            let sql = self.sql(&due);
            let mut query = sqlx::query(sql).bind(&self.namespace);
            if let Some(queue) = queue {
                query = query.bind(queue);
            }
            let rows = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let ids = rows
                .iter()
                .map(|r| r.try_get::<i64, _>(0).map(|id| id.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let sql = self.sql(&format!("UPDATE {{t}} SET {set} WHERE id IN ({})", ids.join(",")));
            tx.execute(sql).await?;
            tx.commit().await?;
            rows
        };
        let count_offset = if self.dialect.update_returning() { 0 } else { 1 };
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get(2)?;
                let count: i64 = row.try_get(3)?;
                Message::from_row(row.try_get(0)?, count + count_offset, row.try_get(1)?, &payload)
            })
            .collect()
    }

    /// Marks a live task running and extends its lease; returns the lease, or None
    /// when the caller must skip it (finished, failed, cancelled, past deadline, gone).
    pub(crate) async fn processing(&self, id: i64) -> Result<Option<Duration>> {
        let update = format!(
            "UPDATE {{t}} SET status = 30, next_at = {{now}} + timeout_ms, updated_at = {{now}} \
             WHERE id = ? AND status IN {LIVE} AND deadline_at > {{now}}"
        );
        let timeout_ms: Option<i64> = if self.dialect.update_returning() {
            sqlx::query_scalar(self.sql(&format!("{update} RETURNING timeout_ms")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
        } else {
            // No UPDATE … RETURNING here: LAST_INSERT_ID(expr) hands the lease back in the
            // statement's own reply, saving a second round trip.
            let update = update.replace(
                "updated_at = {now}",
                "updated_at = {now}, timeout_ms = LAST_INSERT_ID(timeout_ms)",
            );
            let done = sqlx::query(self.sql(&update))
                .bind(id)
                .execute(&self.pool)
                .await?;
            match done.rows_affected() {
                0 => None,
                _ => done.last_insert_id(),
            }
        };
        Ok(timeout_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    pub(crate) async fn finish(&self, id: i64) -> Result<()> {
        let done = sqlx::query(self.sql(
            "UPDATE {t} SET status = 0, live_key = NULL, next_at = NULL, \
             delete_at = {now} + delete_after_ms, updated_at = {now} \
             WHERE id = ? AND status IN (20, 30, 90)",
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        match self.status(id).await? {
            None => Err(Error::NotFound(id)),
            Some(Status::Cancelled) => Err(Error::InvalidState(format!("task {id} was cancelled"))),
            Some(_) => Ok(()),
        }
    }

    /// Records a failed attempt: back to waiting after `backoff`, or failed for good when
    /// no attempt or time is left. Returns the status it ends in.
    pub(crate) async fn fail(&self, id: i64, error: &str, backoff: impl Fn(i64) -> i64) -> Result<Status> {
        let count: Option<i64> = sqlx::query_scalar(self.sql("SELECT dispatch_count FROM {t} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(count) = count else {
            return Err(Error::NotFound(id));
        };
        let backoff_ms = backoff(count);
        let give_up = "(dispatch_count >= max_count OR {now} + ? >= deadline_at)";
        let sql = self.sql(&format!(
            "UPDATE {{t}} SET last_error = ?, updated_at = {{now}}, \
             delete_at = CASE WHEN {give_up} THEN {} ELSE delete_at END, \
             live_key = CASE WHEN {give_up} THEN NULL ELSE live_key END, \
             next_at = CASE WHEN {give_up} THEN NULL ELSE {{now}} + ? END, \
             status = CASE WHEN {give_up} THEN 90 ELSE 20 END \
             WHERE id = ? AND status IN {LIVE}",
            self.dialect.greatest("delete_at", "{now} + delete_after_ms"),
        ));
        sqlx::query(sql)
            .bind(error)
            .bind(backoff_ms)
            .bind(backoff_ms)
            .bind(backoff_ms)
            .bind(backoff_ms)
            .bind(backoff_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.status(id).await?.ok_or(Error::NotFound(id))
    }

    pub(crate) async fn cancel(&self, id: i64) -> Result<()> {
        let done = sqlx::query(self.sql(&format!(
            "UPDATE {{t}} SET status = 91, live_key = NULL, next_at = NULL, updated_at = {{now}} \
             WHERE id = ? AND status IN {LIVE}"
        )))
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
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

    pub(crate) async fn status(&self, id: i64) -> Result<Option<Status>> {
        let code: Option<i64> = sqlx::query_scalar(self.sql("SELECT status FROM {t} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        code.map(Status::from_code).transpose()
    }

    /// Takes back dispatches whose push failed: the attempt is not counted and the
    /// tasks are due at once, so the sweeper pushes them when the queue is back.
    pub(crate) async fn unclaim(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let sql = self.sql(&format!(
            "UPDATE {{t}} SET dispatch_count = dispatch_count - 1, next_at = {{now}} \
             WHERE id IN ({}) AND status IN {LIVE} AND dispatch_count > 0",
            list.join(",")
        ));
        self.pool.execute(sql).await?;
        Ok(())
    }

    pub(crate) async fn get(&self, id: i64) -> Result<Task> {
        let row = sqlx::query(self.sql(
            "SELECT id, namespace, name, queue, payload, order_no, status, timeout_ms, next_at, \
             deadline_at, delete_at, max_count, dispatch_count, last_error, created_at, updated_at \
             FROM {t} WHERE id = ?",
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound(id))?;
        let payload: String = row.try_get("payload")?;
        Ok(Task {
            id: row.try_get("id")?,
            namespace: row.try_get("namespace")?,
            name: row.try_get("name")?,
            queue: row.try_get("queue")?,
            input: serde_json::from_str(&payload)
                .map_err(|e| Error::Internal(format!("task {id} payload: {e}")))?,
            order_no: row.try_get("order_no")?,
            status: Status::from_code(row.try_get("status")?)?,
            timeout_ms: row.try_get("timeout_ms")?,
            next_at: row.try_get("next_at")?,
            deadline_at: row.try_get("deadline_at")?,
            delete_at: row.try_get("delete_at")?,
            max_count: row.try_get("max_count")?,
            count: row.try_get("dispatch_count")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub(crate) async fn stats(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        let rows =
            sqlx::query(self.sql("SELECT status, COUNT(*) FROM {t} WHERE namespace = ? GROUP BY status"))
                .bind(&self.namespace)
                .fetch_all(&self.pool)
                .await?;
        for row in rows {
            let n: i64 = row.try_get(1)?;
            match Status::from_code(row.try_get(0)?)? {
                Status::Waiting => stats.waiting = n,
                Status::Processing => stats.processing = n,
                Status::Finished => stats.finished = n,
                Status::Failed => stats.failed = n,
                Status::Cancelled => stats.cancelled = n,
            }
        }
        stats.due =
            sqlx::query_scalar(self.sql("SELECT COUNT(*) FROM {t} WHERE namespace = ? AND next_at <= {now}"))
                .bind(&self.namespace)
                .fetch_one(&self.pool)
                .await?;
        stats.redispatched_live = sqlx::query_scalar(self.sql(
            "SELECT COUNT(*) FROM {t} WHERE namespace = ? AND next_at IS NOT NULL AND dispatch_count > 1",
        ))
        .bind(&self.namespace)
        .fetch_one(&self.pool)
        .await?;
        Ok(stats)
    }

    /// Marks failed, with the reason, up to `limit` due tasks that may not be dispatched
    /// again: past their deadline, or dispatched max_count times without finishing.
    pub(crate) async fn give_up(&self, limit: u32) -> Result<u64> {
        let d = self.dialect;
        let reason = "CASE WHEN deadline_at <= {now} THEN 'deadline passed' \
                      ELSE 'dispatched max_count times without finishing' END";
        let with_last = d.concat(&d.concat(reason, "'; last error: '"), "last_error");
        let set = format!(
            "last_error = CASE WHEN last_error IS NULL THEN {reason} ELSE {with_last} END, \
             status = 90, live_key = NULL, next_at = NULL, updated_at = {{now}}"
        );
        self.batched_write(&format!("UPDATE {{t}} SET {set}"), SPENT, limit)
            .await
    }

    /// Deletes up to `limit` finished, failed or cancelled rows whose delete_at has passed.
    pub(crate) async fn clean(&self, limit: u32) -> Result<u64> {
        self.batched_write("DELETE FROM {t}", EXPIRED, limit).await
    }

    /// `head WHERE filter` on at most `limit` rows, skipping rows others hold locked.
    async fn batched_write(&self, head: &str, filter: &str, limit: u32) -> Result<u64> {
        retry_conflicts(|| self.batched_write_once(head, filter, limit)).await
    }

    async fn batched_write_once(&self, head: &str, filter: &str, limit: u32) -> Result<u64> {
        let sql = match self.dialect {
            Dialect::MySql => format!("{head} WHERE {filter} LIMIT ?"),
            d => format!(
                "{head} WHERE id IN (SELECT id FROM {{t}} WHERE {filter} LIMIT ? {})",
                d.skip_locked()
            ),
        };
        let done = sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Runs `op` again when the database chose it as a deadlock or serialization victim
/// (InnoDB does so to one of two concurrent claimers); the failed attempt rolled back.
async fn retry_conflicts<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(Error::Database(err)) if attempt < 5 && is_conflict(&err) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=10 * attempt))).await;
            }
            other => return other,
        }
    }
}

fn is_conflict(err: &sqlx::Error) -> bool {
    let code = err.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}
