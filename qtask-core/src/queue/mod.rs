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

pub use self::redis::{check_url, list_key, RedisQueue};
pub use db::DbQueue;

use crate::config::{Config, DB_QUEUE};
use crate::error::{invalid, Result};
use crate::store::Store;
use crate::task::Message;

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// True when workers read due tasks straight from the table (the `db` queue):
    /// nothing is pushed, a pop is the claim.
    fn reads_table(&self) -> bool;

    /// Puts claimed tasks on their queues. All or nothing as far as the caller knows:
    /// on error the caller takes the claims back.
    async fn push(&self, messages: &[Message]) -> Result<()>;

    /// Waits up to `wait` for one message of `queue`.
    async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Message>>;
}

/// Opens the queue a config names.
pub async fn connect(config: &Config, store: &Store) -> Result<Arc<dyn Queue>> {
    if config.queue == DB_QUEUE {
        return Ok(Arc::new(DbQueue::new(store.clone())));
    }
    if crate::config::REDIS_SCHEMES
        .iter()
        .any(|scheme| config.queue.starts_with(scheme))
    {
        return Ok(Arc::new(RedisQueue::connect(config).await?));
    }
    Err(invalid(format!(
        "queue {:?} is not supported by this build",
        crate::secret::redact(&config.queue)
    )))
}
