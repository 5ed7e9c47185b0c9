//! The source of truth: every state change of a task is one statement on its row.
//!
//! Statements are written once, with `{t}` (the table), `{now}` (the database clock)
//! and `?` placeholders; [`Dialect`] supplies what differs between databases.

pub(crate) mod admin;
mod carried;
mod claims;
mod dialect;
mod durability;
mod explain;
mod insert;
mod insert_many;
mod limits;
mod outbox;
mod outcomes;
mod schedules;
mod schema;
mod settle;
mod sqlite_setup;
mod statements;
mod waiting_finishes;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Executor, Row};

pub use claims::Offer;
pub use dialect::{redact, Dialect};
pub use explain::Plan;
pub(crate) use insert_many::NewRow;
pub use limits::QueueLimits;
pub use outbox::{CallerInsert, CallerStatement, ParamStyle};
pub(crate) use outcomes::MAX_BATCH;
pub(crate) use schedules::{DueSchedule, TickTaken};
pub(crate) use waiting_finishes::{answer_finishes, WaitingFinishes};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::task::{Stats, Status, Task};
pub(crate) use statements::DUE;
use statements::{Statements, EXPIRED, SPENT};

/// Wake-ups of the `db` queue's fetchers sent by one client, at most one per this.
const WAKE_EVERY: Duration = Duration::from_millis(5);

/// Live rows are kept at least this long, as in the seed (7 days after creation).
const LIVE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// A failed row is kept at least this long after it failed (or `delete_deadline`, if
/// longer), so its reason stays visible: the sweep that fails a task never deletes it.
const FAILED_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The `delete_at` a row gets when it fails now.
pub(crate) fn failed_delete_at(dialect: Dialect) -> String {
    dialect.greatest(
        "delete_at",
        &format!(
            "{{now}} + {}",
            dialect.greatest("delete_after_ms", &FAILED_RETENTION_MS.to_string())
        ),
    )
}

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
    /// The hot statements, rendered for the clock offset they were made with.
    rendered: Arc<Mutex<(i64, Arc<Statements>)>>,
    /// Queues with limits, as last read with the pause flags (limits.rs).
    limited: Arc<RwLock<HashSet<String>>>,
    /// When this store last sent a wake-up to the `db` queue's fetchers.
    last_wake: Arc<Mutex<Option<Instant>>>,
    /// The database has `INSERT … RETURNING` (not MySQL; MariaDB from 10.5): several
    /// rows go in one statement (insert_many.rs).
    insert_returning: bool,
    /// Finishes the completer has not written yet; a claim may carry them (carried.rs).
    waiting_finishes: Arc<WaitingFinishes>,
}

