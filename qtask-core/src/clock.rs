//! Time comes from the database's clock, so hosts with skewed clocks can
//! share one table. Tests shift it with an offset instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A shift added to the database's clock. Production uses zero; tests share
/// one `Clock` between clients and `advance` it to skip delays and timeouts.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The database's own clock, unshifted.
    pub fn database() -> Self {
        Self::default()
    }

    /// Moves this clock (and every client sharing it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(duration_ms(by), Ordering::SeqCst);
    }

    /// Milliseconds added to the database's clock.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

/// Duration in whole milliseconds, saturating (qtask's durations are far below i64::MAX ms).
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Longest wait qtask honours; longer ones are cut to it, so `now + wait` never overflows.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The instant `wait` from now, saturating at [`MAX_WAIT`].
pub(crate) fn deadline_after(wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + wait.min(MAX_WAIT)
}
