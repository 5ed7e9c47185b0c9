//! The Redis queue: one sorted set of offered task ids per namespace and queue,
//! `{prefix}:{namespace}:{<queue>}:offers`. The braces are a hash tag, so in a Redis
//! Cluster every key of one queue lives in one slot. An offer is `ZADD NX` (scored by
//! the time of the first offer, then by id, so first in, first out, and a task is on
//! its queue at most once however often it is offered); a fetch pops up to N ids (`ZPOPMIN`, or
//! `BZMPOP … COUNT N` while the queue is empty; `BZPOPMIN` then `ZPOPMIN` before Redis 7)
//! and claims them in one statement.
//!
//! Redis only carries offers: the task table is the truth. An offer lost with Redis
//! (FLUSHALL, a restart without persistence, a killed connection, a worker that died
//! between pop and claim) is offered again by the sweeper once its offer times out;
//! that uses no attempt.
//!
//! Connections are opened lazily and replaced after a connection error, so a client
//! opened while Redis is down works as soon as Redis is back. Pushes share one
//! multiplexed connection; every concurrent blocking pop has a connection of its own
//! (a blocked connection would hold up every command queued behind it), taken from
//! a small pool of idle ones.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::{OfferError, Queue};
use crate::clock::deadline_after;
use crate::config::Config;
use crate::error::{invalid, Error, Result};
use crate::store::{redact, Offer, Store};
use crate::task::Message;

/// Longest wait for a TCP connection (and the handshake) to one Redis node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the reply to a push or a non-blocking pop.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A blocking pop whose reply is this much later than its own timeout is given up.
const BLOCKING_GRACE: Duration = Duration::from_secs(5);
/// How long a cancelled pop's reply is awaited before it is unblocked again.
const UNBLOCK_AGAIN: Duration = Duration::from_millis(20);
/// Idle blocking-pop connections kept for reuse; more are closed.
const MAX_IDLE: usize = 32;
/// After a failed connect, calls fail at once for this long (doubling up to the max),
/// so that creates do not each wait for a Redis that is down.
const FIRST_COOLDOWN: Duration = Duration::from_millis(100);
const MAX_COOLDOWN: Duration = Duration::from_secs(2);

/// The Redis key of one queue's offers (a sorted set of task ids).
pub fn offers_key(redis_prefix: &str, namespace: &str, queue: &str) -> String {
    format!("{redis_prefix}:{namespace}:{{{queue}}}:offers")
}

/// The queue behind `redis://`, `rediss://` and `redis+cluster://` URLs.
pub struct RedisQueue {
    target: Target,
    /// Shown in errors and logs, without a password.
    url: String,
    redis_prefix: String,
    namespace: String,
    store: Store,
    shared: Mutex<Shared>,
    idle: SyncMutex<Vec<BlockingConn>>,
    /// Cleared once Redis refuses BZMPOP (before Redis 7: "unknown command"; an ACL
    /// user without it: NOPERM).
    bzmpop: AtomicBool,
}

/// What a blocking pop took: members (task ids) and their scores.
type PopReply = Result<Vec<(String, f64)>, RedisError>;

/// A connection for blocking pops and, on a single Redis, its `CLIENT ID`, by which a
/// cancelled pop is unblocked from the shared connection (`CLIENT UNBLOCK`).
struct BlockingConn {
    conn: Conn,
    client_id: Option<i64>,
}

enum Target {
    Single(Box<redis::Client>),
    Cluster {
        /// Bounded response times, for pushes.
        commands: Box<ClusterClient>,
        /// No response timeout, for blocking pops (bounded by `BLOCKING_GRACE` instead).
        blocking: Box<ClusterClient>,
    },
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// The push connection and what is known about reaching Redis.
#[derive(Default)]
struct Shared {
    conn: Option<Conn>,
    /// Bumped whenever `conn` is replaced, so a late error drops only its own connection.
    generation: u64,
    down_until: Option<Instant>,
    cooldown: Duration,
    /// Why the last connect failed, repeated while calls fail fast.
    last_error: String,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &self.url)
            .field("cluster", &matches!(self.target, Target::Cluster { .. }))
            .field("redis_prefix", &self.redis_prefix)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Parses the URL and tries one connection. Redis being down is not an error here:
    /// it is logged, and every later call tries again.
    pub async fn connect(config: &Config, store: Store) -> Result<Self> {
        let url = redact(&config.queue);
        let target = Target::parse(&config.queue).map_err(|e| invalid(format!("queue URL {url:?}: {e}")))?;
        let queue = RedisQueue {
            target,
            url,
            redis_prefix: config.redis_prefix.clone(),
            namespace: config.namespace.clone(),
            store,
            shared: Mutex::default(),
            idle: SyncMutex::default(),
            bzmpop: AtomicBool::new(true),
        };
        if let Err(err) = queue.shared_conn().await {
            tracing::warn!(error = %err, url = %queue.url,
                "qtask: Redis unreachable at open; tasks are saved and dispatched once it is back");
        }
        Ok(queue)
    }

