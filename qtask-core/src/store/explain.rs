//! Query plans of the hot statements, so operators (and the index test) can see that
//! the sweeper and the `db` queue stay on their indexes as the table grows.

use sqlx::Row;

use super::statements::{CLAIM_ORDER, NEXT_LEVEL};
use super::{Dialect, Store, DUE, EXPIRED, SPENT};
use crate::error::Result;

/// How the database runs one hot statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `claim`, `pop`, `next_level`, `give_up`, `cleanup` or `list_failed` (operators'
    /// list, admin.rs).
    pub statement: &'static str,
    /// The plan as the database prints it.
    pub text: String,
    /// The qtask index it reads, if any.
    pub index: Option<String>,
    /// It reads the whole table.
    pub full_scan: bool,
}

impl Store {
    /// Explains the sweeper's and the `db` queue's statements (their row-selecting part).
    pub async fn explain(&self) -> Result<Vec<Plan>> {
        // SQLite pops one priority level at a time (claims.rs), found in a subquery; the
        // others in one statement. Binds after the namespace: the queue, or (SQLite's
        // pop) the queue, then the subquery's namespace and queue.
        let queue = "ORDER:BIND".to_string();
        let (pop, pop_binds) = match self.dialect {
            Dialect::Sqlite => (
                format!(
                    "{} ORDER BY next_at",
                    DUE.replace(
                        "{queue}",
                        &format!(
                            "AND queue = ? AND priority = (SELECT MAX(priority) FROM {{t}} WHERE {})",
                            NEXT_LEVEL.replace("priority < ?", "priority < 1001")
                        )
                    )
                ),
                vec![queue.clone(), self.namespace.clone(), queue.clone()],
            ),
            _ => (
                format!(
                    "{} ORDER BY {CLAIM_ORDER}",
                    DUE.replace("{queue}", "AND queue = ?")
                ),
                vec![queue.clone()],
            ),
        };
        let statements = [
            ("claim", DUE.replace("{queue}", ""), Vec::new()),
            ("pop", pop, pop_binds),
            ("give_up", SPENT.to_string(), Vec::new()),
            ("cleanup", EXPIRED.to_string(), Vec::new()),
            ("list_failed", super::admin::LIST_FAILED.to_string(), Vec::new()),
        ];
        // SQLite's claim finds the next priority level down with this filter.
        let next_level = (self.dialect == Dialect::Sqlite).then(|| {
            (
                "next_level",
                NEXT_LEVEL.replace("priority < ?", "priority < 5"),
                vec![queue.clone()],
            )
        });
        let mut plans = Vec::new();
        for (statement, filter, binds) in statements.into_iter().chain(next_level) {
            let select = format!("SELECT id FROM {{t}} WHERE {filter} LIMIT 1000");
            let prefix = match self.dialect {
                Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
                Dialect::Postgres | Dialect::MySql => "EXPLAIN ",
            };
            let sql = self.sql(&format!("{prefix}{select}"));
            let mut query = sqlx::query(sql).bind(&self.namespace);
            for bind in binds {
                query = query.bind(bind);
            }
            let rows = query.fetch_all(&self.pool).await?;
            let mut lines = Vec::new();
            let mut mysql_keys = Vec::new();
            for row in &rows {
                match self.dialect {
                    Dialect::Sqlite => lines.push(row.try_get::<String, _>("detail")?),
                    Dialect::Postgres => lines.push(row.try_get::<String, _>(0)?),
                    Dialect::MySql => {
                        let access: Option<String> = row.try_get("type")?;
                        let key: Option<String> = row.try_get("key")?;
                        lines.push(format!(
                            "type={} key={}",
                            access.as_deref().unwrap_or("-"),
                            key.as_deref().unwrap_or("-")
                        ));
                        mysql_keys.push((access, key));
                    }
                }
            }
            let text = lines.join("\n");
            let index_prefix = format!("{}_", self.table);
            let index = text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|word| word.starts_with(&index_prefix))
                .map(str::to_string);
            let full_scan = match self.dialect {
                Dialect::Sqlite => lines
                    .iter()
                    .any(|l| l.starts_with("SCAN") && !l.contains("INDEX")),
                Dialect::Postgres => text.contains("Seq Scan"),
                Dialect::MySql => mysql_keys
                    .iter()
                    .any(|(access, _)| access.as_deref() == Some("ALL")),
            };
            plans.push(Plan {
                statement,
                text,
                index,
                full_scan,
            });
        }
        Ok(plans)
    }
}
