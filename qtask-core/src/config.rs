//! Configuration by URLs: in code, from JSON (C, Python) or the environment.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::clock::Clock;
use crate::error::{invalid, Result};

/// The embedded default: a SQLite file in the working directory.
pub const DEFAULT_DB_URL: &str = "sqlite://qtask.db";
/// The embedded default queue: the database itself carries the tasks.
pub const DB_QUEUE: &str = "db";

/// How a client reaches its database and queue, and how its sweeper behaves.
///
/// Deserializes from JSON with the same keys as the Python keywords; a key
/// that is not listed here is an error. Durations are seconds (fractions allowed).
#[derive(Clone, Debug, Deserialize)]
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
    /// Database connections in this client's pool.
    pub max_connections: u32,
    /// Seconds to wait for a database connection before failing (sqlx retries meanwhile).
    #[serde(deserialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Serve this process's metrics for Prometheus at `http://ADDR/metrics`, e.g.
    /// `127.0.0.1:9464` (telemetry.rs). None by default; one address per process.
    pub metrics_listen: Option<String>,
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
            clock: Clock::database(),
        }
    }
}

impl Config {
    /// The defaults, with `QTASK_DB_URL`, `QTASK_QUEUE_URL`, `QTASK_NAMESPACE` and
    /// `QTASK_METRICS_LISTEN` applied.
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
        config
    }

    /// Parses a JSON object over [`Config::from_env`]; NULL-ish input (`""`, `{}`) gives the defaults.
    pub fn from_json(text: &str) -> Result<Self> {
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
        let queue_ok = self.queue == DB_QUEUE
            || self.queue.starts_with("redis://")
            || self.queue.starts_with("rediss://")
            || self.queue.starts_with("redis+cluster://");
        if !queue_ok {
            return Err(invalid(format!(
                "queue must be \"db\" or a redis:// URL, got {:?}",
                self.queue
            )));
        }
        if self.namespace.is_empty() || self.namespace.len() > 64 {
            return Err(invalid("namespace must be 1 to 64 bytes"));
        }
        let identifier = |s: &str| s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !identifier(&self.table_prefix) {
            return Err(invalid("table_prefix must be up to 32 of [A-Za-z0-9_]"));
        }
        if self.redis_prefix.is_empty()
            || self.redis_prefix.len() > 64
            || self.redis_prefix.contains(['{', '}'])
        {
            return Err(invalid("redis_prefix must be 1 to 64 bytes without braces"));
        }
        if self.sweep_interval.is_zero() {
            return Err(invalid("sweep_interval must be positive"));
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
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout must be positive"));
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

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| serde::de::Error::custom(format!("{secs} is not a valid number of seconds")))
}
