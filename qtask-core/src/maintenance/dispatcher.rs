//! Pushes due tasks to a queue that carries messages (Redis): delayed tasks whose time
//! came, and tasks whose lease ran out unfinished. The `db` queue needs none of this:
//! its pop claims due rows itself.

use super::{in_batches, Context};
use crate::error::Result;

pub(crate) async fn run_once(ctx: &Context) -> Result<u64> {
    if ctx.queue.reads_table() {
        return Ok(0);
    }
    // Issue 11, pause: paused queues are not dispatched (store/admin.rs).
    let paused = ctx.store.paused_queues().await?;
    in_batches(ctx.batch_size, || async {
        let messages = if paused.is_empty() {
            ctx.store.claim(None, ctx.batch_size).await?
        } else {
            ctx.store.claim_unpaused(&paused, ctx.batch_size).await?
        };
        if messages.is_empty() {
            return Ok(0);
        }
        if let Err(err) = ctx.queue.push(&messages).await {
            let ids: Vec<i64> = messages.iter().map(|m| m.task_id).collect();
            ctx.store.unclaim(&ids).await?;
            return Err(err);
        }
        for message in &messages {
            ctx.metrics.count_dispatch(message.attempt);
        }
        Ok(messages.len() as u64)
    })
    .await
}
