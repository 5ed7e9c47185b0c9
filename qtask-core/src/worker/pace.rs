//! How far ahead of its free slots a worker claims: a claim takes a round trip (and on
//! PostgreSQL a WAL flush), and a slot whose handler ends meanwhile would otherwise
//! wait for the next claim. With no-op handlers at concurrency 32 on PostgreSQL,
//! claiming for those slots too is what lets one claim serve twice the tasks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Moving averages (µs) of how long a claim takes to return tasks, and how long one
/// handler runs; zero until measured.
#[derive(Default)]
pub(super) struct Pace {
    claim_us: AtomicU64,
    handler_us: AtomicU64,
}

impl Pace {
    /// A claim that returned tasks took `took`.
    pub fn claimed(&self, took: Duration) {
        average_in(&self.claim_us, took);
    }

    /// A handler ran for `took`.
    pub fn handled(&self, took: Duration) {
        average_in(&self.handler_us, took);
    }

    /// How many tasks to claim with `free` of `concurrency` slots free: one per free
    /// slot, and one per running handler expected to end while the claim is in flight
    /// (each ends within a claim's time with a chance of about claim / handler time).
    /// Never more than `concurrency`, so a worker holds at most twice as many tasks as
    /// it runs, and those extra ones only for about a claim's time: the tasks a killed
    /// worker leaves claimed but not started stay few.
    pub fn claim_size(&self, free: usize, concurrency: usize) -> usize {
        let (claim, handler) = (self.claim_us.load(Relaxed), self.handler_us.load(Relaxed));
        let running = concurrency.saturating_sub(free) as u64;
        if claim == 0 || handler == 0 {
            return free;
        }
        let ahead = (running.saturating_mul(claim) / handler).min(running);
        free + ahead as usize
    }
}

/// Folds `sample` into the moving average `average` (weight 1/8).
fn average_in(average: &AtomicU64, sample: Duration) {
    let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX).max(1);
    let _ = average.fetch_update(Relaxed, Relaxed, |old| {
        Some(if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(claim_ms: u64, handler_ms: u64) -> Pace {
        let pace = Pace::default();
        pace.claimed(Duration::from_millis(claim_ms));
        pace.handled(Duration::from_millis(handler_ms));
        pace
    }

    #[test]
    fn claims_for_free_slots_only_until_measured() {
        assert_eq!(Pace::default().claim_size(5, 32), 5);
    }

    #[test]
    fn short_handlers_get_a_task_waiting_for_every_slot() {
        // Handlers far shorter than a claim: every running one ends before it returns.
        assert_eq!(pace(2, 0).claim_size(16, 32), 32);
    }

    #[test]
    fn long_handlers_claim_for_free_slots_only() {
        assert_eq!(pace(2, 1000).claim_size(4, 32), 4);
    }

    #[test]
    fn handlers_near_a_claims_time_claim_ahead_in_proportion() {
        // 28 running, each ending within the claim's 2 ms with a chance of 2/8.
        assert_eq!(pace(2, 8).claim_size(4, 32), 4 + 7);
    }
}
