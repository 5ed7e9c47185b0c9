//! The `db` queue: the task table is the transport. A row becoming due is the offer; a
//! fetch claims up to N due rows of one queue in one statement (`FOR UPDATE SKIP
//! LOCKED`, or one UPDATE on SQLite).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{sleep, Instant};

use super::{OfferError, Queue};
use crate::clock::deadline_after;
use crate::error::Result;
use crate::store::{Offer, Store};
use crate::task::Message;

/// Polls start fast and slow down to this while a queue stays empty.
const MAX_POLL: Duration = Duration::from_millis(200);
const FIRST_POLL: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct DbQueue {
    store: Store,
}

impl DbQueue {
    pub fn new(store: Store) -> Self {
        DbQueue { store }
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

    async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Message>> {
        let until = deadline_after(wait);
        let limit = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        let mut pause = FIRST_POLL;
        loop {
            let messages = self.store.claim_due(queue, limit).await?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(messages);
            }
            sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}
