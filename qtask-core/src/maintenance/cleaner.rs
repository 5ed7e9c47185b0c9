//! Deletes finished, failed and cancelled rows whose delete_at has passed.

use std::sync::atomic::Ordering;

use super::{in_batches, Context};
use crate::error::Result;

pub(crate) async fn run_once(ctx: &Context) -> Result<u64> {
    let n = in_batches(ctx.batch_size, || ctx.store.clean(ctx.batch_size)).await?;
    ctx.metrics.deleted.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}
