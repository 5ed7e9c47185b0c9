//! The one test harness: the database matrix and database × queue pairs, unique names,
//! fresh tables, and (in the submodules) Redis access, private servers and child
//! processes. Every test file uses it as `mod common;`.
#![allow(dead_code)]

mod processes;
mod redis;
mod servers;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use qtask_core::{Client, Clock, Config, Error, Message};

// Each test file uses a part of the harness.
#[allow(unused_imports)]
pub use processes::{lines_with, spawn_child};
#[allow(unused_imports)]
pub use redis::{cluster_url, delete_prefix, offer_copy, redis, redis_url, Inspect, Setup};
#[allow(unused_imports)]
pub use servers::RedisServer;

/// The kinds of database qtask runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
    MariaDb,
}

impl DbKind {
    pub const ALL: [DbKind; 3] = [DbKind::Sqlite, DbKind::Postgres, DbKind::MariaDb];

    pub fn name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
            DbKind::MariaDb => "mariadb",
        }
    }

    /// A Redis database number of this kind's own, for tests that flush it.
    pub fn flush_db(self) -> u8 {
        match self {
            DbKind::Sqlite => 13,
            DbKind::Postgres => 14,
            DbKind::MariaDb => 15,
        }
    }

    /// The URL to test this kind on: SQLite in one file per test process; the servers
    /// from `QTASK_TEST_PG_URL` / `QTASK_TEST_MYSQL_URL` or the local defaults.
    fn url(self) -> String {
        match self {
            DbKind::Sqlite => {
                let file = std::env::temp_dir().join(format!("qtask-test-{}.db", std::process::id()));
                format!("sqlite://{}", file.display())
            }
            DbKind::Postgres => env_or("QTASK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test"),
            DbKind::MariaDb => env_or("QTASK_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        }
    }
}

/// One database under test.
#[derive(Clone, Debug)]
pub struct Db {
    pub name: &'static str,
    pub url: String,
}

pub(crate) fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A missing server: one loud SKIP line on a user's machine, a failure with CI=true.
pub fn skip(server: &str, url: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{server} not reachable at {url} (CI=true: a missing server is a failure)");
    }
    eprintln!("SKIP: {server} not reachable at {url} (run scripts/services.sh)");
}

/// The database of `kind`, or None after [`skip`] when its server does not answer.
pub async fn database(kind: DbKind) -> Option<Db> {
    let db = Db {
        name: kind.name(),
        url: kind.url(),
    };
    if kind == DbKind::Sqlite || reachable(&db.url).await {
        Some(db)
    } else {
        skip(db.name, &db.url);
        None
    }
}

/// SQLite always; PostgreSQL and MariaDB when reachable (see [`database`]).
pub async fn databases() -> Vec<Db> {
    let mut dbs = Vec::new();
    for kind in DbKind::ALL {
        dbs.extend(database(kind).await);
    }
    dbs
}

async fn reachable(url: &str) -> bool {
    let config = Config {
        db: url.into(),
        sweeper: false,
        max_connections: 1,
        ..Config::default()
    };
    match Client::open(config).await {
        Ok(client) => {
            client.close().await;
            true
        }
        Err(_) => false,
    }
}

/// A name no other test or run uses: `[a-z0-9_]`, ending in `_`, short enough for a
/// table prefix; also the base of the test's Redis key prefix.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{}_{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

/// A config on the table prefix `prefix` of `db`: `db` queue, sweeper off, fast
/// backoff, the given test clock.
pub fn config(db: &Db, prefix: &str, clock: &Clock) -> Config {
    Config {
        db: db.url.clone(),
        queue: "db".into(),
        table_prefix: prefix.into(),
        redis_prefix: format!("qtest_{}", prefix.trim_end_matches('_')),
        sweeper: false,
        retry_backoff: Duration::from_secs(1),
        retry_backoff_max: Duration::from_secs(8),
        clock: clock.clone(),
        ..Config::default()
    }
}

/// The one way to get a fresh table: opens a client of [`config`] with `queue`
/// (`db` or a Redis URL), lets `adjust` change the config, installs.
pub async fn fresh_table(
    db: &Db,
    prefix: &str,
    queue: &str,
    adjust: impl FnOnce(&mut Config),
) -> (Client, Clock) {
    let clock = Clock::database();
    let mut config = Config {
        queue: queue.into(),
        ..config(db, prefix, &clock)
    };
    adjust(&mut config);
    let client = Client::open(config)
        .await
        .unwrap_or_else(|e| panic!("open on {}: {e}", db.name));
    client.install().await.expect("install");
    (client, clock)
}

/// A client with the `db` queue on a fresh table; its own test clock.
pub async fn fresh(db: &Db) -> (Client, Clock) {
    fresh_at(db, &unique_prefix()).await
}

/// [`fresh`] on a table prefix the caller chose (to hand it to a child process).
pub async fn fresh_at(db: &Db, prefix: &str) -> (Client, Clock) {
    fresh_table(db, prefix, "db", |_| {}).await
}

/// Drops the test's tables (tasks, queue settings, schedules), closes the client and,
/// when Redis carries its offers, deletes its Redis keys.
pub async fn drop_table(client: &Client) {
    client.store().drop_tables().await.expect("drop tables");
    client.close().await;
    let config = client.config();
    if config.queue != "db" {
        for node in config.queue.split(',') {
            delete_prefix(node.trim(), &config.redis_prefix).await;
        }
    }
}

pub fn is_invalid(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument(_)))
}

/// One database × queue pair under test.
#[derive(Clone, Debug)]
pub struct Pair {
    pub db: Db,
    /// `db`, or a Redis URL.
    pub queue: String,
}

impl Pair {
    pub fn name(&self) -> String {
        let queue = if self.carries_offers() { "redis" } else { "db" };
        format!("{}+{queue}", self.db.name)
    }

    /// Whether a queue outside the database carries the offers (Redis): a task is
    /// offered there by a create or a sweep, and only an offer can be popped.
    pub fn carries_offers(&self) -> bool {
        self.queue != "db"
    }
}

/// Every database (see [`databases`]) with the `db` queue and with Redis.
pub async fn pairs() -> Vec<Pair> {
    let redis = redis();
    let mut out = Vec::new();
    for db in databases().await {
        out.push(Pair {
            db: db.clone(),
            queue: "db".into(),
        });
        if let Some(url) = &redis {
            out.push(Pair {
                db,
                queue: url.clone(),
            });
        }
    }
    out
}

/// A fresh table (and Redis key prefix) for one pair; sweeper off, its own test clock.
pub async fn fresh_pair(pair: &Pair) -> (Client, Clock) {
    fresh_table(&pair.db, &unique_prefix(), &pair.queue, |_| {}).await
}

/// Sweeps, then pops the next message of `queue`, waiting up to 2 s (on Redis only a
/// sweep offers what became due; InnoDB's SKIP LOCKED may pass over a row for a moment
/// right after another transaction committed it).
pub async fn next(client: &Client, queue: &str) -> Message {
    client.sweep_once().await.unwrap();
    client
        .pop(queue, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("a message")
}

/// Pops the next due message of `queue`, if any within `wait`; where the pair's queue
/// carries offers (Redis), a sweep first offers what became due.
pub async fn pop_due(pair: &Pair, client: &Client, queue: &str, wait: Duration) -> Option<Message> {
    if pair.carries_offers() {
        client.sweep_once().await.unwrap();
    }
    client.pop(queue, wait).await.unwrap()
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after 10 s.
pub async fn eventually<F, Fut>(what: impl std::fmt::Display, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reached in 10 s: {what}");
}