impl Store {
    pub async fn connect(config: &Config) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(&config.db)?;
        if dialect == Dialect::Sqlite {
            sqlite_setup::before_first_connection();
        }
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
        // SQLite lets one connection write at a time and makes the others sleep in its
        // busy handler (1 ms, 2 ms, 5 ms … 100 ms): one connection queues this process's
        // statements in order instead, several times faster under concurrent writers.
        let connections = match dialect {
            Dialect::Sqlite => 1,
            _ => config.max_connections,
        };
        let mut pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(config.connect_timeout)
            // A ping before each use finds a server's dropped connections; a file
            // has none, and on SQLite the ping is a trip to its one thread per statement.
            .test_before_acquire(dialect != Dialect::Sqlite);
        if dialect == Dialect::Postgres {
            // Every statement here is prepared once per connection and its plan kept: a
            // claim's plan depends on its LIMIT, a bound value, so under the default
            // (`auto`) PostgreSQL planned each claim afresh, about a third of its time.
            // The hot statements are written so that their generic plans read indexes
            // (explain.rs and tests/explain.rs check them).
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET plan_cache_mode = force_generic_plan").await?;
                    Ok(())
                })
            });
        }
        if dialect == Dialect::Sqlite {
            // WAL lets readers run beside the one writer; busy_timeout makes writers queue.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    // A checkpoint fsyncs the WAL and the file on the one connection's
                    // thread: every 4,000 pages (a 16 MB WAL) instead of 1,000 cuts a
                    // drain's checkpoint fsyncs (42-46 -> 11-19 per 20,000 tasks). A 16 MB
                    // page cache (2 MB by default) halves its reads (about 3,000 -> 1,550
                    // preads). Neither changes what a commit promises.
                    conn.execute("PRAGMA wal_autocheckpoint = 4000").await?;
                    conn.execute("PRAGMA cache_size = -16384").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        let insert_returning = match dialect {
            Dialect::MySql => {
                let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
                    .fetch_one(&pool)
                    .await?;
                mariadb_with_returning(&version)
            }
            _ => true,
        };
        let table = config.task_table();
        let clock = config.clock.clone();
        let offset = clock.offset_ms();
        let statements = Statements::render(
            dialect,
            &table,
            &now_expr(dialect, offset),
            &dialect.literal(&config.namespace),
        );
        Ok(Store {
            pool,
            dialect,
            table,
            namespace: config.namespace.clone(),
            clock,
            rendered: Arc::new(Mutex::new((offset, Arc::new(statements)))),
            last_wake: Arc::new(Mutex::new(None)),
            limited: Arc::default(),
            insert_returning,
            waiting_finishes: Arc::default(),
        })
    }

    fn render(&self) -> Statements {
        Statements::render(
            self.dialect,
            &self.table,
            &self.now(),
            &self.dialect.literal(&self.namespace),
        )
    }

    /// The hot statements; rendered again only when a test moved the clock.
    pub(crate) fn statements(&self) -> Arc<Statements> {
        let offset = self.clock.offset_ms();
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if rendered.0 != offset {
            *rendered = (offset, Arc::new(self.render()));
        }
        rendered.1.clone()
    }

    fn now(&self) -> String {
        now_expr(self.dialect, self.clock.offset_ms())
    }

    /// Whether an insert now should wake the fetchers; records it if so.
    fn wake_due(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last_wake.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < WAKE_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// The PostgreSQL notification channel that wakes this table's `db`-queue fetchers.
    pub(crate) fn wake_channel(&self) -> String {
        format!("{}_due", self.table)
    }

    /// Finishes waiting for a write, shared by the completer and the claims.
    pub(crate) fn waiting_finishes(&self) -> &WaitingFinishes {
        &self.waiting_finishes
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
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

    /// Every table `install()` makes: the task table, then the queue settings and the
    /// schedules beside it (for a tool that removes them all).
    pub fn table_names(&self) -> Vec<String> {
        schema::tables(&self.table)
            .into_iter()
            .map(|table| table.name)
            .collect()
    }

    /// Drops every table of [`Store::table_names`] that exists: the inverse of install,
    /// for tests, benchmarks and tools that remove a namespace's tables.
    pub async fn drop_tables(&self) -> std::result::Result<(), sqlx::Error> {
        for table in self.table_names() {
            let sql = format!("DROP TABLE IF EXISTS {table}");
            self.pool.execute(AssertSqlSafe(sql)).await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Fills in the table name, the clock and the dialect's placeholders.
    /// Safe: templates are constants; only the validated table name and integers go in.
    pub(crate) fn sql(&self, template: &str) -> AssertSqlSafe<String> {
        let sql = template.replace("{t}", &self.table).replace("{now}", &self.now());
        AssertSqlSafe(self.dialect.placeholders(sql))
    }

    /// Creates or migrates the tables; safe to run again and from two processes at once.
    /// Columns and indexes missing from an existing table are added; an index of all
    /// rows that is now partial is rebuilt (schema.rs); nothing else is dropped.
    pub async fn install(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        match self.dialect {
            Dialect::Postgres => {
                let mut tx = conn.begin().await?;
                tx.execute("SELECT pg_advisory_xact_lock(7170731)").await?;
                self.migrate(&mut tx).await?;
                tx.commit().await?;
            }
            Dialect::MySql => {
                conn.execute("SELECT GET_LOCK('qtask_install', 60)").await?;
                let result = self.migrate(&mut conn).await;
                conn.execute("SELECT RELEASE_LOCK('qtask_install')").await?;
                result?;
            }
            Dialect::Sqlite => {
                // One writer at a time: a second installer waits (busy_timeout), then
                // sees the columns the first one added.
                conn.execute("BEGIN IMMEDIATE").await?;
                match self.migrate(&mut conn).await {
                    Ok(()) => {
                        conn.execute("COMMIT").await?;
                    }
                    Err(err) => {
                        let _ = conn.execute("ROLLBACK").await;
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates each table, adds its missing columns, then its missing indexes (an index
    /// may name a column just added). Runs under install's lock.
    async fn migrate(&self, conn: &mut AnyConnection) -> Result<()> {
        for table in schema::tables(&self.table) {
            conn.execute(AssertSqlSafe(table.create(self.dialect))).await?;
            let columns = self.catalog(conn, CatalogList::Columns, &table.name).await?;
            // MySQL: every index; elsewhere the indexes of all rows (schema.rs).
            let indexes = self.catalog(conn, CatalogList::Indexes, &table.name).await?;
            let mut statements = table.add_columns(self.dialect, &columns);
            statements.extend(table.add_indexes(self.dialect, &indexes));
            for statement in statements {
                tracing::debug!(%statement, "qtask: install");
                conn.execute(AssertSqlSafe(statement)).await?;
            }
        }
        Ok(())
    }

    /// The column or index names an existing table has, from the catalog (on PostgreSQL
    /// and SQLite only the indexes of all rows, not the partial ones).
    async fn catalog(&self, conn: &mut AnyConnection, list: CatalogList, table: &str) -> Result<Vec<String>> {
        let sql = match (self.dialect, list) {
            (Dialect::Sqlite, CatalogList::Columns) => "SELECT name FROM pragma_table_info(?)",
            (Dialect::Sqlite, CatalogList::Indexes) => {
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? \
                 AND sql IS NOT NULL AND sql NOT LIKE '% WHERE %'"
            }
            (Dialect::Postgres, CatalogList::Columns) => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = lower($1)"
            }
            (Dialect::Postgres, CatalogList::Indexes) => {
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = lower($1) AND indexdef NOT LIKE '% WHERE %'"
            }
            (Dialect::MySql, CatalogList::Columns) => {
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND LOWER(table_name) = LOWER(?)"
            }
            (Dialect::MySql, CatalogList::Indexes) => {
                "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND LOWER(table_name) = LOWER(?)"
            }
        };
        let names = sqlx::query_scalar::<_, String>(sql)
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
        Ok(names)
    }

    pub(crate) async fn status(&self, id: i64) -> Result<Option<Status>> {
        let code: Option<i64> =
            sqlx::query_scalar(self.sql("SELECT status FROM {t} WHERE id = ? AND namespace = ?"))
                .bind(id)
                .bind(&self.namespace)
                .fetch_optional(&self.pool)
                .await?;
        code.map(Status::from_code).transpose()
    }

    pub(crate) async fn get(&self, id: i64) -> Result<Task> {
        let row = sqlx::query(self.sql(&format!(
            "SELECT {} FROM {{t}} WHERE id = ? AND namespace = ?",
            admin::TASK_COLUMNS
        )))
        .bind(id)
        .bind(&self.namespace)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::NotFound(id))?;
        admin::task_from_row(&row)
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
                Status::Waiting => stats.waiting += n,
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
                      ELSE 'attempted max_count times; the last attempt''s lease ran out' END";
        let with_last = d.concat(&d.concat(reason, "'; last error: '"), "last_error");
        let set = format!(
            "last_error = CASE WHEN last_error IS NULL THEN {reason} ELSE {with_last} END, \
             status = 90, live_key = NULL, next_at = NULL, updated_at = {{now}}, \
             delete_at = {}",
            failed_delete_at(d)
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
        if self.dialect == Dialect::MySql {
            return self.batched_write_locking(head, filter, limit).await;
        }
        let sql = format!(
            "{head} WHERE id IN (SELECT id FROM {{t}} WHERE {filter} LIMIT ? {})",
            self.dialect.skip_locked()
        );
        let done = sqlx::query(self.sql(&sql))
            .bind(&self.namespace)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// MariaDB: lock the batch with SKIP LOCKED, then write it by id. A plain
    /// `UPDATE … LIMIT` would wait on a row that a caller's open transaction just
    /// inserted (the outbox) until that transaction ends.
    async fn batched_write_locking(&self, head: &str, filter: &str, limit: u32) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(self.sql(&format!(
            "SELECT id FROM {{t}} WHERE {filter} LIMIT ? {}",
            self.dialect.skip_locked()
        )))
        .bind(&self.namespace)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let list = statements::id_list(ids);
        let done = sqlx::query(self.sql(&format!("{head} WHERE id IN ({list})")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Whether a MySQL-protocol server's `VERSION()` is MariaDB 10.5 or later, which
/// has `INSERT … RETURNING`.
fn mariadb_with_returning(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    // A replication prefix ("5.5.5-") stands before the real version in old clients' view.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (10, 5)
}

/// What [`Store::catalog`] reads.
#[derive(Clone, Copy)]
enum CatalogList {
    Columns,
    Indexes,
}

/// The database clock, shifted by a test's offset.
fn now_expr(dialect: Dialect, offset_ms: i64) -> String {
    match offset_ms {
        0 => format!("({})", dialect.now_ms()),
        offset => format!("({} + {offset})", dialect.now_ms()),
    }
}

/// Runs `op` again when the database chose it as a deadlock or serialization victim
/// (InnoDB does so to one of two concurrent claimers); the failed attempt rolled back.
pub(crate) async fn retry_conflicts<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let result = op().await;
        if let Err(err) = &result {
            if again_after_conflict(err, &mut attempt).await {
                continue;
            }
        }
        return result;
    }
}

/// Whether an attempt that failed with `err` runs again: when the database chose it as
/// a deadlock or serialization victim, up to 5 times, after a short random pause that
/// grows with `attempt` (the retries so far, counted here).
pub(crate) async fn again_after_conflict(err: &Error, attempt: &mut u64) -> bool {
    match err {
        Error::Database(err) if *attempt < 5 && is_conflict(err) => {
            *attempt += 1;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=10 * *attempt))).await;
            true
        }
        _ => false,
    }
}

fn is_conflict(err: &sqlx::Error) -> bool {
    let code = err.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mariadb_from_10_5_has_insert_returning() {
        assert!(mariadb_with_returning("10.11.19-MariaDB-0+deb12u1"));
        assert!(mariadb_with_returning("5.5.5-10.6.4-MariaDB"));
        assert!(mariadb_with_returning("11.4.2-MariaDB"));
        assert!(!mariadb_with_returning("10.4.30-MariaDB"));
        assert!(!mariadb_with_returning("8.0.36"));
    }
}