    fn key(&self, queue: &str) -> String {
        offers_key(&self.redis_prefix, &self.namespace, queue)
    }

    fn error(&self, err: RedisError) -> Error {
        Error::Queue(format!("redis {}: {err}", self.url))
    }

    /// Opens a new connection: for commands (bounded replies) or for blocking pops.
    async fn open(&self, blocking: bool) -> Result<Conn> {
        let connecting = async {
            match &self.target {
                Target::Single(client) => {
                    let response = if blocking { None } else { Some(RESPONSE_TIMEOUT) };
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(response);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Conn::Single)
                }
                Target::Cluster {
                    commands,
                    blocking: b,
                } => {
                    let client = if blocking { b } else { commands };
                    client.get_async_connection().await.map(Conn::Cluster)
                }
            }
        };
        // A cluster connects to every node; bound the whole, not each node.
        match timeout(CONNECT_TIMEOUT * 3, connecting).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(Error::Queue(format!(
                "redis {}: no connection within {:?}",
                self.url,
                CONNECT_TIMEOUT * 3
            ))),
        }
    }

    /// The shared connection for pushes, opened on first use and after a failure.
    async fn shared_conn(&self) -> Result<(Conn, u64)> {
        let mut shared = self.shared.lock().await;
        if let Some(conn) = &shared.conn {
            return Ok((conn.clone(), shared.generation));
        }
        if let Some(until) = shared.down_until {
            if Instant::now() < until {
                return Err(Error::Queue(format!(
                    "redis {} is unreachable ({}); retrying shortly",
                    self.url, shared.last_error
                )));
            }
        }
        match self.open(false).await {
            Ok(conn) => {
                shared.conn = Some(conn.clone());
                shared.generation += 1;
                shared.down_until = None;
                shared.cooldown = Duration::ZERO;
                if shared.generation > 1 {
                    tracing::info!(url = %self.url, "qtask: reconnected to Redis");
                }
                Ok((conn, shared.generation))
            }
            Err(err) => {
                shared.last_error = err.to_string();
                shared.cooldown = (shared.cooldown * 2).clamp(FIRST_COOLDOWN, MAX_COOLDOWN);
                shared.down_until = Some(Instant::now() + shared.cooldown);
                Err(err)
            }
        }
    }

    /// Forgets the shared connection after an error that may have broken it.
    async fn shared_failed(&self, generation: u64, err: &RedisError) {
        if breaks_connection(err) {
            let mut shared = self.shared.lock().await;
            if shared.generation == generation {
                shared.conn = None;
            }
        }
    }

    /// A new connection for blocking pops, with its client id on a single Redis (a
    /// cluster connection reaches several nodes: it has none).
    async fn open_blocking(&self) -> Result<BlockingConn> {
        let conn = self.open(true).await?;
        let client_id = match &conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                let id: Result<i64, RedisError> = redis::cmd("CLIENT").arg("ID").query_async(&mut c).await;
                id.ok()
            }
            Conn::Cluster(_) => None,
        };
        Ok(BlockingConn { conn, client_id })
    }

    fn take_idle(&self) -> Option<BlockingConn> {
        self.idle.lock().ok()?.pop()
    }

    fn put_idle(&self, conn: BlockingConn) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// How many tasks a limited queue may take, polling until `until` while it is none:
    /// ids popped beyond it would only be withdrawn again.
    async fn room(
        &self,
        queue: &str,
        max: usize,
        until: Instant,
        cancel: &CancellationToken,
    ) -> Result<usize> {
        let mut pause = Duration::from_millis(5);
        loop {
            let room = self.store.room(queue, max as i64).await?;
            let left = until.saturating_duration_since(Instant::now());
            if room > 0 || left.is_zero() {
                return Ok(usize::try_from(room).unwrap_or(0));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left)) => {}
                _ = cancel.cancelled() => return Ok(0),
            }
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Up to `max` ids, without waiting (ZPOPMIN on the shared connection).
    async fn take_now(&self, key: &str, max: usize) -> Result<Vec<String>> {
        let (mut conn, generation) = self.shared_conn().await?;
        let mut cmd = redis::cmd("ZPOPMIN");
        cmd.arg(key).arg(max.max(1));
        let result: Result<Vec<(String, f64)>, RedisError> = conn.query(&cmd).await;
        match result {
            Ok(popped) => Ok(popped.into_iter().map(|(id, _)| id).collect()),
            Err(err) => {
                self.shared_failed(generation, &err).await;
                Err(self.error(err))
            }
        }
    }

    /// Up to `max` ids, waiting at most `wait` (at least 1 ms) for the first on a
    /// connection of its own, or until `cancel`. One round trip on Redis 7 (BZMPOP);
    /// before it, BZPOPMIN and then ZPOPMIN for the rest. An idle connection found
    /// broken (Redis restarted, connections killed) is replaced once.
    async fn take_blocking(
        &self,
        key: &str,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>> {
        let until = deadline_after(wait);
        let (blocking, mut reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => (self.open_blocking().await?, false),
        };
        let BlockingConn {
            mut conn,
            mut client_id,
        } = blocking;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            // Redis 6+ takes fractional seconds; 0 would mean "forever".
            let secs = left.as_millis().max(1) as f64 / 1000.0;
            let many = max > 1 && self.bzmpop.load(Ordering::Relaxed);
            let reply = async move {
                let result = blocking_pop(&mut conn, key, secs, many.then_some(max)).await;
                (conn, result)
            };
            let limit = left + BLOCKING_GRACE;
            let mut reply = Box::pin(timeout(limit, reply));
            let replied = tokio::select! {
                replied = &mut reply => replied,
                _ = cancel.cancelled() => {
                    self.cancel_blocking(key, client_id, reply).await;
                    return Ok(Vec::new());
                }
            };
            match replied {
                Ok((conn, Ok(popped))) => {
                    self.put_idle(BlockingConn { conn, client_id });
                    let mut ids: Vec<String> = popped.into_iter().map(|(id, _)| id).collect();
                    // BZPOPMIN took one; those offered with it come along.
                    if !many && !ids.is_empty() && max > 1 {
                        ids.extend(self.take_now(key, max - 1).await?);
                    }
                    return Ok(ids);
                }
                Ok((back, Err(err))) if many && refuses_command(&err) => {
                    tracing::debug!(url = %self.url, error = %err, "qtask: Redis refuses BZMPOP; popping with BZPOPMIN");
                    self.bzmpop.store(false, Ordering::Relaxed);
                    conn = back;
                }
                Ok((broken, Err(err))) if breaks_connection(&err) => {
                    drop(broken);
                    // Its idle siblings most likely went the same way.
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.clear();
                    }
                    if !reused {
                        return Err(self.error(err));
                    }
                    BlockingConn { conn, client_id } = self.open_blocking().await?;
                    reused = false;
                }
                Ok((conn, Err(err))) => {
                    self.put_idle(BlockingConn { conn, client_id });
                    return Err(self.error(err));
                }
                // The connection went with the future; an id it may have taken is
                // offered again by the sweeper after the offer's timeout.
                Err(_) => {
                    return Err(Error::Queue(format!(
                        "redis {}: no reply to a blocking pop within {limit:?}",
                        self.url
                    )))
                }
            }
        }
    }

    /// Ends a blocking pop its caller cancelled, leaving every offer on its queue. On a
    /// single Redis the pop is unblocked from the shared connection and its reply read:
    /// an id it took meanwhile goes back with its score, and the connection stays
    /// usable. Otherwise (a cluster, or the unblock failed) the connection is dropped,
    /// which ends the pop on the server; an id taken in that instant is offered again
    /// by the sweeper once its offer times out.
    async fn cancel_blocking<F>(&self, key: &str, client_id: Option<i64>, mut reply: std::pin::Pin<Box<F>>)
    where
        F: std::future::Future<Output = std::result::Result<(Conn, PopReply), tokio::time::error::Elapsed>>,
    {
        let Some(client_id) = client_id else { return };
        let Ok((Conn::Single(mut shared), generation)) = self.shared_conn().await else {
            return;
        };
        // The pop may not be blocked yet (its command still on the way): unblock again
        // until it replies.
        let give_up = Instant::now() + RESPONSE_TIMEOUT;
        let replied = loop {
            let unblocked: Result<i64, RedisError> = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(client_id)
                .query_async(&mut shared)
                .await;
            if let Err(err) = unblocked {
                self.shared_failed(generation, &err).await;
                return;
            }
            match timeout(UNBLOCK_AGAIN, &mut reply).await {
                Ok(replied) => break replied,
                Err(_) if Instant::now() < give_up => continue,
                Err(_) => return,
            }
        };
        let Ok((conn, Ok(popped))) = replied else {
            return;
        };
        self.put_idle(BlockingConn {
            conn,
            client_id: Some(client_id),
        });
        if !popped.is_empty() {
            let mut put_back = redis::cmd("ZADD");
            put_back.arg(key).arg("NX");
            for (id, score) in &popped {
                put_back.arg(score).arg(id);
            }
            if let Err(err) = put_back.query_async::<()>(&mut shared).await {
                tracing::debug!(error = %err, count = popped.len(),
                    "qtask: offers taken by a cancelled pop wait for the sweeper");
                self.shared_failed(generation, &err).await;
            }
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn carries_offers(&self) -> bool {
        true
    }

    async fn offer(&self, offers: &[Offer]) -> std::result::Result<(), OfferError> {
        if offers.is_empty() {
            return Ok(());
        }
        let now = unix_ms();
        // One ZADD per queue, in the order given.
        let mut groups: Vec<(&str, Vec<&Offer>)> = Vec::new();
        for offer in offers {
            match groups.iter_mut().find(|(q, _)| *q == offer.queue) {
                Some((_, group)) => group.push(offer),
                None => groups.push((&offer.queue, vec![offer])),
            }
        }
        let all_failed = |error| OfferError {
            failed: offers.iter().map(|o| o.task_id).collect(),
            error,
        };
        let (conn, generation) = self.shared_conn().await.map_err(all_failed)?;
        // Scored by when each became due, so that equal priorities pop earliest due first.
        let zadd = |queue: &str, group: &[&Offer]| {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(self.key(queue)).arg("NX");
            for offer in group {
                cmd.arg(score(now - offer.overdue_ms.max(0), offer.priority))
                    .arg(member(offer.task_id));
            }
            cmd
        };
        match conn {
            Conn::Single(mut c) => {
                // One round trip. Offers are idempotent: after an error every offer of
                // the batch is withdrawn and made again, and ZADD NX keeps one copy.
                let mut pipe = redis::pipe();
                for (queue, ids) in &groups {
                    pipe.add_command(zadd(queue, ids)).ignore();
                }
                if let Err(err) = pipe.query_async::<()>(&mut c).await {
                    self.shared_failed(generation, &err).await;
                    return Err(all_failed(self.error(err)));
                }
                Ok(())
            }
            Conn::Cluster(mut c) => {
                // Queues may live on different nodes: one command each, and only the
                // queues that failed are withdrawn.
                let mut failed = Vec::new();
                let mut first_error = None;
                for (queue, group) in &groups {
                    if let Err(err) = zadd(queue, group).query_async::<()>(&mut c).await {
                        failed.extend(group.iter().map(|o| o.task_id));
                        first_error.get_or_insert(err);
                    }
                }
                match first_error {
                    None => Ok(()),
                    Some(err) => {
                        self.shared_failed(generation, &err).await;
                        Err(OfferError {
                            failed,
                            error: self.error(err),
                        })
                    }
                }
            }
        }
    }

    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>> {
        let key = self.key(queue);
        let until = deadline_after(wait);
        loop {
            let max = match self.store.is_limited(queue) {
                true => self.room(queue, max, until, cancel).await?,
                false => max,
            };
            if max == 0 || cancel.is_cancelled() {
                return Ok(Vec::new());
            }
            let mut ids = self.take_now(&key, max).await?;
            if ids.is_empty() {
                let left = until.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) {
                    return Ok(Vec::new());
                }
                ids = self.take_blocking(&key, max, left, cancel).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
            }
            let ids: Vec<i64> = ids
                .iter()
                .filter_map(|text| match text.parse() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        // Not ours (written by hand, or by something sharing the prefix).
                        tracing::warn!(key = %key, member = %text, "qtask: dropped an unreadable offer");
                        None
                    }
                })
                .collect();
            // Ids no longer offered (a second copy, an ended task) are skipped here.
            let messages = if self.store.is_limited(queue) {
                // Ids refused for the queue's limits are offered again by the next sweep.
                let (messages, refused) = self.store.claim_offered_limited(queue, &ids).await?;
                self.store.withdraw(&refused).await?;
                messages
            } else {
                self.store.claim_offered(&ids).await?
            };
            if !messages.is_empty() || Instant::now() >= until {
                return Ok(messages);
            }
        }
    }
}

