//! Helpers of the Redis queue tests: the database matrix, a fresh table and Redis
//! prefix per test, direct Redis access to inspect or break the queue, and private
//! `redis-server` processes to stop and start.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use qtask_core::queue::offers_key;
use qtask_core::sqlx::{self, AssertSqlSafe};
use qtask_core::{Client, Clock, Config};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";
pub const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379/";
pub const CLUSTER_DEFAULT: &str = "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
    MariaDb,
}

impl DbKind {
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
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A missing server: one loud line on a user's machine, a failure in CI.
pub fn skip(server: &str, url: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{server} not reachable at {url} (CI=true: a missing server is a failure)");
    }
    eprintln!("SKIP: {server} not reachable at {url}");
}

/// A name no other test or run uses: `[a-z0-9_]`, short enough for a table prefix.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}{}_{}_{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 10_000
    )
}

/// The shared single Redis, database `n`.
pub fn redis_url(n: u8) -> String {
    let base = env_or("QTASK_TEST_REDIS_URL", REDIS_DEFAULT);
    let (scheme, rest) = base.split_once("://").unwrap_or(("redis", base.as_str()));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{n}")
}

/// The shared cluster's node URLs, comma-separated (a queue URL qtask accepts as is).
pub fn cluster_url() -> String {
    env_or("QTASK_TEST_REDIS_CLUSTER_URLS", CLUSTER_DEFAULT)
}

async fn redis_conn(url: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(url).ok()?;
    let conn = tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()?;
    Some(conn)
}

async fn cluster_conn(urls: &str) -> Option<ClusterConnection> {
    let nodes: Vec<&str> = urls.split(',').map(str::trim).collect();
    let client = redis::cluster::ClusterClient::new(nodes).ok()?;
    let mut conn = tokio::time::timeout(Duration::from_secs(5), client.get_async_connection())
        .await
        .ok()?
        .ok()?;
    let ok: Option<String> = redis::cmd("PING").query_async(&mut conn).await.ok();
    ok.map(|_| conn)
}

/// Direct access to the queue's Redis, to look at the lists or break them.
pub enum Inspect {
    Single(MultiplexedConnection),
    Cluster {
        conn: ClusterConnection,
        nodes: Vec<String>,
    },
}

/// One test's world: a fresh table on one database, a fresh Redis prefix, a client.
pub struct Setup {
    pub kind: DbKind,
    pub client: Client,
    pub clock: Clock,
    pub config: Config,
    pub queue: String,
    pub redis: Inspect,
    sqlite_file: Option<PathBuf>,
}

impl Setup {
    /// Opens a client with the Redis queue at `queue_url` on a fresh table of `kind`;
    /// None (after a SKIP line) when a server is unreachable.
    pub async fn new(kind: DbKind, queue_url: &str) -> Option<Setup> {
        Setup::with(kind, queue_url, |_| {}).await
    }

    pub async fn with(kind: DbKind, queue_url: &str, adjust: impl FnOnce(&mut Config)) -> Option<Setup> {
        let name = unique("rq");
        let (db, sqlite_file) = match kind {
            DbKind::Sqlite => {
                let file = std::env::temp_dir().join(format!("qtask-{name}.db"));
                (format!("sqlite://{}", file.display()), Some(file))
            }
            DbKind::Postgres => (env_or("QTASK_TEST_PG_URL", PG_DEFAULT), None),
            DbKind::MariaDb => (env_or("QTASK_TEST_MYSQL_URL", MYSQL_DEFAULT), None),
        };
        let redis = if queue_url.contains(',') {
            let conn = match cluster_conn(queue_url).await {
                Some(conn) => conn,
                None => {
                    skip("redis cluster", queue_url);
                    return None;
                }
            };
            let nodes = queue_url.split(',').map(|s| s.trim().to_string()).collect();
            Inspect::Cluster { conn, nodes }
        } else {
            match redis_conn(queue_url).await {
                Some(conn) => Inspect::Single(conn),
                None => {
                    skip("redis", queue_url);
                    return None;
                }
            }
        };
        let clock = Clock::database();
        let mut config = Config {
            db: db.clone(),
            queue: queue_url.to_string(),
            table_prefix: format!("{name}_"),
            redis_prefix: format!("qtask-test-{name}"),
            sweeper: false,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(8),
            clock: clock.clone(),
            ..Config::default()
        };
        adjust(&mut config);
        let client = match Client::open(config.clone()).await {
            Ok(client) => client,
            Err(qtask_core::Error::Database(err)) if kind != DbKind::Sqlite => {
                skip(kind.name(), &format!("{db} ({err})"));
                return None;
            }
            Err(err) => panic!("open on {}: {err}", kind.name()),
        };
        client.install().await.expect("install");
        Some(Setup {
            kind,
            client,
            clock,
            config,
            queue: "RQ:TEST".into(),
            redis,
            sqlite_file,
        })
    }

