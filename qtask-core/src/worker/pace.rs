//! How far ahead of its free slots a worker claims: a claim takes a round trip (and on
//! PostgreSQL a WAL flush), and slots whose handlers end meanwhile would otherwise wait
//! for the next claim. With no-op handlers, claiming what the slots run during a claim
//! (within the worker's room ahead) is what lets one claim serve hundreds of tasks.

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

    /// How many tasks to claim with `free` of `concurrency` slots free, `waiting`
    /// claimed tasks not started yet and room for `room` more: one per free slot, and
    /// as many as the slots will start while the claim is in flight (each slot starts
    /// about claim / handler time of them), less those already waiting, within the
    /// room. So the tasks a worker holds beyond those it runs stay about one claim's
    /// worth: few for a killed worker to leave behind, few kept from other workers.
    pub fn claim_size(&self, free: usize, concurrency: usize, waiting: usize, room: usize) -> usize {
        let (claim, handler) = (self.claim_us.load(Relaxed), self.handler_us.load(Relaxed));
        if claim == 0 || handler == 0 {
            return free;
        }
        let started_meanwhile = (concurrency as u64).saturating_mul(claim) / handler;
        let ahead = usize::try_from(started_meanwhile)
            .unwrap_or(usize::MAX)
            .saturating_sub(waiting)
            .min(room);
        free + ahead
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
        assert_eq!(Pace::default().claim_size(5, 32, 0, 32), 5);
    }

    #[test]
    fn short_handlers_fill_the_room_ahead() {
        // Handlers far shorter than a claim: every slot starts many while it is in flight.
        assert_eq!(pace(2, 0).claim_size(16, 32, 0, 32), 16 + 32);
        assert_eq!(pace(2, 0).claim_size(4, 8, 0, 32), 4 + 32);
    }

    #[test]
    fn tasks_already_waiting_count_against_those_claimed_ahead() {
        // 8 slots start 2 each during the claim: 16, of which 10 are waiting already.
        assert_eq!(pace(2, 1).claim_size(3, 8, 10, 22), 3 + 6);
        assert_eq!(pace(2, 1).claim_size(3, 8, 20, 12), 3);
    }

    #[test]
    fn long_handlers_claim_for_free_slots_only() {
        assert_eq!(pace(2, 1000).claim_size(4, 32, 0, 32), 4);
    }

    #[test]
    fn handlers_near_a_claims_time_claim_ahead_in_proportion() {
        // 32 slots each start a task within the claim's 2 ms with a chance of 2/8.
        assert_eq!(pace(2, 8).claim_size(4, 32, 0, 32), 4 + 8);
    }
}
