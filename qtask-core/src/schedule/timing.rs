//! When a schedule ticks: a cron expression read in an IANA time zone, or a fixed
//! interval. Times are Unix milliseconds on the database's clock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::clock::duration_ms;
use crate::error::{invalid, Result};

/// Shortest interval a schedule may have: the sweeper looks about once a second.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest interval (100 years), so millisecond sums never overflow.
const MAX_EVERY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Longest cron expression or time zone name kept in the schedule table.
const MAX_TEXT_BYTES: usize = 191;

/// How a schedule's ticks are spaced, checked and ready to compute ticks.
#[derive(Clone, Debug)]
pub(crate) enum Ticks {
    Cron(Box<Cron>, Tz),
    Every(i64),
}

impl Ticks {
    /// A cron expression (5 fields, 6 with seconds first, or `@hourly`…) read in
    /// `time_zone`, an IANA name such as `Asia/Shanghai`.
    pub fn cron(expression: &str, time_zone: &str) -> Result<Self> {
        if expression.len() > MAX_TEXT_BYTES || time_zone.len() > MAX_TEXT_BYTES {
            return Err(invalid(format!(
                "cron expression and time zone are limited to {MAX_TEXT_BYTES} bytes"
            )));
        }
        let cron = Cron::from_str(expression)
            .map_err(|e| invalid(format!("cron expression {expression:?}: {e}")))?;
        let zone = Tz::from_str(time_zone.trim()).map_err(|_| {
            invalid(format!(
                "unknown time zone {time_zone:?} (use an IANA name such as Europe/Paris)"
            ))
        })?;
        Ok(Ticks::Cron(Box::new(cron), zone))
    }

    /// A fixed interval, counted from when the schedule was first declared.
    pub fn every(every: Duration) -> Result<Self> {
        if every < MIN_EVERY || every > MAX_EVERY {
            return Err(invalid(format!(
                "every must be from one second to 100 years, got {every:?}"
            )));
        }
        Ok(Ticks::Every(duration_ms(every)))
    }

    /// The first tick of a schedule declared at `now`.
    pub fn first(&self, now_ms: i64) -> Result<i64> {
        match self {
            Ticks::Cron(..) => self.after(now_ms, now_ms),
            Ticks::Every(every) => Ok(now_ms + every),
        }
    }

    /// The first tick later than `now` in the series that passes through `tick`
    /// (an interval keeps its phase; a cron expression has one series).
    pub fn after(&self, tick_ms: i64, now_ms: i64) -> Result<i64> {
        match self {
            Ticks::Every(every) => {
                let behind = (now_ms - tick_ms).max(0);
                Ok(tick_ms + (behind / every + 1) * every)
            }
            Ticks::Cron(cron, zone) => {
                let at = DateTime::<Utc>::from_timestamp_millis(now_ms)
                    .ok_or_else(|| invalid(format!("time {now_ms} ms is out of range")))?
                    .with_timezone(zone);
                let next = cron.find_next_occurrence(&at, false).map_err(|e| {
                    invalid(format!(
                        "cron expression {:?} has no next tick: {e}",
                        cron.pattern.to_string()
                    ))
                })?;
                Ok(next.timestamp_millis())
            }
        }
    }

    /// The tick after `tick` (the next in its series).
    pub fn following(&self, tick_ms: i64) -> Result<i64> {
        self.after(tick_ms, tick_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    // 2026-01-01T00:00:00Z
    const NEW_YEAR: i64 = 1_767_225_600_000;

    #[test]
    fn intervals_keep_their_phase() {
        let t = Ticks::every(Duration::from_secs(10)).unwrap();
        assert_eq!(t.first(1_000).unwrap(), 11_000);
        assert_eq!(t.after(11_000, 11_000).unwrap(), 21_000);
        assert_eq!(t.after(11_000, 55_500).unwrap(), 61_000);
        assert_eq!(t.following(11_000).unwrap(), 21_000);
    }

    #[test]
    fn cron_ticks_in_its_time_zone() {
        let t = Ticks::cron("0 9 * * *", "Asia/Shanghai").unwrap();
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(t.first(NEW_YEAR).unwrap(), NEW_YEAR + HOUR);
        assert_eq!(t.following(NEW_YEAR + HOUR).unwrap(), NEW_YEAR + 25 * HOUR);
        let utc = Ticks::cron("@hourly", "UTC").unwrap();
        assert_eq!(utc.first(NEW_YEAR + 1).unwrap(), NEW_YEAR + HOUR);
    }

    #[test]
    fn cron_follows_daylight_saving_time() {
        // 09:00 in Paris: 08:00 UTC on Saturday 2026-03-28, 07:00 UTC on Sunday, the
        // day the clocks go forward.
        let t = Ticks::cron("0 9 * * *", "Europe/Paris").unwrap();
        const SATURDAY_NOON: i64 = 1_774_699_200_000;
        const SUNDAY_0700: i64 = 1_774_767_600_000;
        assert_eq!(
            t.first(SATURDAY_NOON - 4 * HOUR - 1).unwrap(),
            SATURDAY_NOON - 4 * HOUR
        );
        assert_eq!(t.first(SATURDAY_NOON).unwrap(), SUNDAY_0700);
    }

    #[test]
    fn bad_timings_are_invalid_arguments() {
        for (cron, zone) in [
            ("61 * * * *", "UTC"),
            ("every day", "UTC"),
            ("", "UTC"),
            ("* * * * *", "Mars/Olympus"),
        ] {
            let result = Ticks::cron(cron, zone);
            assert!(
                matches!(result, Err(crate::Error::InvalidArgument(_))),
                "{cron:?} {zone:?}"
            );
        }
        for every in [Duration::from_millis(999), Duration::ZERO] {
            assert!(matches!(
                Ticks::every(every),
                Err(crate::Error::InvalidArgument(_))
            ));
        }
        // Never matches (February 30th): refused when the first tick is computed.
        let never = Ticks::cron("0 0 30 2 *", "UTC").unwrap();
        assert!(matches!(
            never.first(NEW_YEAR),
            Err(crate::Error::InvalidArgument(_))
        ));
    }
}
