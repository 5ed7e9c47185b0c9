//! The task model: what a producer asks for, what the table holds, what a worker receives.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::duration_ms;
use crate::error::{invalid, Error, Result};

/// Default time before a task is never dispatched again (the seed's 7 days).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default attempt limit (the seed's 100).
pub const DEFAULT_MAX_COUNT: u32 = 100;
/// Default lease of one dispatch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Priorities run from -MAX_PRIORITY to MAX_PRIORITY (higher is claimed first; default 0).
pub const MAX_PRIORITY: i32 = 1000;
/// Keys qtask adds to every message, so an input may not use them.
pub const RESERVED_KEYS: [&str; 2] = ["task_id", "attempt"];

const MAX_NAME_BYTES: usize = 255;
const MAX_KEY_BYTES: usize = 191;
/// Longest duration accepted anywhere (100 years), so millisecond sums never overflow.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A task's state. The numbers are the seed's and are what the table stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Processing,
    Finished,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Waiting,
        Status::Processing,
        Status::Finished,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn code(self) -> i64 {
        match self {
            Status::Waiting => 20,
            Status::Processing => 30,
            Status::Finished => 0,
            Status::Failed => 90,
            Status::Cancelled => 91,
        }
    }

    pub fn from_code(code: i64) -> Result<Self> {
        if code == 21 {
            // Offered to a Redis queue: still waiting for a worker.
            return Ok(Status::Waiting);
        }
        Status::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .ok_or_else(|| Error::Internal(format!("unknown status code {code} in table")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Processing => "processing",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Live tasks may still be dispatched.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Waiting | Status::Processing)
    }
}

/// The seed's options (`WithDeadline`, `WithDeleteDeadline`, `WithMaxCount`, `WithOrderNO`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOptions {
    /// After created + deadline the task is never dispatched again (default 7 days).
    pub deadline: Option<Duration>,
    /// A finished task's row is deleted this long after it finished (default: at once).
    pub delete_deadline: Option<Duration>,
    /// Dispatches at most (default 100).
    pub max_count: Option<u32>,
    /// External business number: a live task with the same queue and number is returned instead.
    pub order_no: Option<String>,
    /// Claims take higher priority first, then the earliest due (default 0; at most
    /// [`MAX_PRIORITY`] either way).
    pub priority: Option<i32>,
    /// The longest one attempt may run (default: the worker's `time_limit`, if any).
    /// Past it the handler is told and the attempt fails ("time limit of Ns
    /// exceeded"), retried with backoff.
    pub time_limit: Option<Duration>,
}

/// What a producer asks for: the seed's `name, input, timeout, queue, opts…`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub name: String,
    /// A JSON object; the message a worker receives is this plus `task_id` and `attempt`.
    pub input: Value,
    pub queue: String,
    /// Lease of one dispatch: unfinished after it, the task is dispatched again.
    pub timeout: Duration,
    pub options: TaskOptions,
}