    /// Another client on the same table, Redis and clock (another process, as far as
    /// qtask knows).
    pub async fn another_client(&self) -> Client {
        Client::open(self.config.clone())
            .await
            .expect("open another client")
    }

    pub fn key(&self, queue: &str) -> String {
        offers_key(&self.config.redis_prefix, &self.config.namespace, queue)
    }

    /// Offers on a queue's sorted set.
    pub async fn queued(&mut self, queue: &str) -> i64 {
        let key = self.key(queue);
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(key);
        self.query(cmd).await
    }

    /// The members of a queue's sorted set, oldest offer first.
    pub async fn offered(&mut self, queue: &str) -> Vec<String> {
        let key = self.key(queue);
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(key).arg(0).arg(-1);
        self.query(cmd).await
    }

    /// Puts a member on a queue by hand (a stale copy, or something not ours).
    pub async fn offer_raw(&mut self, queue: &str, member: &str) {
        let key = self.key(queue);
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(key).arg(0).arg(member);
        let _: i64 = self.query(cmd).await;
    }

    async fn query<T: redis::FromRedisValue>(&mut self, cmd: redis::Cmd) -> T {
        match &mut self.redis {
            Inspect::Single(conn) => cmd.query_async(conn).await.expect("redis"),
            Inspect::Cluster { conn, .. } => cmd.query_async(conn).await.expect("redis cluster"),
        }
    }

    /// Redis loses everything qtask had: FLUSHDB of the test's own database number on
    /// a single Redis; on the shared cluster, every key of this test's prefix on every
    /// node (the same fault for qtask, without harming other tests).
    pub async fn flush(&mut self) {
        match &mut self.redis {
            Inspect::Single(conn) => {
                let _: () = redis::cmd("FLUSHDB").query_async(conn).await.expect("flushdb");
            }
            Inspect::Cluster { nodes, .. } => {
                for node in nodes.iter() {
                    delete_prefix(node, &self.config.redis_prefix).await;
                }
            }
        }
    }

    /// Drops the table (or the SQLite file), deletes the test's Redis keys, closes.
    pub async fn cleanup(self) {
        let table = self.config.task_table();
        if self.sqlite_file.is_none() {
            let sql = format!("DROP TABLE IF EXISTS {table}");
            let _ = sqlx::query(AssertSqlSafe(sql))
                .execute(self.client.store().pool())
                .await;
        }
        self.client.close().await;
        match &self.redis {
            Inspect::Single(_) => delete_prefix(&self.config.queue, &self.config.redis_prefix).await,
            Inspect::Cluster { nodes, .. } => {
                for node in nodes {
                    delete_prefix(node, &self.config.redis_prefix).await;
                }
            }
        }
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Deletes every key under `prefix` on one node (SCAN + DEL: no FLUSHALL on shared servers).
pub async fn delete_prefix(node_url: &str, prefix: &str) {
    let Some(mut conn) = redis_conn(node_url).await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        for key in keys {
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// A `redis-server` of this test alone, on a free loopback port, keeping nothing on
/// disk, so that it can be stopped, started and have its clients killed.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// None (after a SKIP line) when `redis-server` cannot be run here.
    pub async fn start() -> Option<RedisServer> {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer { port, child: None };
        if let Err(err) = server.spawn().await {
            skip("redis-server (private)", &format!("{} ({err})", server.url()));
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Some(mut conn) = redis_conn(&self.url()).await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("redis-server did not answer within 5 s".into())
    }

    /// Kills the server (SIGKILL): every key and connection is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await.expect("restart redis-server");
    }

    /// A connection to run commands on the server.
    pub async fn conn(&self) -> MultiplexedConnection {
        redis_conn(&self.url())
            .await
            .expect("private redis-server reachable")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
