//! Transports: how a dispatched task reaches a worker. The table stays the truth;
//! a queue may lose messages (Redis FLUSHALL) and the sweeper re-sends them.
//!
//! - `db`: the task table itself ([`DbQueue`]);
//! - `redis://host:6379/0`, `rediss://…?tls_ca=ca.pem`: one Redis ([`RedisQueue`]);
//! - `redis+cluster://host1:7000,host2:7001` (or `redis://host1:7000,redis://host2:7001`):
//!   a Redis Cluster, reached from any of the listed nodes (`rediss+cluster://…` with TLS).

mod db;
mod redis;
mod redis_tls;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use self::redis::{check_url, offers_key, RedisQueue};
pub use db::DbQueue;

use crate::config::{Config, DB_QUEUE};
use crate::error::{invalid, Error, Result};
use crate::store::{Offer, Store};
use crate::task::Message;

/// Offers that did not reach their queue, and why. Offers are idempotent, so the
/// caller withdraws these and the next sweep offers them again.
#[derive(Debug)]
pub struct OfferError {
    pub failed: Vec<i64>,
    pub error: Error,
}

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// True when the sweeper offers due tasks to this queue (Redis); false when workers
    /// claim due rows straight from the table (`db`).
    fn carries_offers(&self) -> bool;

    /// Puts offered tasks on their queues. A task already on its queue stays there once.
    async fn offer(&self, offers: &[Offer]) -> std::result::Result<(), OfferError>;

    /// Claims up to `max` tasks of `queue`, waiting up to `wait` for the first. Each
    /// returned message is an attempt that has begun. Cancelling `cancel` ends the
    /// wait at once, as if it ran out: a claim already running completes and its
    /// messages are returned, and nothing is claimed or taken off a queue after it.
    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>>;
}

/// Opens the queue a config names.
pub async fn connect(config: &Config, store: &Store) -> Result<Arc<dyn Queue>> {
    if config.queue == DB_QUEUE {
        return Ok(Arc::new(DbQueue::new(store.clone(), config)));
    }
    if crate::config::REDIS_SCHEMES
        .iter()
        .any(|scheme| config.queue.starts_with(scheme))
    {
        return Ok(Arc::new(RedisQueue::connect(config, store.clone()).await?));
    }
    Err(invalid(format!(
        "queue {:?} is not supported by this build",
        crate::secret::redact(&config.queue)
    )))
}
