//! The `db` queue: the task table is the transport. A row becoming due is the offer; a
//! fetch claims up to N due rows of one queue in one statement (`FOR UPDATE SKIP
//! LOCKED`, or one UPDATE on SQLite). On PostgreSQL a task created due now wakes the
//! waiting fetchers (LISTEN/NOTIFY); polling, slowing down while the queue stays empty,
//! is the fallback and finds tasks that become due by time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::{OfferError, Queue};
use crate::clock::deadline_after;
use crate::config::Config;
use crate::error::Result;
use crate::store::{Dialect, Offer, Store};
use crate::task::Message;

/// Polls start fast and slow down to this while a queue stays empty.
const MAX_POLL: Duration = Duration::from_millis(200);
const FIRST_POLL: Duration = Duration::from_millis(5);

/// Pause before listening again after the notification connection failed.
const RELISTEN: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct DbQueue {
    store: Store,
    wake: Arc<Notify>,
    listener: Option<JoinHandle<()>>,
}

impl DbQueue {
    /// On PostgreSQL, starts listening for new tasks on the current tokio runtime.
    pub fn new(store: Store, config: &Config) -> Self {
        let wake = Arc::new(Notify::new());
        let listener = (store.dialect() == Dialect::Postgres)
            .then(|| tokio::spawn(listen(config.db.clone(), store.wake_channel(), wake.clone())));
        DbQueue {
            store,
            wake,
            listener,
        }
    }
}

impl Drop for DbQueue {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// Wakes every waiting fetcher on each notification; after a lost connection too,
/// since notifications sent meanwhile are gone.
async fn listen(url: String, channel: String, wake: Arc<Notify>) {
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if listener.listen(&channel).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        wake.notify_waiters();
                    }
                }
                wake.notify_waiters();
            }
            Err(err) => tracing::debug!(error = %err, "qtask: cannot listen for new tasks; polling"),
        }
        sleep(RELISTEN).await;
    }
}

#[async_trait]
impl Queue for DbQueue {
    fn carries_offers(&self) -> bool {
        false
    }

    async fn offer(&self, _offers: &[Offer]) -> std::result::Result<(), OfferError> {
        Ok(())
    }

    async fn fetch(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>> {
        let until = deadline_after(wait);
        let limit = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        let mut pause = FIRST_POLL;
        loop {
            if cancel.is_cancelled() {
                return Ok(Vec::new());
            }
            // Listen before claiming, so a task created in between is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let messages = self.store.claim_due(queue, limit).await?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(messages);
            }
            tokio::select! {
                _ = sleep(pause.min(until - now)) => pause = (pause * 2).min(MAX_POLL),
                _ = woken => pause = FIRST_POLL,
                // Only the wait is given up: a claim is never cut in half.
                _ = cancel.cancelled() => return Ok(Vec::new()),
            }
        }
    }
}
