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

/// Longest wait a pop honours (one day); a longer wait, up to `Duration::MAX`,
/// returns empty-handed after this.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// When a wait that starts now ends, with the wait capped at [`MAX_WAIT`], so that
/// no caller's duration can overflow an `Instant`.
pub(crate) fn deadline_after(wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + wait.min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_are_capped() {
        let start = tokio::time::Instant::now();
        let until = deadline_after(Duration::MAX);
        assert!(until - start <= MAX_WAIT + Duration::from_secs(1));
        assert!(deadline_after(Duration::from_secs_f64(1e19)) > start);
    }
}
