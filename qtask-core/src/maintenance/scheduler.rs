//! Turns due schedule ticks into tasks: one task per tick however many sweepers run
//! (the tick is taken by a guarded UPDATE, see store/schedules.rs), and at most one
//! per schedule per sweep, whatever an outage missed (the schedule's `missed` policy).
//! Runs first in a sweep, so that on a Redis queue the dispatcher offers the new tasks
//! in the same sweep; the `db` queue's fetchers see them at once.

use super::Context;
use crate::error::Result;
use crate::schedule::{Missed, MISSED_AFTER, NO_MORE_TICKS};
use crate::store::{DueSchedule, TickTaken};

/// Schedules whose tick is due are read at most this many at a time.
const BATCH: u32 = 100;

pub(crate) async fn run_once(ctx: &Context) -> Result<u64> {
    let now = ctx.store.now_ms().await?;
    let mut made = 0;
    // Each batch moves every schedule it read past `now`, so the loop ends.
    for _ in 0..super::MAX_BATCHES_PER_TICK {
        let due = ctx.store.due_schedules(now, BATCH).await?;
        for schedule in &due {
            made += take_tick(ctx, schedule, now).await?;
        }
        if due.len() < BATCH as usize {
            break;
        }
    }
    Ok(made)
}

/// Takes one schedule's due tick; returns how many tasks it made (0 or 1).
async fn take_tick(ctx: &Context, due: &DueSchedule, now: i64) -> Result<u64> {
    let tick = due.info.next_at;
    let next = due.ticks.after(tick, now).unwrap_or_else(|err| {
        // A cron expression with a year that has passed: this tick is its last.
        tracing::info!(schedule = %due.info.name, error = %err, "qtask: schedule has no further tick");
        NO_MORE_TICKS
    });
    let make_task = match due.info.missed {
        Missed::RunOnce => true,
        Missed::Skip => !was_missed(due, now),
    };
    match ctx.store.take_tick(due, next, make_task).await? {
        TickTaken::Task(task_id) => {
            crate::telemetry::created(&due.info.queue);
            tracing::debug!(schedule = %due.info.name, tick, task_id, "qtask: schedule made a task");
            Ok(1)
        }
        TickTaken::NoTask => {
            tracing::info!(schedule = %due.info.name, tick, "qtask: skipped a missed schedule tick");
            Ok(0)
        }
        TickTaken::ByAnother => Ok(0),
    }
}

/// A tick is missed when the one after it is due too, or it is over MISSED_AFTER late.
fn was_missed(due: &DueSchedule, now: i64) -> bool {
    let tick = due.info.next_at;
    let late = now - tick > crate::clock::duration_ms(MISSED_AFTER);
    late || due.ticks.following(tick).map_or(true, |after| after <= now)
}
