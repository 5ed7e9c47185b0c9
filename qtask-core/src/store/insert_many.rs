//! Writing many task rows with few statements: multi-row `VALUES` in chunks under
//! each database's parameter limit, and on PostgreSQL a chunk of more than
//! [`MAX_VALUES_ROWS_PG`] rows as one JSON array. A row whose order number a live task
//! holds gets that task's id (`existing`), as a lone create would; a later row of the
//! same batch with the order number of an earlier one gets the earlier one's.
//!
//! How ids map to rows: the JSON insert draws each row's id from the sequence before
//! the insert and returns it beside the row's position. `VALUES` returns the ids of the
//! inserted rows in no promised order, but every database gives the rows of one
//! statement increasing ids in the order the rows are written, which is the order of
//! `VALUES` (AUTOINCREMENT; PostgreSQL's sequence default, drawn row by row as the
//! insert reads them; InnoDB in every `innodb_autoinc_lock_mode`: consecutive in 0 and
//! 1, interleaved with other statements' but still increasing in 2). So the returned ids,
//! sorted, belong to the inserted rows in order; each one's queue and order number
//! are checked against its row.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Connection, Row};

use super::insert::{bind_values, insert_rows_template, json_rows, values};
use super::{again_after_conflict, Dialect, Inserted, Store};
use crate::error::{Error, Result};
use crate::task::ValidTask;

/// A task to write, and whether it goes out as an offer (see [`Store::insert`]).
pub(crate) type NewRow<'a> = (&'a ValidTask, bool);

/// Most rows in one statement: SQLite allows 32,766 parameters, MariaDB and
/// PostgreSQL 65,535; 1,000 rows of 16 fit all three.
const MAX_ROWS: usize = 1000;
/// Most bytes of text in one statement (MariaDB's packet is 16 MiB by default). A row
/// larger than this goes alone.
const MAX_BYTES: usize = 4 << 20;
/// Most rows PostgreSQL writes with multi-row `VALUES`; more go as one JSON array.
/// Small batches are what concurrent `create` callers share: four rows took 0.47–0.51
/// ms as `VALUES` and 0.54–0.66 as JSON (pgbench, one client), and two clients wrote 12,000
/// rows/s against 10,300. Each row count is a statement of its own in the
/// connection's cache, so large batches, rarer, keep the one JSON statement.
const MAX_VALUES_ROWS_PG: usize = 16;
/// Most order numbers looked up in one statement.
const MAX_LOOKUPS: usize = 300;

/// Where rows are written.
pub(crate) enum Via<'c> {
    /// On the caller's connection, typically in its transaction: any error fails the
    /// whole write (the caller rolls back).
    Conn(&'c mut AnyConnection),
    /// Each statement on a pooled connection, committed on its own (group commit of
    /// independent creates): a statement the database refuses is run again row by row,
    /// so that only the rows it refuses fail. The connection is the one held here, else
    /// one from the pool, and stays held after statements that succeed; after an error
    /// it goes back to the pool, which checks it before lending it again.
    Pool(&'c mut Option<PoolConnection<Any>>),
}

/// What one statement did with one row.
enum Outcome {
    Inserted(i64),
    /// A live task holds its order number.
    Held,
    Failed(Error),
}

/// One row's values, bound in [`Bound::ALL`] order.
struct Prepared<'a> {
    task: &'a ValidTask,
    offered: bool,
    values: Vec<Value>,
}

impl Prepared<'_> {
    fn key(&self) -> Option<(&str, &str)> {
        self.task
            .order_no
            .as_deref()
            .map(|o| (self.task.queue.as_str(), o))
    }

    fn bytes(&self) -> usize {
        let text: usize = self.values.iter().map(|v| v.as_str().map_or(8, str::len)).sum();
        text + 64
    }

    /// Due now on the `db` queue: its insert wakes the fetchers.
    fn due_now(&self) -> bool {
        !self.offered && self.task.delay_ms == 0
    }
}

