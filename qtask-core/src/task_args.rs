//! One description of a task as the bindings send it: every argument of a create or
//! a delay, as JSON, durations in seconds. C builds it (`task_json`, or the options
//! object of `qtask_create`), Python builds it (`qtask/_client.py`), Go through C.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{invalid, Result};
use crate::input::{check_settings_text, MAX_SETTINGS_TEXT, RAW_TEXT_FACTOR};
use crate::task::{seconds, NewTask, MAX_PRIORITY};

/// A task's arguments: `name`, `input` (a JSON object), `queue`, and optionally
/// `timeout`, `deadline`, `delete_deadline`, `delay` (seconds, floats), `max_count`,
/// `order_no` and `priority`. Unknown keys are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskArgs {
    pub name: String,
    pub input: Value,
    pub queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_deadline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_no: Option<String>,
    /// Seconds before the task is first due (the seed's `Delay`); 0 or absent: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<f64>,
    /// Claims take higher priority first (default 0; at most [`MAX_PRIORITY`] either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Seconds one attempt may run (default: the worker's `time_limit`, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
}

/// The keys an options object (C's `options_json`, Go's `Option`s) may hold.
pub const OPTION_KEYS: [&str; 6] = [
    "deadline",
    "delete_deadline",
    "max_count",
    "order_no",
    "priority",
    "time_limit",
];

impl TaskArgs {
    /// Parses one task's JSON text. Text far over `max_payload_bytes` is refused
    /// before it is parsed (see [`crate::input`]).
    pub fn from_json(text: &str, max_payload_bytes: usize) -> Result<TaskArgs> {
        let limit = max_payload_bytes
            .saturating_mul(RAW_TEXT_FACTOR)
            .saturating_add(MAX_SETTINGS_TEXT);
        if text.len() > limit {
            return Err(invalid(format!(
                "task is {} bytes of JSON text, over the limit for an input of {max_payload_bytes} bytes",
                text.len()
            )));
        }
        serde_json::from_str(text).map_err(|e| invalid(format!("task: {e}")))
    }

    /// Arguments given apart, as C's `qtask_create` and `qtask_delay` take them: the
    /// options object may hold only [`OPTION_KEYS`].
    pub fn from_parts(
        name: &str,
        input: Value,
        queue: &str,
        timeout: Option<f64>,
        options_json: Option<&str>,
    ) -> Result<TaskArgs> {
        let text = options_json
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("null");
        check_settings_text("options_json", text)?;
        let options: Option<Map<String, Value>> =
            serde_json::from_str(text).map_err(|e| invalid(format!("options_json: {e}")))?;
        let mut map = options.unwrap_or_default();
        if let Some(key) = map.keys().find(|k| !OPTION_KEYS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "options_json: unknown option {key:?}, expected one of {OPTION_KEYS:?}"
            )));
        }
        map.insert("name".into(), name.into());
        map.insert("input".into(), input);
        map.insert("queue".into(), queue.into());
        if let Some(timeout) = timeout {
            map.insert("timeout".into(), timeout.into());
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| invalid(format!("options_json: {e}")))
    }

    /// The engine's form: the task and its delay. Durations must be non-negative.
    pub fn into_task(self) -> Result<(NewTask, Duration)> {
        let mut task = NewTask::new(self.name, self.input, self.queue);
        if let Some(t) = self.timeout {
            task = task.timeout(seconds("timeout", t)?);
        }
        if let Some(d) = self.deadline {
            task = task.deadline(seconds("deadline", d)?);
        }
        if let Some(d) = self.delete_deadline {
            task = task.delete_deadline(seconds("delete_deadline", d)?);
        }
        if let Some(n) = self.max_count {
            let n = u32::try_from(n)
                .map_err(|_| invalid(format!("max_count must be 1 to {}, got {n}", u32::MAX)))?;
            task = task.max_count(n);
        }
        if let Some(order_no) = self.order_no {
            task = task.order_no(order_no);
        }
        if let Some(limit) = self.time_limit {
            task = task.time_limit(seconds("time_limit", limit)?);
        }
        if let Some(p) = self.priority {
            // Out of i32 is out of range too; ValidTask::check bounds the rest.
            let p = i32::try_from(p).map_err(|_| {
                invalid(format!(
                    "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, got {p}"
                ))
            })?;
            task = task.priority(p);
        }
        let delay = self.delay.map(|d| seconds("delay", d)).transpose()?;
        Ok((task, delay.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let err = TaskArgs::from_json(r#"{"name":"a","input":{},"queue":"q","tmeout":3}"#, 1024).unwrap_err();
        assert!(err.to_string().contains("tmeout"), "{err}");
        let err =
            TaskArgs::from_parts("a", serde_json::json!({}), "q", None, Some(r#"{"delay":1}"#)).unwrap_err();
        assert!(err.to_string().contains("unknown option"), "{err}");
    }

    #[test]
    fn seconds_become_durations() {
        let args = TaskArgs::from_json(
            r#"{"name":"a","input":{"k":1},"queue":"q","timeout":1.5,"delay":0.25,"max_count":3,"order_no":"o"}"#,
            1024,
        )
        .unwrap();
        let (task, delay) = args.into_task().unwrap();
        assert_eq!(task.timeout, Duration::from_millis(1500));
        assert_eq!(delay, Duration::from_millis(250));
        assert_eq!(task.options.max_count, Some(3));
        assert_eq!(task.options.order_no.as_deref(), Some("o"));
        let negative = TaskArgs::from_json(r#"{"name":"a","input":{},"queue":"q","timeout":-1}"#, 1024);
        assert!(negative.unwrap().into_task().is_err());
        let parts = TaskArgs::from_parts(
            "a",
            serde_json::json!({}),
            "q",
            Some(2.0),
            Some(r#"{"max_count":0}"#),
        );
        assert_eq!(parts.unwrap().max_count, Some(0));
        let prioritized =
            TaskArgs::from_parts("a", serde_json::json!({}), "q", None, Some(r#"{"priority":7}"#));
        let (task, _) = prioritized.unwrap().into_task().unwrap();
        assert_eq!(task.options.priority, Some(7));
        let huge = TaskArgs::from_json(
            r#"{"name":"a","input":{},"queue":"q","priority":4294967296}"#,
            1024,
        );
        assert!(huge
            .unwrap()
            .into_task()
            .unwrap_err()
            .to_string()
            .contains("priority"));
    }

    #[test]
    fn text_far_over_the_limit_is_refused_unparsed() {
        let text = "x".repeat(10 * RAW_TEXT_FACTOR + MAX_SETTINGS_TEXT + 1);
        assert!(TaskArgs::from_json(&text, 10)
            .unwrap_err()
            .to_string()
            .contains("over the limit"));
    }
}