impl NewTask {
    pub fn new(name: impl Into<String>, input: Value, queue: impl Into<String>) -> Self {
        NewTask {
            name: name.into(),
            input,
            queue: queue.into(),
            timeout: DEFAULT_TIMEOUT,
            options: TaskOptions::default(),
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = Some(deadline);
        self
    }

    pub fn delete_deadline(mut self, delete_deadline: Duration) -> Self {
        self.options.delete_deadline = Some(delete_deadline);
        self
    }

    pub fn max_count(mut self, max_count: u32) -> Self {
        self.options.max_count = Some(max_count);
        self
    }

    pub fn order_no(mut self, order_no: impl Into<String>) -> Self {
        self.options.order_no = Some(order_no.into());
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// This task's own time limit per attempt: see [`TaskOptions::time_limit`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.options.time_limit = Some(limit);
        self
    }
}

/// A `NewTask` checked and reduced to what the table stores (milliseconds, JSON text).
#[derive(Clone, Debug)]
pub(crate) struct ValidTask {
    pub name: String,
    pub queue: String,
    pub payload: String,
    pub order_no: Option<String>,
    pub timeout_ms: i64,
    pub delay_ms: i64,
    pub deadline_ms: i64,
    pub delete_after_ms: i64,
    pub max_count: i64,
    pub priority: i64,
    pub time_limit_ms: Option<i64>,
    /// The W3C trace context of the create span (trace.rs), JSON; None without one.
    pub trace_context: Option<String>,
}

impl ValidTask {
    /// Checks everything before any write, so bad input writes nothing.
    pub fn check(task: &NewTask, delay: Duration, max_payload_bytes: usize) -> Result<Self> {
        check_text("name", &task.name, MAX_NAME_BYTES)?;
        check_key("queue", &task.queue)?;
        let object = task
            .input
            .as_object()
            .ok_or_else(|| invalid("input must be a JSON object"))?;
        if let Some(key) = RESERVED_KEYS.iter().find(|k| object.contains_key(**k)) {
            return Err(invalid(format!("input may not contain the reserved key {key:?}")));
        }
        // Stops writing at the limit: an oversized input is never copied whole.
        let payload = crate::input::to_bounded_json(object, max_payload_bytes)?;
        let opts = &task.options;
        if let Some(order_no) = &opts.order_no {
            check_key("order_no", order_no)?;
        }
        let timeout_ms = positive_ms("timeout", task.timeout)?;
        let deadline_ms = positive_ms("deadline", opts.deadline.unwrap_or(DEFAULT_DEADLINE))?;
        let delay_ms = bounded_ms("delay", delay)?;
        if delay_ms >= deadline_ms {
            return Err(invalid("delay must be shorter than the deadline"));
        }
        let delete_after_ms = bounded_ms("delete_deadline", opts.delete_deadline.unwrap_or_default())?;
        let max_count = opts.max_count.unwrap_or(DEFAULT_MAX_COUNT);
        if max_count == 0 {
            return Err(invalid("max_count must be at least 1"));
        }
        let priority = opts.priority.unwrap_or(0);
        if priority.abs() > MAX_PRIORITY {
            return Err(invalid(format!(
                "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, got {priority}"
            )));
        }
        let time_limit_ms = opts
            .time_limit
            .map(|limit| positive_ms("time_limit", limit))
            .transpose()?;
        Ok(ValidTask {
            name: task.name.clone(),
            queue: task.queue.clone(),
            payload,
            order_no: opts.order_no.clone(),
            timeout_ms,
            delay_ms,
            deadline_ms,
            delete_after_ms,
            max_count: i64::from(max_count),
            priority: i64::from(priority),
            time_limit_ms,
            trace_context: None,
        })
    }
}

/// The checks `create` and `delay` run before writing, without a database; for the
/// fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn check_new_task(task: &NewTask, delay: Duration, max_payload_bytes: usize) -> Result<()> {
    ValidTask::check(task, delay, max_payload_bytes).map(drop)
}

fn check_text(what: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes, over the limit of {max}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{what} must not contain control characters")));
    }
    Ok(())
}

/// Queue names and order numbers are index keys: bounded and without spaces.
pub(crate) fn check_key(what: &str, value: &str) -> Result<()> {
    check_text(what, value, MAX_KEY_BYTES)?;
    if value.chars().any(char::is_whitespace) {
        return Err(invalid(format!("{what} must not contain whitespace")));
    }
    Ok(())
}

fn bounded_ms(what: &str, d: Duration) -> Result<i64> {
    if d > MAX_DURATION {
        return Err(invalid(format!("{what} is longer than 100 years")));
    }
    Ok(duration_ms(d))
}

fn positive_ms(what: &str, d: Duration) -> Result<i64> {
    let ms = bounded_ms(what, d)?;
    if ms <= 0 {
        return Err(invalid(format!("{what} must be at least one millisecond")));
    }
    Ok(ms)
}

/// Converts seconds from C or Python to a Duration, refusing negative, NaN and infinite values.
pub fn seconds(what: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        invalid(format!(
            "{what} must be a non-negative number of seconds, got {secs}"
        ))
    })
}

/// The result of a create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Created {
    pub id: i64,
    /// A live task with the same queue and order number already existed; its id is returned.
    pub existing: bool,
    /// The message is on the queue now. False for delayed tasks, and when the queue was
    /// down: the row is safe and the sweeper dispatches it later.
    pub dispatched: bool,
}