/// A task id as a sorted-set member: zero-padded, so offers made in the same
/// millisecond (same score) come out in id order, which is creation order.
fn member(id: i64) -> String {
    format!("{id:019}")
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An offer's score: lower pops first. Each priority step outweighs any offer time
/// (2^42 ms is 139 years), and with priorities within ±1000 every score is an integer
/// below 2^53, exact in a double.
fn score(unix_ms: i64, priority: i64) -> f64 {
    const STEP: i64 = 1 << 42;
    (unix_ms - priority * STEP) as f64
}

/// One blocking pop on `conn`: BZMPOP of up to `many` members, or BZPOPMIN of one.
async fn blocking_pop(conn: &mut Conn, key: &str, secs: f64, many: Option<usize>) -> PopReply {
    match many {
        Some(count) => {
            let mut cmd = redis::cmd("BZMPOP");
            cmd.arg(secs).arg(1).arg(key).arg("MIN").arg("COUNT").arg(count);
            // The key, then [member, score] pairs; nil after the timeout.
            let reply: Option<(String, Vec<(String, f64)>)> = conn.query(&cmd).await?;
            Ok(reply.map(|(_, popped)| popped).unwrap_or_default())
        }
        None => {
            let mut cmd = redis::cmd("BZPOPMIN");
            cmd.arg(key).arg(secs);
            // The key, the member and its score; nil after the timeout.
            let reply: Option<(String, String, f64)> = conn.query(&cmd).await?;
            Ok(reply.map(|(_, id, score)| vec![(id, score)]).unwrap_or_default())
        }
    }
}

/// Redis refused a command: it does not know it (BZMPOP before Redis 7, or renamed
/// away), or the ACL user may not run it (NOPERM: a user whose commands were listed
/// one by one, BZPOPMIN among them).
fn refuses_command(err: &RedisError) -> bool {
    matches!(err.kind(), ErrorKind::Server(_))
        && match err.code() {
            Some("ERR") => err.detail().is_some_and(|d| d.starts_with("unknown command")),
            Some("NOPERM") => true,
            _ => false,
        }
}

/// Whether an error may have left the connection unusable (anything but a plain
/// error reply from the server).
fn breaks_connection(err: &RedisError) -> bool {
    !matches!(err.kind(), ErrorKind::Server(_)) || err.is_cluster_error()
}

/// Parses a Redis queue URL as `open` does, without connecting; for the fuzz targets.
#[doc(hidden)]
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    Target::parse(url).map(drop)
}

