//! Marks failed, with the reason, the due tasks that may not be dispatched again:
//! past their deadline, or dispatched max_count times without finishing.

use std::sync::atomic::Ordering;

use super::{in_batches, Context};
use crate::error::Result;

pub(crate) async fn run_once(ctx: &Context) -> Result<u64> {
    let n = in_batches(ctx.batch_size, || ctx.store.give_up(ctx.batch_size)).await?;
    if n > 0 {
        ctx.metrics.gave_up.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(
            count = n,
            "qtask: gave up on tasks past their deadline or max_count"
        );
    }
    Ok(n)
}
