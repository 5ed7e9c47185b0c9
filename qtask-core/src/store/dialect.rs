//! The three SQL dialects: where their text differs, and nothing else.

use crate::error::{invalid, Result};

/// Which database a URL names. Queries are written once with `?` placeholders
/// and `{t}` / `{now}` markers; the dialect fills in its own text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(invalid(format!(
                "database URL must start with sqlite:, postgres: or mysql:, got {:?}",
                redact(url)
            ))),
        }
    }

    /// The database's clock in Unix milliseconds, one value per statement.
    pub fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            // date_part is double precision arithmetic (exact to the microsecond for
            // this epoch); EXTRACT is numeric, about 4 times as slow, and a claim and
            // a finish evaluate the clock about six times per task.
            Dialect::Postgres => "CAST(date_part('epoch', statement_timestamp()) * 1000 AS BIGINT)",
            Dialect::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        }
    }

    /// Whether UPDATE … RETURNING exists (MariaDB has it only for INSERT and DELETE).
    pub fn update_returning(self) -> bool {
        !matches!(self, Dialect::MySql)
    }

    /// `LIMIT` with a bound row count. SQLite's planner reads the value of a bare
    /// `LIMIT ?` at prepare time, so each new bind made it prepare the statement again
    /// (7 % of its thread in a drain); the cast keeps the count out of the plan.
    pub fn limit_bound(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIMIT CAST(? AS INTEGER)",
            Dialect::Postgres | Dialect::MySql => "LIMIT ?",
        }
    }

    /// Row locks that let concurrent claimers pass each other (SQLite locks the whole file).
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres | Dialect::MySql => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// `a || b`, which MySQL spells CONCAT.
    pub fn concat(self, a: &str, b: &str) -> String {
        match self {
            Dialect::MySql => format!("CONCAT({a}, {b})"),
            _ => format!("({a} || {b})"),
        }
    }

    /// The larger of two values (SQLite's scalar MAX).
    pub fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("MAX({a}, {b})"),
            _ => format!("GREATEST({a}, {b})"),
        }
    }

    /// Insert that does nothing when a live task already holds the (queue, order_no) key.
    pub fn insert_unless_live(self) -> (&'static str, &'static str) {
        match self {
            Dialect::MySql => ("INSERT IGNORE INTO", ""),
            _ => ("INSERT INTO", "ON CONFLICT DO NOTHING RETURNING id"),
        }
    }

    /// A string as an SQL literal (for the namespace, inlined into batch statements).
    pub fn literal(self, text: &str) -> String {
        let mut escaped = text.replace('\'', "''");
        if self == Dialect::MySql {
            // MySQL also treats a backslash as an escape inside literals.
            escaped = escaped.replace('\\', "\\\\");
        }
        format!("'{escaped}'")
    }

    /// Rewrites `?` placeholders into `$1, $2…` for PostgreSQL. Queries contain no
    /// `?` inside string literals.
    pub fn placeholders(self, sql: String) -> String {
        if self != Dialect::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// Kept at its old path; the rule lives in `crate::secret`.
pub use crate::secret::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let sql = Dialect::Postgres.placeholders("a = ? AND b = ?".into());
        assert_eq!(sql, "a = $1 AND b = $2");
        assert_eq!(Dialect::MySql.placeholders("a = ?".into()), "a = ?");
        assert_eq!(Dialect::Postgres.literal("o'k\\"), "'o''k\\'");
        assert_eq!(Dialect::MySql.literal("o'k\\"), "'o''k\\\\'");
    }

    #[test]
    fn urls_pick_dialects_and_hide_passwords() {
        assert_eq!(Dialect::from_url("sqlite://x.db").unwrap(), Dialect::Sqlite);
        assert_eq!(Dialect::from_url("postgresql://h/db").unwrap(), Dialect::Postgres);
        assert_eq!(Dialect::from_url("mariadb://h/db").unwrap(), Dialect::MySql);
        assert!(Dialect::from_url("oracle://h/db").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