impl Target {
    fn parse(url: &str) -> std::result::Result<Target, String> {
        let (url, certificates) = super::redis_tls::take_tls_ca(url)?;
        let url = url.as_str();
        if certificates.is_some() && !url.starts_with("rediss") {
            return Err("tls_ca= needs a rediss:// URL".into());
        }
        let nodes: Vec<String> = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            cluster_nodes("redis", rest)?
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            cluster_nodes("rediss", rest)?
        } else if url.contains(',') {
            // A list of node URLs: `redis://h1:7000,redis://h2:7001`.
            url.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| {
                    if u.contains("://") {
                        u.to_string()
                    } else {
                        format!("redis://{u}")
                    }
                })
                .collect()
        } else {
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(url, certificates),
                None => redis::Client::open(url),
            };
            return Ok(Target::Single(Box::new(client.map_err(|e| e.to_string())?)));
        };
        if nodes.is_empty() {
            return Err("a cluster needs at least one node".into());
        }
        let builder = || {
            let builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                .connection_timeout(CONNECT_TIMEOUT)
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(1000);
            match &certificates {
                Some(certificates) => builder.certs(certificates.clone()),
                None => builder,
            }
        };
        let commands = builder()
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(RESPONSE_TIMEOUT * 2))
            .build()
            .map_err(|e| e.to_string())?;
        let blocking = builder()
            .overall_response_timeout(None)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Target::Cluster {
            commands: Box::new(commands),
            blocking: Box::new(blocking),
        })
    }
}

