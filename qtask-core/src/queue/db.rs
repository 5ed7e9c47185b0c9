//! The `db` queue: the task table is the transport. A pop is an atomic claim of one
//! due row (`FOR UPDATE SKIP LOCKED`, or one UPDATE on SQLite).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{sleep, Instant};

use super::Queue;
use crate::error::Result;
use crate::store::Store;
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
    fn reads_table(&self) -> bool {
        true
    }

    async fn push(&self, _messages: &[Message]) -> Result<()> {
        Ok(())
    }

    async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Message>> {
        let until = crate::clock::deadline_after(wait);
        let mut pause = FIRST_POLL;
        loop {
            if let Some(message) = self.store.claim(Some(queue), 1).await?.pop() {
                return Ok(Some(message));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}
