//! A schedule from the bindings' and the CLI's JSON: one options object for C, Go and
//! Python, durations in seconds.

use serde::Deserialize;
use serde_json::Value;

use super::{Missed, Schedule};
use crate::error::{invalid, Result};
use crate::task::seconds;

impl Schedule {
    /// Reads a schedule from the bindings' JSON: `name`, the input as JSON text, and
    /// options `{"queue": "Q", "cron": "0 9 * * *", "time_zone": "Asia/Shanghai"}` or
    /// `{"queue": "Q", "every": 60}`, plus `missed` (`"run_once"`/`"skip"`), `timeout`,
    /// `deadline`, `delete_deadline` (seconds), `max_count` and `priority`.
    pub fn from_json(
        name: &str,
        input_json: &str,
        options_json: &str,
        max_payload_bytes: usize,
    ) -> Result<Self> {
        let input = crate::input::parse_input(input_json, max_payload_bytes)?;
        let args: ScheduleArgs =
            serde_json::from_str(options_json).map_err(|e| invalid(format!("schedule options: {e}")))?;
        args.into_schedule(name, input)
    }
}

/// The options object of [`Schedule::from_json`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleArgs {
    queue: String,
    cron: Option<String>,
    every: Option<f64>,
    time_zone: Option<String>,
    missed: Option<String>,
    timeout: Option<f64>,
    deadline: Option<f64>,
    delete_deadline: Option<f64>,
    max_count: Option<i64>,
    priority: Option<i64>,
}

impl ScheduleArgs {
    fn into_schedule(self, name: &str, input: Value) -> Result<Schedule> {
        let mut schedule = Schedule {
            cron: self.cron,
            every: self.every.map(|e| seconds("every", e)).transpose()?,
            time_zone: self.time_zone,
            missed: self
                .missed
                .as_deref()
                .map(Missed::parse)
                .transpose()?
                .unwrap_or_default(),
            ..Schedule::new(name, input, self.queue)
        };
        if let Some(t) = self.timeout {
            schedule.timeout = seconds("timeout", t)?;
        }
        if let Some(d) = self.deadline {
            schedule.options.deadline = Some(seconds("deadline", d)?);
        }
        if let Some(d) = self.delete_deadline {
            schedule.options.delete_deadline = Some(seconds("delete_deadline", d)?);
        }
        if let Some(n) = self.max_count {
            let n = u32::try_from(n)
                .map_err(|_| invalid(format!("max_count must be 1 to {}, got {n}", u32::MAX)))?;
            schedule.options.max_count = Some(n);
        }
        if let Some(p) = self.priority {
            let max = crate::MAX_PRIORITY;
            let p = i32::try_from(p)
                .ok()
                .filter(|p| p.abs() <= max)
                .ok_or_else(|| invalid(format!("priority must be between -{max} and {max}, got {p}")))?;
            schedule.options.priority = Some(p);
        }
        Ok(schedule)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::Error;

    #[test]
    fn options_read_from_json() {
        let s = Schedule::from_json("nightly", r#"{"a": 1}"#, r#"{"queue": "Q", "cron": "0 3 * * *", "time_zone": "Asia/Shanghai", "missed": "skip", "timeout": 30, "max_count": 3, "priority": -7}"#, 1 << 20).unwrap();
        assert_eq!(
            s,
            Schedule::cron("nightly", json!({"a": 1}), "Q", "0 3 * * *")
                .time_zone("Asia/Shanghai")
                .missed(Missed::Skip)
                .timeout(Duration::from_secs(30))
                .max_count(3)
                .priority(-7)
        );
        let every = Schedule::from_json("tick", "{}", r#"{"queue": "Q", "every": 1.5}"#, 1 << 20).unwrap();
        assert_eq!(every.every, Some(Duration::from_millis(1500)));
        for bad in [
            r#"{"queue": "Q"}"#,
            r#"{"queue": "Q", "cron": "* * * * *", "every": 5}"#,
            r#"{"queue": "Q", "every": -1}"#,
            r#"{"queue": "Q", "every": 5, "missed": "twice"}"#,
            r#"{"queue": "Q", "every": 5, "colour": 1}"#,
            r#"{"queue": "Q", "every": 5, "max_count": -1}"#,
            r#"{"queue": "Q", "every": 5, "priority": 1001}"#,
            r#"{"queue": "Q", "every": 5, "priority": -99999999999}"#,
            "[]",
        ] {
            assert!(
                matches!(
                    Schedule::from_json("x", "{}", bad, 1 << 20).and_then(|s| s.check(1 << 20)),
                    Err(Error::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }
}