/// `[user:password@]host1:port1,host2:port2[/]` to one `{scheme}://` URL per node.
fn cluster_nodes(scheme: &str, rest: &str) -> std::result::Result<Vec<String>, String> {
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (auth, hosts) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let (hosts, path) = match hosts.split_once('/') {
        Some((hosts, path)) => (hosts, path),
        None => (hosts, ""),
    };
    if !matches!(path, "" | "0") {
        return Err("a cluster has only database 0".into());
    }
    let mut nodes = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let mut node = format!("{scheme}://{auth}{host}");
        if let Some(query) = query {
            node.push('?');
            node.push_str(query);
        }
        nodes.push(node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_scores_lower_whenever_offered() {
        let (now, later) = (1_800_000_000_000, 4_000_000_000_000);
        assert!(score(later, 1) < score(now, 0));
        assert!(score(later, -999) < score(now, -1000));
        assert!(score(now, 0) < score(later, 0));
        let max = i64::from(crate::task::MAX_PRIORITY);
        assert!(score(later, -max).abs() < 2f64.powi(53));
        assert!(score(0, max).abs() < 2f64.powi(53));
    }

    #[test]
    fn keys_share_the_queue_hash_tag() {
        assert_eq!(
            offers_key("qtask", "default", "ORDER:BIND"),
            "qtask:default:{ORDER:BIND}:offers"
        );
    }

    #[test]
    fn cluster_urls() {
        assert_eq!(
            cluster_nodes("redis", "u:p@h1:7000,h2:7001/").unwrap(),
            ["redis://u:p@h1:7000", "redis://u:p@h2:7001"]
        );
        assert_eq!(cluster_nodes("redis", "h1:7000").unwrap(), ["redis://h1:7000"]);
        assert_eq!(cluster_nodes("rediss", "h1:7000").unwrap(), ["rediss://h1:7000"]);
        assert!(cluster_nodes("redis", "h1:7000/3").is_err());
        assert!(matches!(
            Target::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
            Ok(Target::Cluster { .. })
        ));
        assert!(matches!(
            Target::parse("redis://a:1,redis://b:2"),
            Ok(Target::Cluster { .. })
        ));
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/2"),
            Ok(Target::Single(_))
        ));
        assert!(Target::parse("redis://127.0.0.1:notaport").is_err());
        // TLS (rustls): system roots, a CA file, or `#insecure`.
        assert!(matches!(
            Target::parse("rediss://127.0.0.1:6380"),
            Ok(Target::Single(_))
        ));
        assert!(matches!(
            Target::parse("rediss://127.0.0.1:6380/#insecure"),
            Ok(Target::Single(_))
        ));
        assert!(matches!(
            Target::parse("rediss+cluster://127.0.0.1:7100,127.0.0.1:7101"),
            Ok(Target::Cluster { .. })
        ));
        // A CA file that is missing, or one given for a plain connection, is refused at open.
        assert!(Target::parse("rediss://127.0.0.1:6380/?tls_ca=/no/such/ca.pem").is_err());
        assert!(Target::parse("redis://127.0.0.1:6379/?tls_ca=/etc/hostname").is_err());
    }
}