impl Store {
    /// Writes one task. `offered` marks it on its way to a queue that carries offers
    /// (Redis): it is claimable from the queue now and offered again after its timeout.
    /// Otherwise it is waiting and due after its delay.
    pub(crate) async fn insert(
        &self,
        conn: &mut AnyConnection,
        task: &ValidTask,
        offered: bool,
    ) -> Result<Inserted> {
        let mut results = self.insert_rows(&mut Via::Conn(conn), &[(task, offered)]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no row written".into())))
    }

    /// Writes `rows` on `conn`, in its transaction: one result per row, or the first
    /// error (then the caller rolls back and nothing is written).
    pub(crate) async fn insert_many(
        &self,
        conn: &mut AnyConnection,
        rows: &[NewRow<'_>],
    ) -> Result<Vec<Inserted>> {
        self.insert_rows(&mut Via::Conn(conn), rows)
            .await?
            .into_iter()
            .collect()
    }

    /// Writes `rows` of independent callers, each statement committed on its own: one
    /// result per row, each durable when it is `Ok`. `held`: see [`Via::Pool`].
    pub(crate) async fn insert_each(
        &self,
        held: &mut Option<PoolConnection<Any>>,
        rows: &[NewRow<'_>],
    ) -> Vec<Result<Inserted>> {
        match self.insert_rows(&mut Via::Pool(held), rows).await {
            Ok(results) => results,
            Err(err) => rows.iter().map(|_| Err(err.duplicate())).collect(),
        }
    }

    /// One result per row; `Err` only on [`Via::Conn`].
    async fn insert_rows(&self, via: &mut Via<'_>, rows: &[NewRow<'_>]) -> Result<Vec<Result<Inserted>>> {
        let prepared: Vec<Prepared> = rows
            .iter()
            .map(|&(task, offered)| Prepared {
                task,
                offered,
                values: values(&self.namespace, task, offered),
            })
            .collect();
        // A row with the order number of an earlier row follows that row.
        let mut leader_of: Vec<Option<usize>> = vec![None; rows.len()];
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut pending = Vec::with_capacity(rows.len());
        for (i, row) in prepared.iter().enumerate() {
            match row.key().map(|key| *first.entry(key).or_insert(i)) {
                Some(leader) if leader != i => leader_of[i] = Some(leader),
                _ => pending.push(i),
            }
        }
        let mut results: Vec<Option<Result<Inserted>>> = (0..rows.len()).map(|_| None).collect();
        // A held order number whose task ended before the lookup: insert again.
        for _ in 0..3 {
            if pending.is_empty() {
                break;
            }
            let outcomes = self.write_chunks(via, &prepared, &pending).await?;
            let mut held = Vec::new();
            for (&i, outcome) in pending.iter().zip(outcomes) {
                match outcome {
                    Outcome::Inserted(id) => results[i] = Some(Ok(Inserted { id, existing: false })),
                    Outcome::Held if prepared[i].key().is_some() => held.push(i),
                    // MySQL's INSERT IGNORE also skips rows for other reasons than a key.
                    Outcome::Held => {
                        let err =
                            Error::Internal("the database skipped a task without an order number".into());
                        if matches!(via, Via::Conn(_)) {
                            return Err(err);
                        }
                        results[i] = Some(Err(err));
                    }
                    Outcome::Failed(err) => results[i] = Some(Err(err)),
                }
            }
            pending.clear();
            if held.is_empty() {
                break;
            }
            let found = match self.holders_via(via, &prepared, &held).await {
                Ok(found) => found,
                Err(err) if matches!(via, Via::Pool(_)) => {
                    for &i in &held {
                        results[i] = Some(Err(err.duplicate()));
                    }
                    break;
                }
                Err(err) => return Err(err),
            };
            for i in held {
                let (queue, order_no) = prepared[i].key().unwrap_or_default();
                match found.get(&(queue.to_string(), order_no.to_string())) {
                    Some(&id) => results[i] = Some(Ok(Inserted { id, existing: true })),
                    None => pending.push(i),
                }
            }
        }
        if !pending.is_empty() {
            let err = || Error::Internal("order number kept changing hands while creating".into());
            if matches!(via, Via::Conn(_)) {
                return Err(err());
            }
            for i in pending {
                results[i] = Some(Err(err()));
            }
        }
        for (i, leader) in leader_of.iter().enumerate() {
            if let Some(leader) = *leader {
                results[i] = Some(match &results[leader] {
                    Some(Ok(ins)) => Ok(Inserted {
                        id: ins.id,
                        existing: true,
                    }),
                    Some(Err(err)) => Err(err.duplicate()),
                    None => Err(Error::Internal("row left unwritten".into())),
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("row left unwritten".into()))))
            .collect())
    }

    /// Inserts the rows `indices` of `rows` in chunks: one outcome per index.
    async fn write_chunks(
        &self,
        via: &mut Via<'_>,
        rows: &[Prepared<'_>],
        indices: &[usize],
    ) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(indices.len());
        let mut start = 0;
        while start < indices.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < indices.len() && end - start < MAX_ROWS {
                bytes += rows[indices[end]].bytes();
                if end > start && bytes > MAX_BYTES {
                    break;
                }
                end += 1;
            }
            let chunk: Vec<&Prepared> = indices[start..end].iter().map(|&i| &rows[i]).collect();
            outcomes.extend(self.write_chunk_via(via, &chunk).await?);
            start = end;
        }
        Ok(outcomes)
    }

    async fn write_chunk_via(&self, via: &mut Via<'_>, chunk: &[&Prepared<'_>]) -> Result<Vec<Outcome>> {
        let held = match via {
            Via::Conn(conn) => return self.write_chunk(conn, chunk).await,
            Via::Pool(held) => held,
        };
        match self.write_chunk_alone(held, chunk).await {
            Ok(outcomes) => Ok(outcomes),
            // The database refused the statement: find the rows it refuses, one by one.
            Err(err @ (Error::Database(sqlx::Error::Database(_)) | Error::Internal(_)))
                if chunk.len() > 1 =>
            {
                tracing::debug!(error = %err, rows = chunk.len(), "qtask: a multi-row insert failed; rows one by one");
                let mut outcomes = Vec::with_capacity(chunk.len());
                for row in chunk {
                    match self.write_chunk_alone(held, &[*row]).await {
                        Ok(mut one) => outcomes.push(one.pop().unwrap_or(Outcome::Held)),
                        Err(err) => outcomes.push(Outcome::Failed(err)),
                    }
                }
                Ok(outcomes)
            }
            Err(err) => Ok(chunk.iter().map(|_| Outcome::Failed(err.duplicate())).collect()),
        }
    }

