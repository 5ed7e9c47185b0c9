//! The insert of a task rendered for a caller's own connection (the outbox): the
//! binding runs it inside the caller's transaction, so the task exists, and workers
//! see it, only once that transaction commits.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::insert::{insert_template, values};
use super::statements::OFFERED;
use super::{Dialect, Offer, Store};
use crate::error::{invalid, Result};
use crate::task::ValidTask;

/// How the caller's driver writes placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamStyle {
    /// `?` (SQLite, MySQL drivers; Go's database/sql on them).
    Qmark,
    /// `$1, $2…` (libpq, pgx, lib/pq).
    Dollar,
    /// `%s` (Python's psycopg and PyMySQL: DB-API `format` / `pyformat`).
    Format,
    /// `:1, :2…` (DB-API `numeric`).
    Numeric,
}

impl ParamStyle {
    /// What the dialect's own C and Go drivers take.
    pub fn of(dialect: Dialect) -> ParamStyle {
        match dialect {
            Dialect::Postgres => ParamStyle::Dollar,
            Dialect::Sqlite | Dialect::MySql => ParamStyle::Qmark,
        }
    }

    pub fn from_name(name: &str) -> Result<ParamStyle> {
        serde_json::from_value(Value::String(name.into())).map_err(|_| {
            invalid(format!(
                "param_style must be qmark, dollar, format or numeric, got {name:?}"
            ))
        })
    }

    /// Rewrites `?` placeholders (none inside literals in qtask's statements).
    fn apply(self, sql: &str) -> String {
        let sql = match self {
            // A literal % must be doubled where %s marks parameters.
            ParamStyle::Format => sql.replace('%', "%%"),
            _ => sql.to_owned(),
        };
        let mut out = String::with_capacity(sql.len() + 32);
        let mut n = 0;
        for c in sql.chars() {
            if c != '?' {
                out.push(c);
                continue;
            }
            n += 1;
            match self {
                ParamStyle::Qmark => out.push('?'),
                ParamStyle::Dollar => out.push_str(&format!("${n}")),
                ParamStyle::Format => out.push_str("%s"),
                ParamStyle::Numeric => out.push_str(&format!(":{n}")),
            }
        }
        out
    }
}

/// One statement and its parameters, in order: JSON strings, integers and nulls.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallerStatement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// How a caller inserts one task on its own connection:
///
/// 1. run `insert`. If `returns_id`, it returns one row whose first column is the new
///    id, or no row when a live task of the queue already holds the order number.
///    Otherwise (MySQL: `INSERT IGNORE`) one affected row means inserted, and the id
///    is the connection's last insert id; none means the order number is held.
/// 2. when nothing was inserted, run `existing`: one row, the id of the live task that
///    holds the order number (the create returns it with `existing = true`). No row:
///    that task ended meanwhile; run both again.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallerInsert {
    pub insert: CallerStatement,
    pub returns_id: bool,
    /// `None` without an order number: then the insert always inserts.
    pub existing: Option<CallerStatement>,
}

impl Store {
    /// The insert of `task` for a caller's connection. The row is written waiting and
    /// due after its delay, on either queue: after the commit a `db`-queue worker
    /// claims it, and the sweeper offers it to Redis (or the caller dispatches it).
    /// `wake` (PostgreSQL, `db` queue): waiting fetchers are notified at the commit.
    pub(crate) fn caller_insert(&self, task: &ValidTask, style: ParamStyle, wake: bool) -> CallerInsert {
        let dialect = self.dialect();
        let wake = wake && dialect == Dialect::Postgres && task.delay_ms == 0;
        let fill = |template: &str| {
            style.apply(
                &template
                    .replace("{t}", self.table())
                    .replace("{now}", &self.now()),
            )
        };
        // The values Store::insert binds, from the same description (insert.rs).
        let mut params = values(self.namespace(), task, false);
        if wake {
            params.push(self.wake_channel().into());
        }
        let insert = CallerStatement {
            sql: fill(&insert_template(dialect, wake)),
            params,
        };
        let existing = task.order_no.as_ref().map(|order_no| {
            let lock = if dialect == Dialect::MySql {
                " LOCK IN SHARE MODE"
            } else {
                ""
            };
            CallerStatement {
                sql: fill(&format!(
                    "SELECT id FROM {{t}} WHERE namespace = ? AND queue = ? AND live_key = ?{lock}"
                )),
                params: vec![
                    self.namespace().into(),
                    task.queue.clone().into(),
                    order_no.clone().into(),
                ],
            }
        });
        CallerInsert {
            insert,
            returns_id: dialect.update_returning(),
            existing,
        }
    }

    /// Offers a waiting, due task to a queue that carries offers, as the sweeper would:
    /// `Some(offer)` when this call marked it offered, `None` when it is not waiting
    /// and due (already offered, claimed, ended, or not committed yet).
    pub(crate) async fn offer_one(&self, id: i64) -> Result<Option<Offer>> {
        let filter = "id = ? AND namespace = ? AND status = 20 AND next_at <= {now} \
                      AND dispatch_count < max_count AND deadline_at > {now}";
        let row = sqlx::query(self.sql(&format!(
            "SELECT queue, priority, {{now}} - next_at FROM {{t}} WHERE {filter}"
        )))
        .bind(id)
        .bind(self.namespace())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let offer = Offer {
            task_id: id,
            queue: row.try_get(0)?,
            priority: row.try_get(1)?,
            overdue_ms: row.try_get(2)?,
        };
        let done = sqlx::query(self.sql(&format!(
            "UPDATE {{t}} SET status = {OFFERED}, next_at = {{now}} + timeout_ms, updated_at = {{now}} \
             WHERE {filter}"
        )))
        .bind(id)
        .bind(self.namespace())
        .execute(self.pool())
        .await?;
        Ok((done.rows_affected() == 1).then_some(offer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_style() {
        assert_eq!(ParamStyle::Dollar.apply("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            ParamStyle::Format.apply("a = ? AND b LIKE '5%'"),
            "a = %s AND b LIKE '5%%'"
        );
        assert_eq!(ParamStyle::Numeric.apply("a = ?"), "a = :1");
        assert_eq!(ParamStyle::from_name("qmark").unwrap(), ParamStyle::Qmark);
        assert!(ParamStyle::from_name("named").is_err());
    }
}
