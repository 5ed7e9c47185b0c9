//! Configuration by URLs: in code, from JSON (C, Python) or the environment.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::clock::Clock;
use crate::error::{invalid, Result};

/// The embedded default: a SQLite file in the working directory.
pub const DEFAULT_DB_URL: &str = "sqlite://qtask.db";
/// The embedded default queue: the database itself carries the tasks.
pub const DB_QUEUE: &str = "db";
/// Queue URL schemes of the Redis queue (`rediss`: TLS).
pub(crate) const REDIS_SCHEMES: [&str; 4] =
    ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"];
/// Longest `sweep_interval` and `connect_timeout` (one day): longer ones are refused.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Longest `retry_backoff_max` (100 years, the longest task duration).
const MAX_BACKOFF: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Longest namespace and Redis prefix, in bytes.
const MAX_NAME_PART: usize = 64;

/// How a client reaches its database and queue, and how its sweeper behaves.
///
/// Deserializes from JSON with the same keys as the Python keywords; a key
/// that is not listed here is an error. Durations are seconds (fractions allowed).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default = "Config::from_env")]
pub struct Config {
    /// Database URL: `sqlite://file.db`, `postgres://…`, `mysql://…`.
    pub db: String,
    /// Queue: `db` (the database itself) or a Redis URL.
    pub queue: String,
    /// The seed's `plat_name`: applications sharing one table; a sweeper handles only its own.
    pub namespace: String,
    /// Prefix of qtask's table names (`qtask_` gives `qtask_task`).
    pub table_prefix: String,
    /// Prefix of qtask's Redis keys.
    pub redis_prefix: String,
    /// Run the background sweeper (turn off for pure producers).
    pub sweeper: bool,
    /// Seconds between sweeps.
    #[serde(deserialize_with = "seconds")]
    pub sweep_interval: Duration,
    /// Rows one sweep statement claims, fails or deletes at most.
    pub batch_size: u32,
    /// Largest accepted task input, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// First retry delay after `fail`; doubles per attempt.
    #[serde(deserialize_with = "seconds")]
    pub retry_backoff: Duration,
    /// Longest retry delay after `fail`.
    #[serde(deserialize_with = "seconds")]
    pub retry_backoff_max: Duration,
    /// Database connections in this client's pool. SQLite always uses one: it has one
    /// writer at a time, so a connection held in a caller's transaction makes this
    /// client's other calls wait for that transaction to end.
    pub max_connections: u32,
    /// Seconds to wait for a database connection before failing (sqlx retries meanwhile).
    #[serde(deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Serve this process's metrics for Prometheus at `http://ADDR/metrics`, e.g.
    /// `127.0.0.1:9464` (telemetry.rs). None by default; one address per process.
    pub metrics_listen: Option<String>,
    /// Export this process's spans over OTLP/HTTP (protobuf) to this collector base URL,
    /// e.g. `http://127.0.0.1:4318` (`/v1/traces` is added). Feature `otlp`; None by
    /// default; one endpoint per process (export.rs).
    pub otlp_endpoint: Option<String>,
    /// Shift of the database clock; tests only.
    #[serde(skip)]
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: DEFAULT_DB_URL.into(),
            queue: DB_QUEUE.into(),
            namespace: "default".into(),
            table_prefix: "qtask_".into(),
            redis_prefix: "qtask".into(),
            sweeper: true,
            sweep_interval: Duration::from_secs(1),
            batch_size: 1000,
            max_payload_bytes: 1 << 20,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(600),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            metrics_listen: None,
            otlp_endpoint: None,
            clock: Clock::database(),
        }
    }
}

impl Config {
    /// The defaults, with `QTASK_DB_URL`, `QTASK_QUEUE_URL`, `QTASK_NAMESPACE`,
    /// `QTASK_METRICS_LISTEN` and `QTASK_OTLP_ENDPOINT` applied.
    pub fn from_env() -> Self {
        let mut config = Config::default();
        if let Some(db) = env_var("QTASK_DB_URL") {
            config.db = db;
        }
        if let Some(queue) = env_var("QTASK_QUEUE_URL") {
            config.queue = queue;
        }
        if let Some(namespace) = env_var("QTASK_NAMESPACE") {
            config.namespace = namespace;
        }
        config.metrics_listen = env_var("QTASK_METRICS_LISTEN");
        config.otlp_endpoint = env_var("QTASK_OTLP_ENDPOINT");
        config
    }