    /// One chunk on the held or a pooled connection, committed alone, run again when it
    /// was chosen as a deadlock victim. MariaDB: in a transaction, since `INSERT IGNORE`
    /// skips a row it refuses (a failed CHECK…) without an error, and then the
    /// statement's rows cannot be told apart and must not stay written.
    async fn write_chunk_alone(
        &self,
        held: &mut Option<PoolConnection<Any>>,
        chunk: &[&Prepared<'_>],
    ) -> Result<Vec<Outcome>> {
        let mut attempt = 0;
        loop {
            let conn = self.held_conn(held).await?;
            let result = if self.dialect != Dialect::MySql || chunk.len() == 1 {
                self.write_chunk(conn, chunk).await
            } else {
                self.write_chunk_in_transaction(conn, chunk).await
            };
            if !again_on_held(held, &result, &mut attempt).await {
                return result;
            }
        }
    }

    async fn write_chunk_in_transaction(
        &self,
        conn: &mut AnyConnection,
        chunk: &[&Prepared<'_>],
    ) -> Result<Vec<Outcome>> {
        let mut tx = conn.begin().await?;
        let outcomes = self.write_chunk(&mut tx, chunk).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// The held connection, else one from the pool, now held.
    async fn held_conn<'h>(
        &self,
        held: &'h mut Option<PoolConnection<Any>>,
    ) -> Result<&'h mut PoolConnection<Any>> {
        Ok(match held {
            Some(conn) => conn,
            None => held.insert(self.pool.acquire().await?),
        })
    }

    /// One statement for the rows of `chunk` (one per row on MySQL, which has no
    /// `INSERT … RETURNING`).
    async fn write_chunk(&self, conn: &mut AnyConnection, chunk: &[&Prepared<'_>]) -> Result<Vec<Outcome>> {
        if chunk.len() == 1 {
            return Ok(vec![self.write_one(conn, chunk[0]).await?]);
        }
        match self.dialect {
            Dialect::Postgres if chunk.len() > MAX_VALUES_ROWS_PG => self.write_json(conn, chunk).await,
            Dialect::MySql if !self.insert_returning => {
                let mut outcomes = Vec::with_capacity(chunk.len());
                for row in chunk {
                    outcomes.push(self.write_one(conn, row).await?);
                }
                Ok(outcomes)
            }
            _ => self.write_values(conn, chunk).await,
        }
    }

    /// A live task holding the order number is `Held`.
    async fn write_one(&self, conn: &mut AnyConnection, row: &Prepared<'_>) -> Result<Outcome> {
        let statements = self.statements();
        // A task due now on the `db` queue wakes the fetchers that wait for it, at most
        // once per WAKE_EVERY: PostgreSQL commits notifying transactions one at a time
        // (a global lock), so a NOTIFY per create would undo group commit. Woken
        // fetchers claim whatever is due, tasks created meanwhile too.
        let wake = match &statements.insert_and_wake {
            Some(sql) if self.wakes_fetchers(&[row]) => Some(sql.as_str()),
            _ => None,
        };
        let channel = self.wake_channel();
        let mut query = bind_values(
            sqlx::query(AssertSqlSafe(wake.unwrap_or(statements.insert.as_str()))),
            &row.values,
        );
        if wake.is_some() {
            query = query.bind(channel.as_str());
        }
        let id = if self.dialect == Dialect::MySql {
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
        Ok(id.map_or(Outcome::Held, Outcome::Inserted))
    }

    /// PostgreSQL: the chunk as one JSON array; ids drawn before the insert, by position.
    async fn write_json(&self, conn: &mut AnyConnection, chunk: &[&Prepared<'_>]) -> Result<Vec<Outcome>> {
        let statements = self.statements();
        let wake = self.wakes_fetchers(chunk);
        let sql = match (&statements.insert_json_and_wake, &statements.insert_json) {
            (Some(sql), _) if wake => sql,
            (_, Some(sql)) => sql,
            _ => return Err(Error::Internal("no JSON insert on this database".into())),
        };
        let json = json_rows(chunk.iter().map(|row| row.values.as_slice()));
        let channel = self.wake_channel();
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str())).bind(json);
        if wake {
            query = query.bind(channel);
        }
        let mut outcomes: Vec<Option<Outcome>> = chunk.iter().map(|_| None).collect();
        for row in query.fetch_all(&mut *conn).await? {
            let ord: i64 = row.try_get(0)?;
            let slot = usize::try_from(ord)
                .ok()
                .and_then(|ord| outcomes.get_mut(ord))
                .ok_or_else(|| Error::Internal(format!("insert returned position {ord}")))?;
            *slot = Some(match row.try_get::<bool, _>(2)? {
                true => Outcome::Inserted(row.try_get(1)?),
                false => Outcome::Held,
            });
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::Internal("insert left a row without a result".into())))
            .collect()
    }

    /// Whether writing `rows` should NOTIFY the `db` queue's fetchers: on PostgreSQL,
    /// for a row due now, at most once per WAKE_EVERY (asked last: it records the wake).
    fn wakes_fetchers(&self, rows: &[&Prepared<'_>]) -> bool {
        self.dialect == Dialect::Postgres && rows.iter().any(|row| row.due_now()) && self.wake_due()
    }

    /// Multi-row `VALUES`; the ids sorted belong to the inserted rows in order (see
    /// the module's comment).
    async fn write_values(&self, conn: &mut AnyConnection, chunk: &[&Prepared<'_>]) -> Result<Vec<Outcome>> {
        let wake = self.wakes_fetchers(chunk);
        let sql = self.sql(&insert_rows_template(self.dialect, chunk.len(), wake));
        let mut query = sqlx::query(sql);
        for row in chunk {
            query = bind_values(query, &row.values);
        }
        if wake {
            query = query.bind(self.wake_channel());
        }
        let mut returned: Vec<(i64, String, Option<String>)> = query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_>>()?;
        returned.sort_unstable_by_key(|r| r.0);
        let mut inserted = returned.into_iter().peekable();
        let mut outcomes = Vec::with_capacity(chunk.len());
        for row in chunk {
            let task = row.task;
            let next =
                inserted.next_if(|(_, queue, live_key)| *queue == task.queue && *live_key == task.order_no);
            match next {
                Some((id, _, _)) => outcomes.push(Outcome::Inserted(id)),
                // An order number held by a live task skips a row; MariaDB's INSERT
                // IGNORE also skips a row it refuses, and then ids cannot be mapped.
                None if task.order_no.is_some() => outcomes.push(Outcome::Held),
                None => return Err(Error::Internal("the database skipped a task it was given".into())),
            }
        }
        if inserted.next().is_some() {
            return Err(Error::Internal(
                "a multi-row insert returned a row it was not given".into(),
            ));
        }
        Ok(outcomes)
    }

    async fn holders_via(
        &self,
        via: &mut Via<'_>,
        rows: &[Prepared<'_>],
        held: &[usize],
    ) -> Result<HashMap<(String, String), i64>> {
        let keys: Vec<(&str, &str)> = held.iter().filter_map(|&i| rows[i].key()).collect();
        match via {
            Via::Conn(conn) => self.holders(conn, &keys).await,
            Via::Pool(held) => {
                let mut attempt = 0;
                loop {
                    let conn = self.held_conn(held).await?;
                    let result = self.holders(conn, &keys).await;
                    if !again_on_held(held, &result, &mut attempt).await {
                        return result;
                    }
                }
            }
        }
    }

    /// The ids of the live tasks that hold these (queue, order number) keys.
    async fn holders(
        &self,
        conn: &mut AnyConnection,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>> {
        // On MariaDB a plain read in a transaction sees its old snapshot, where the row
        // another transaction just committed is missing; a locking read sees it.
        let lock = if self.dialect == Dialect::MySql {
            " LOCK IN SHARE MODE"
        } else {
            ""
        };
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_LOOKUPS) {
            let any_of = vec!["(queue = ? AND live_key = ?)"; chunk.len()].join(" OR ");
            let sql =
                format!("SELECT id, queue, live_key FROM {{t}} WHERE namespace = ? AND ({any_of}){lock}");
            let mut query = sqlx::query(self.sql(&sql)).bind(&self.namespace);
            for (queue, order_no) in chunk {
                query = query.bind(*queue).bind(*order_no);
            }
            for row in query.fetch_all(&mut *conn).await? {
                found.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
            }
        }
        Ok(found)
    }
}

/// After an attempt on a held connection: a connection that failed goes back to the
/// pool, and true (after a pause) when the attempt is to run again (as in
/// `retry_conflicts`).
async fn again_on_held<T>(
    held: &mut Option<PoolConnection<Any>>,
    result: &Result<T>,
    attempt: &mut u64,
) -> bool {
    let Err(err) = result else {
        return false;
    };
    *held = None;
    again_after_conflict(err, attempt).await
}

#[cfg(test)]
mod tests {
    use super::super::insert::Bound;
    use super::*;

    #[test]
    fn the_row_limit_fits_every_database() {
        let params = MAX_ROWS * Bound::ALL.len();
        assert!(params <= 32_766, "{params} parameters");
    }
}
