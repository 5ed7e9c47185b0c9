//! Counts by queue and status, throughput and stats read in one go and kept: counting
//! a table of a million rows takes a second, so pages and scrapes read the kept copy
//! (refreshed in the background every 5 s, or every ten times as long as counting
//! takes, whichever is longer) and a write action marks it stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qtask_core::admin::{QueueSummary, RatePoint};
use qtask_core::{Client, Result, Stats};
use serde::Serialize;
use tokio::sync::{Mutex, RwLock};

/// Minutes of throughput kept (what the page draws).
pub const RATE_MINUTES: u32 = 60;
const MIN_REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
pub struct Counts {
    pub queues: Vec<QueueSummary>,
    pub rates: Vec<RatePoint>,
    pub stats: Stats,
    /// When they were read, Unix milliseconds (this host's clock).
    pub taken_at: i64,
    /// How long reading them took, in milliseconds.
    pub took_ms: u64,
}

#[derive(Default)]
pub struct Cache {
    current: RwLock<Option<Arc<Counts>>>,
    /// One reader at a time: concurrent page loads share one count.
    reading: Mutex<()>,
    stale: AtomicBool,
}

impl Cache {
    /// The kept counts, read now if there are none yet or they are stale.
    pub async fn get(&self, client: &Client) -> Result<Arc<Counts>> {
        if !self.stale.load(Ordering::SeqCst) {
            if let Some(counts) = self.current.read().await.clone() {
                return Ok(counts);
            }
        }
        self.refresh(client, false).await
    }

    /// A write action changed the counts: the next `get` reads them again.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Reads the counts (unless another caller just did, when `force` is false).
    async fn refresh(&self, client: &Client, force: bool) -> Result<Arc<Counts>> {
        let _reading = self.reading.lock().await;
        if !force && !self.stale.load(Ordering::SeqCst) {
            if let Some(counts) = self.current.read().await.clone() {
                return Ok(counts);
            }
        }
        self.stale.store(false, Ordering::SeqCst);
        let started = Instant::now();
        // One after the other: they scan the table; at once they would compete.
        let queues = client.queues().await?;
        let rates = client.rates(RATE_MINUTES).await?;
        let stats = client.stats().await?;
        let counts = Arc::new(Counts {
            queues,
            rates,
            stats,
            taken_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            took_ms: started.elapsed().as_millis() as u64,
        });
        *self.current.write().await = Some(counts.clone());
        Ok(counts)
    }

    /// Keeps the counts fresh until the process ends.
    pub fn spawn_refresher(self: &Arc<Self>, client: Client) {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let took = match cache.refresh(&client, true).await {
                    Ok(counts) => Duration::from_millis(counts.took_ms),
                    Err(err) => {
                        tracing::warn!(error = %err, "qtask dashboard: counting failed; retrying");
                        MIN_REFRESH
                    }
                };
                tokio::time::sleep(MIN_REFRESH.max(took * 10)).await;
            }
        });
    }
}