    /// Parses a JSON object over [`Config::from_env`]; NULL-ish input (`""`, `{}`) gives the defaults.
    pub fn from_json(text: &str) -> Result<Self> {
        crate::input::check_settings_text("config", text)?;
        if text.trim().is_empty() {
            return Ok(Config::from_env());
        }
        let config: Config = serde_json::from_str(text).map_err(|e| invalid(format!("config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; called by `Client::open`.
    pub fn validate(&self) -> Result<()> {
        crate::store::Dialect::from_url(&self.db)?;
        let queue_ok =
            self.queue == DB_QUEUE || REDIS_SCHEMES.iter().any(|scheme| self.queue.starts_with(scheme));
        if !queue_ok {
            return Err(invalid(format!(
                "queue must be \"db\" or a redis:// or rediss:// URL, got {:?}",
                crate::secret::redact(&self.queue)
            )));
        }
        key_part("namespace", &self.namespace)?;
        let identifier = |s: &str| s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !identifier(&self.table_prefix) {
            return Err(invalid("table_prefix must be up to 32 of [A-Za-z0-9_]"));
        }
        key_part("redis_prefix", &self.redis_prefix)?;
        if self.sweep_interval.is_zero() || self.sweep_interval > MAX_SETTING_DURATION {
            return Err(invalid(format!(
                "sweep_interval must be positive and at most {} s",
                MAX_SETTING_DURATION.as_secs()
            )));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(invalid("batch_size must be 1 to 10000"));
        }
        if self.max_payload_bytes == 0 {
            return Err(invalid("max_payload_bytes must be positive"));
        }
        if self.retry_backoff.is_zero() || self.retry_backoff_max < self.retry_backoff {
            return Err(invalid(
                "retry_backoff must be positive and at most retry_backoff_max",
            ));
        }
        if self.retry_backoff_max > MAX_BACKOFF {
            return Err(invalid("retry_backoff_max must be at most 100 years"));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > MAX_SETTING_DURATION {
            return Err(invalid(format!(
                "connect_timeout must be positive and at most {} s",
                MAX_SETTING_DURATION.as_secs()
            )));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections must be positive"));
        }
        Ok(())
    }

    /// The task table's name.
    pub fn task_table(&self) -> String {
        format!("{}task", self.table_prefix)
    }
}

/// Namespaces and Redis prefixes become parts of Redis keys (`prefix:namespace:{queue}`):
/// without `:`, braces, whitespace or control characters, no two (prefix, namespace)
/// pairs can name the same key.
fn key_part(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_NAME_PART {
        return Err(invalid(format!("{what} must be 1 to {MAX_NAME_PART} bytes")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, ':' | '{' | '}') || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "{what} must not contain {c:?} (nor ':', braces, whitespace or control characters)"
        )));
    }
    Ok(())
}

/// Like the derived form, with the passwords of `db` and `queue` hidden.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("db", &crate::secret::redact(&self.db))
            .field("queue", &crate::secret::redact(&self.queue))
            .field("namespace", &self.namespace)
            .field("table_prefix", &self.table_prefix)
            .field("redis_prefix", &self.redis_prefix)
            .field("sweeper", &self.sweeper)
            .field("sweep_interval", &self.sweep_interval)
            .field("batch_size", &self.batch_size)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "otlp_endpoint",
                &self.otlp_endpoint.as_deref().map(crate::secret::redact),
            )
            .field("clock", &self.clock)
            .finish()
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| serde::de::Error::custom(format!("{secs} is not a valid number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut Config)) -> Result<()> {
        let mut config = Config::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn key_parts_cannot_collide() {
        // `qtask` + `a:b` and `qtask:a` + `b` would both give `qtask:a:b:{Q}`.
        assert!(with(|c| c.namespace = "a:b".into()).is_err());
        assert!(with(|c| c.redis_prefix = "qtask:a".into()).is_err());
        for bad in ["a{b", "a}b", "a b", "a\tb", "a\u{7}b", "", &"n".repeat(65)] {
            assert!(with(|c| c.namespace = bad.into()).is_err(), "namespace {bad:?}");
            assert!(
                with(|c| c.redis_prefix = bad.into()).is_err(),
                "redis_prefix {bad:?}"
            );
        }
        assert!(with(|c| c.namespace = "订单-app_1.v2".into()).is_ok());
        assert!(with(|c| c.redis_prefix = "qtask-test-x".into()).is_ok());
    }

    #[test]
    fn huge_durations_are_refused_not_panicked_on() {
        assert!(with(|c| c.sweep_interval = Duration::MAX).is_err());
        assert!(with(|c| c.connect_timeout = Duration::MAX).is_err());
        assert!(with(|c| c.retry_backoff_max = Duration::MAX).is_err());
        let err = Config::from_json(r#"{"sweep_interval": 1e19}"#).unwrap_err();
        assert!(matches!(err, crate::Error::InvalidArgument(_)), "{err}");
        assert!(with(|c| c.sweep_interval = MAX_SETTING_DURATION).is_ok());
    }

    #[test]
    fn debug_hides_passwords() {
        let config = Config {
            db: "postgres://u:s3cret-db@h/db".into(),
            queue: "redis://:s3cret-q@h:6379/0".into(),
            otlp_endpoint: Some("http://u:s3cret-otlp@collector:4318".into()),
            ..Config::default()
        };
        let text = format!("{config:?}");
        assert!(text.contains("http://u:***@collector:4318"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://u:***@h/db"), "{text}");
    }
}
