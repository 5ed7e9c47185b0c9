//! Shared test harness: the database matrix, unique tables, child processes.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use qtask_core::sqlx::{AssertSqlSafe, Executor};
use qtask_core::{Client, Clock, Config, Error};

/// One database under test.
#[derive(Clone, Debug)]
pub struct Db {
    pub name: &'static str,
    pub url: String,
}

/// SQLite always; PostgreSQL and MariaDB when reachable. A missing server is a loud
/// skip on a user's machine and a failure in CI.
pub async fn databases() -> Vec<Db> {
    let sqlite = std::env::temp_dir().join(format!("qtask-test-{}.db", std::process::id()));
    let mut dbs = vec![Db {
        name: "sqlite",
        url: format!("sqlite://{}", sqlite.display()),
    }];
    for (name, var, default) in [
        (
            "postgres",
            "QTASK_TEST_PG_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        (
            "mariadb",
            "QTASK_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
    ] {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
        if reachable(&url).await {
            dbs.push(Db { name, url });
        } else if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} not reachable at {url} (CI=true: a missing server is a failure)");
        } else {
            eprintln!("SKIP: {name} not reachable at {url} (run scripts/services.sh)");
        }
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

/// A table prefix no other test or run uses.
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

/// A config on a fresh table of `db`, sweeper off, fast backoff, shared test clock.
pub fn config(db: &Db, prefix: &str, clock: &Clock) -> Config {
    Config {
        db: db.url.clone(),
        queue: "db".into(),
        table_prefix: prefix.into(),
        sweeper: false,
        retry_backoff: Duration::from_secs(1),
        retry_backoff_max: Duration::from_secs(8),
        clock: clock.clone(),
        ..Config::default()
    }
}

/// Opens and installs a client on a fresh table; the clock is shared with others.
pub async fn fresh(db: &Db) -> (Client, Clock) {
    fresh_at(db, &unique_prefix()).await
}

/// [`fresh`] on a table prefix the caller chose (to hand it to a child process).
pub async fn fresh_at(db: &Db, prefix: &str) -> (Client, Clock) {
    let clock = Clock::database();
    let client = Client::open(config(db, prefix, &clock)).await.expect("open");
    client.install().await.expect("install");
    (client, clock)
}

/// Drops the test's tables (tasks, queue settings, schedules) and closes the client.
pub async fn drop_table(client: &Client) {
    let task_table = client.store().table().to_string();
    let prefix = task_table.strip_suffix("task").unwrap_or(&task_table).to_string();
    for table in [task_table, format!("{prefix}queue"), format!("{prefix}schedule")] {
        let sql = format!("DROP TABLE IF EXISTS {table}");
        client
            .store()
            .pool()
            .execute(AssertSqlSafe(sql))
            .await
            .expect("drop table");
    }
    client.close().await;
}

pub fn is_invalid(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::InvalidArgument(_)))
}

/// Runs the ignored test `name` of this test binary as a child process with `env`.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// What follows `prefix` on each line a child printed it (libtest may print its own
/// "test name ... " before the child's first line).
pub fn lines_with(output: &str, prefix: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.find(prefix).map(|at| l[at + prefix.len()..].trim().to_string()))
        .collect()
}

/// The single Redis of `QTASK_TEST_REDIS_URL`, when it answers; a loud skip otherwise
/// (a failure with CI=true).
pub fn redis() -> Option<String> {
    let url = std::env::var("QTASK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let up = addr
        .parse()
        .map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
        .unwrap_or(false);
    if up {
        return Some(url);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("redis not reachable at {url} (CI=true: a missing server is a failure)");
    }
    eprintln!("SKIP: redis not reachable at {url} (run scripts/services.sh)");
    None
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
        let queue = if self.queue == "db" { "db" } else { "redis" };
        format!("{}+{queue}", self.db.name)
    }

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

/// A fresh table (and Redis key prefix) for one pair; sweeper off, shared test clock.
pub async fn fresh_pair(pair: &Pair) -> (Client, Clock) {
    let prefix = unique_prefix();
    let clock = Clock::database();
    let config = Config {
        queue: pair.queue.clone(),
        redis_prefix: format!("qtest_{prefix}"),
        ..config(&pair.db, &prefix, &clock)
    };
    let client = Client::open(config).await.expect("open");
    client.install().await.expect("install");
    (client, clock)
}
