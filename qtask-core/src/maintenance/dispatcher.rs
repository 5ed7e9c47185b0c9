//! Offers due tasks to a queue that carries offers (Redis): delayed tasks whose time
//! came, tasks whose lease ran out unfinished, and offers that timed out unclaimed
//! (a backlog, or an offer lost with Redis). Offering uses no attempt. The `db` queue
//! needs none of this: its fetch claims due rows itself.

use std::sync::atomic::Ordering;

use super::{in_batches, Context};
use crate::error::Result;

pub(crate) async fn run_once(ctx: &Context) -> Result<u64> {
    if !ctx.queue.carries_offers() {
        return Ok(0);
    }
    // Paused queues are offered too: their fetches wait for the resume (admin.rs), and
    // an offer made again while paused stays one copy.
    in_batches(ctx.batch_size, || async {
        let offers = ctx.store.offer_due(ctx.batch_size).await?;
        if offers.is_empty() {
            return Ok(0);
        }
        if let Err(failed) = ctx.queue.offer(&offers).await {
            // Only the offers that failed are made again (next sweep): the others are
            // on their queues, and ZADD NX keeps one copy either way.
            ctx.store.withdraw(&failed.failed).await?;
            return Err(failed.error);
        }
        ctx.metrics
            .offered
            .fetch_add(offers.len() as u64, Ordering::Relaxed);
        Ok(offers.len() as u64)
    })
    .await
}
