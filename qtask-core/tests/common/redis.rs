//! Redis for the tests: the shared single Redis and cluster's URLs, direct access to
//! a queue's keys to inspect or break them, and [`Setup`], one Redis test's world.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster_async::ClusterConnection;
use qtask_core::queue::offers_key;
use qtask_core::{Client, Clock, Config};

use super::{database, drop_table, env_or, fresh_table, skip, unique_prefix, DbKind};

const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379/";
const CLUSTER_DEFAULT: &str = "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002";

/// The single Redis of `QTASK_TEST_REDIS_URL` when it answers; None after a SKIP line
/// (a failure with CI=true).
pub fn redis() -> Option<String> {
    let url = env_or("QTASK_TEST_REDIS_URL", REDIS_DEFAULT);
    let addr = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
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
    skip("redis", &url);
    None
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

pub(crate) async fn redis_conn(url: &str) -> Option<MultiplexedConnection> {
    let client = ::redis::Client::open(url).ok()?;
    let conn = tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()?;
    Some(conn)
}

async fn cluster_conn(urls: &str) -> Option<ClusterConnection> {
    let nodes: Vec<&str> = urls.split(',').map(str::trim).collect();
    let client = ::redis::cluster::ClusterClient::new(nodes).ok()?;
    let mut conn = tokio::time::timeout(Duration::from_secs(5), client.get_async_connection())
        .await
        .ok()?
        .ok()?;
    let ok: Option<String> = ::redis::cmd("PING").query_async(&mut conn).await.ok();
    ok.map(|_| conn)
}

/// Deletes every key under `prefix` on one node (SCAN + DEL: no FLUSHALL on shared
/// servers). Does nothing when the node does not answer.
pub async fn delete_prefix(node_url: &str, prefix: &str) {
    let Some(mut conn) = redis_conn(node_url).await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        for key in keys {
            let _: i64 = ::redis::cmd("DEL")
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

/// Direct access to the queue's Redis, to look at the offers or break them.
pub enum Inspect {
    Single(MultiplexedConnection),
    Cluster {
        conn: ClusterConnection,
        nodes: Vec<String>,
    },
}

impl Inspect {
    /// A connection to the Redis (or cluster) of `queue_url`; None after a SKIP line.
    pub async fn connect(queue_url: &str) -> Option<Inspect> {
        if queue_url.contains(',') {
            let Some(conn) = cluster_conn(queue_url).await else {
                skip("redis cluster", queue_url);
                return None;
            };
            let nodes = queue_url.split(',').map(|s| s.trim().to_string()).collect();
            Some(Inspect::Cluster { conn, nodes })
        } else {
            let Some(conn) = redis_conn(queue_url).await else {
                skip("redis", queue_url);
                return None;
            };
            Some(Inspect::Single(conn))
        }
    }
}

/// One Redis test's world: a fresh table on one database, a fresh Redis prefix, a
/// client, and direct access to its Redis.
pub struct Setup {
    pub kind: DbKind,
    pub client: Client,
    pub clock: Clock,
    pub config: Config,
    pub queue: String,
    pub redis: Inspect,
}

impl Setup {
    /// Opens a client with the Redis queue at `queue_url` on a fresh table of `kind`;
    /// None (after a SKIP line) when a server is unreachable.
    pub async fn new(kind: DbKind, queue_url: &str) -> Option<Setup> {
        Setup::with(kind, queue_url, |_| {}).await
    }

    pub async fn with(kind: DbKind, queue_url: &str, adjust: impl FnOnce(&mut Config)) -> Option<Setup> {
        let db = database(kind).await?;
        let redis = Inspect::connect(queue_url).await?;
        let (client, clock) = fresh_table(&db, &unique_prefix(), queue_url, adjust).await;
        Some(Setup {
            kind,
            config: client.config().clone(),
            client,
            clock,
            queue: "RQ:TEST".into(),
            redis,
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
        let mut cmd = ::redis::cmd("ZCARD");
        cmd.arg(key);
        self.query(cmd).await
    }

    /// The members of a queue's sorted set, oldest offer first.
    pub async fn offered(&mut self, queue: &str) -> Vec<String> {
        let key = self.key(queue);
        let mut cmd = ::redis::cmd("ZRANGE");
        cmd.arg(key).arg(0).arg(-1);
        self.query(cmd).await
    }

    /// Puts a member on a queue by hand (a stale copy, or something not ours).
    pub async fn offer_raw(&mut self, queue: &str, member: &str) {
        let key = self.key(queue);
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(key).arg(0).arg(member);
        let _: i64 = self.query(cmd).await;
    }

    async fn query<T: ::redis::FromRedisValue>(&mut self, cmd: ::redis::Cmd) -> T {
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
                let _: () = ::redis::cmd("FLUSHDB").query_async(conn).await.expect("flushdb");
            }
            Inspect::Cluster { nodes, .. } => {
                for node in nodes.iter() {
                    delete_prefix(node, &self.config.redis_prefix).await;
                }
            }
        }
    }

    /// Drops the tables, deletes the test's Redis keys, closes the client.
    pub async fn cleanup(self) {
        drop_table(&self.client).await;
    }
}

/// Puts a copy of `task_id`'s offer on `queue` by hand, as a stale duplicate left on
/// the client's single Redis would be.
pub async fn offer_copy(client: &Client, queue: &str, task_id: i64) {
    let config = client.config();
    let mut conn = redis_conn(&config.queue).await.expect("redis reachable");
    let key = offers_key(&config.redis_prefix, &config.namespace, queue);
    let _: i64 = ::redis::cmd("ZADD")
        .arg(key)
        .arg(0)
        .arg(format!("{task_id:019}"))
        .query_async(&mut conn)
        .await
        .expect("zadd");
}