/// What a worker receives: the input plus `task_id` and `attempt`. The attempt began
/// when this worker claimed the task; its number is unique per claim and never goes down.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub task_id: i64,
    pub attempt: i64,
    pub queue: String,
    /// The task's name: its kind, when a worker routes the tasks of one queue by name
    /// ([`crate::Worker::kinds`]).
    pub name: String,
    /// When the task is never dispatched again (Unix ms, the store's clock).
    pub deadline_at: i64,
    pub input: Map<String, Value>,
    /// How long the claim holds before the task is offered to another worker.
    pub lease: Duration,
    /// The task's own time limit per attempt (None: the worker's, if any).
    pub time_limit: Option<Duration>,
    /// The W3C trace context (`{"traceparent": …, "tracestate": …}`) of this attempt's
    /// `qtask.dispatch` span, a child of the producer's span; None when the producer had
    /// no OpenTelemetry context (feature `otel`, trace.rs). Spans of a handler that
    /// adopt it continue the producer's trace.
    pub trace_context: Option<String>,
}

/// Names one attempt of one task: every fenced outcome carries it, so an outcome of an
/// attempt that is no longer current changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Fence {
    pub task_id: i64,
    pub attempt: i64,
}

/// The result of a fenced outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fenced<T> {
    /// The attempt was current: the outcome was written.
    Current(T),
    /// A newer attempt exists, or the task already ended: nothing changed.
    Stale,
}

impl<T> Fenced<T> {
    pub fn is_stale(&self) -> bool {
        matches!(self, Fenced::Stale)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fenced<U> {
        match self {
            Fenced::Current(value) => Fenced::Current(f(value)),
            Fenced::Stale => Fenced::Stale,
        }
    }

    pub fn current(self) -> Option<T> {
        match self {
            Fenced::Current(value) => Some(value),
            Fenced::Stale => None,
        }
    }
}

/// What a claim read of one row, besides its payload.
pub(crate) struct Claim {
    pub fence: Fence,
    pub queue: String,
    pub name: String,
    pub deadline_at: i64,
    pub lease_ms: i64,
    pub trace_context: Option<String>,
}

impl Message {
    /// Parses a claimed row's payload; an unreadable one is reported with its reason.
    pub(crate) fn from_claim(claim: Claim, payload: &str) -> Result<Self, String> {
        let input = match serde_json::from_str(payload) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("payload is not a JSON object".into()),
            Err(e) => return Err(format!("payload is not readable JSON: {e}")),
        };
        Ok(Message {
            task_id: claim.fence.task_id,
            attempt: claim.fence.attempt,
            queue: claim.queue,
            name: claim.name,
            deadline_at: claim.deadline_at,
            input,
            lease: Duration::from_millis(claim.lease_ms.max(0) as u64),
            time_limit: None,
            trace_context: claim.trace_context,
        })
    }

    /// The attempt this message belongs to, for fenced outcomes.
    pub fn fence(&self) -> Fence {
        Fence {
            task_id: self.task_id,
            attempt: self.attempt,
        }
    }

    /// The wire form: the input object with `task_id` and `attempt` added.
    pub fn to_json(&self) -> Value {
        let mut map = self.input.clone();
        map.insert("task_id".into(), self.task_id.into());
        map.insert("attempt".into(), self.attempt.into());
        Value::Object(map)
    }
}

/// One row of the task table, for people and tools. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub queue: String,
    pub input: Value,
    pub order_no: Option<String>,
    pub status: Status,
    pub timeout_ms: i64,
    /// When the task is next dispatched; None once it is finished, failed or cancelled.
    pub next_at: Option<i64>,
    pub deadline_at: i64,
    pub delete_at: i64,
    pub max_count: i64,
    /// Attempts so far (claims by a worker); also the number of the latest attempt.
    pub count: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Claims take higher priority first (default 0).
    pub priority: i64,
}

/// Counts of one namespace's tasks plus what this client's sweeper did since it opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub waiting: i64,
    pub processing: i64,
    pub finished: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Live tasks whose next dispatch time has passed.
    pub due: i64,
    /// Live tasks attempted more than once (rescued after a timeout, or retried).
    pub redispatched_live: i64,
    /// This client: offers its sweeper and creates made to a Redis queue.
    pub offered: u64,
    /// This client: attempts its fetches and pops began (claims).
    pub dispatched: u64,
    /// This client: claims that began a second or later attempt.
    pub redispatched: u64,
    /// This client's sweeper: tasks it marked failed (deadline or max_count).
    pub gave_up: u64,
    /// This client's sweeper: rows it deleted.
    pub deleted: u64,
}
