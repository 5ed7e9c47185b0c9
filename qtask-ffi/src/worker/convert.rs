//! What both worker APIs share: a task's message as C text, and how a returned
//! `qtask_outcome_code` and what was set beside it end the attempt.

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use qtask_core::{Message, Outcome};

use super::pull::qtask_completion;

/// What a worker callback returns: how the attempt ends. Any other non-zero value
/// means `QTASK_OUTCOME_CODE_RETRY`.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum qtask_outcome_code {
    /// Finished; with the value given to `qtask_outcome_set_result` (if any) kept as
    /// the task's result (see `qtask_task_result`).
    Finish = 0,
    /// This attempt failed: retried after a backoff (or failed for good when its
    /// attempts or deadline are spent), the `qtask_outcome_set_error` text (or
    /// "callback returned N") kept as `last_error`.
    Retry = 1,
    /// Comes back after the `qtask_outcome_set_delay` delay, giving its attempt back
    /// (`max_count` grows by one); fails for good if the delay passes its deadline.
    /// Without a delay it counts as `QTASK_OUTCOME_CODE_RETRY`.
    RetryAfter = 2,
    /// Ends as cancelled, never runs again; the `qtask_outcome_set_error` text is kept
    /// as the reason.
    Cancel = 3,
    /// Ends as failed for good, no more retries; the `qtask_outcome_set_error` text is
    /// kept as the reason.
    FailNow = 4,
}

/// `Message::to_json` as C text, written in one pass: the input's keys (but
/// `task_id` and `attempt`) after the ids, with no copy of the input first.
pub(super) fn message_text(message: &Message) -> Result<CString, String> {
    use std::io::Write;
    let mut text = Vec::with_capacity(64);
    let _ = write!(
        text,
        "{{\"task_id\":{},\"attempt\":{}",
        message.task_id, message.attempt
    );
    for (key, value) in &message.input {
        if key == "task_id" || key == "attempt" {
            continue;
        }
        text.push(b',');
        serde_json::to_writer(&mut text, key).map_err(|e| e.to_string())?;
        text.push(b':');
        serde_json::to_writer(&mut text, value).map_err(|e| e.to_string())?;
    }
    text.push(b'}');
    // serde_json escapes NUL, so the text has none.
    CString::new(text).map_err(|e| e.to_string())
}

/// How an attempt ends, from a returned code and what was set beside it.
pub(super) fn outcome_of(
    code: i32,
    error: Option<String>,
    delay: Option<Duration>,
    result: Option<serde_json::Value>,
    who: &str,
) -> Outcome {
    let text = |default: String| error.clone().unwrap_or(default);
    match code {
        0 => Outcome::Finish(result),
        2 => match delay {
            Some(delay) => Outcome::RetryAfter(delay),
            None => Outcome::Retry(text(format!(
                "{who} returned QTASK_OUTCOME_CODE_RETRY_AFTER without a delay"
            ))),
        },
        3 => Outcome::Cancel(text(format!("cancelled by the {who}"))),
        4 => Outcome::FailNow(text(format!("failed by the {who}"))),
        code => Outcome::Retry(text(format!("{who} returned {code}"))),
    }
}

/// The outcome a `qtask_completion` describes.
pub(super) fn completed(done: &qtask_completion) -> Outcome {
    let text = |p: *const c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let error = text(done.error);
    let delay = match done.code {
        2 => match qtask_core::seconds("delay_seconds", done.delay_seconds) {
            Ok(delay) => Some(delay),
            Err(err) => return Outcome::Retry(err.to_string()),
        },
        _ => None,
    };
    let result = match (done.code, text(done.result_json)) {
        (0, Some(json)) => match serde_json::from_str(&json) {
            Ok(value) => Some(value),
            Err(e) => return Outcome::FailNow(format!("result_json: {e}")),
        },
        _ => None,
    };
    outcome_of(done.code, error, delay, result, "worker")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn message_text_is_to_json() {
        let input = json!({"n": 1, "s": "a\"b\u{e9}", "nested": {"x": [1, 2.5, null]}, "task_id": "theirs", "attempt": 9});
        let message = Message {
            task_id: 42,
            attempt: 3,
            queue: "q".into(),
            name: "kind".into(),
            deadline_at: 0,
            input: input.as_object().cloned().unwrap_or_default(),
            lease: Duration::from_secs(1),
            time_limit: None,
            trace_context: None,
        };
        let text = message_text(&message).expect("text");
        let parsed: Value = serde_json::from_str(text.to_str().expect("utf-8")).expect("json");
        assert_eq!(parsed, message.to_json());
        assert_eq!(parsed["task_id"], 42);
    }
}
