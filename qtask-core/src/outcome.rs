//! What a handler's attempt ends in. A handler returns `Ok(x)` where `x` converts
//! into an [`Outcome`] (`()` finishes, a JSON value finishes with that result, or an
//! explicit outcome), or `Err(text)` to be retried with backoff. Every outcome names
//! its attempt (fenced): one of an attempt that is no longer current changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How an attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Finished, keeping the value (if any) as the task's result: see
    /// [`crate::Client::result`].
    Finish(Option<Value>),
    /// Failed this attempt: retried after a backoff (or failed for good when its
    /// attempts or deadline are spent), the text kept as `last_error`. What `Err(text)`
    /// means.
    Retry(String),
    /// Comes back after the delay (River's `JobSnooze`, Celery's `Retry(countdown=…)`).
    /// It gives its attempt back (`max_count` grows by one, so the attempt number
    /// still only goes up), keeps `last_error`, and fails for good only when the delay
    /// would pass the task's deadline.
    RetryAfter(Duration),
    /// Ends as cancelled, the reason kept as `last_error`; never runs again.
    Cancel(String),
    /// Ends as failed for good, the reason kept as `last_error`; no more retries.
    FailNow(String),
}

impl Outcome {
    pub fn retry_after(delay: Duration) -> Self {
        Outcome::RetryAfter(delay)
    }

    pub fn cancel(reason: impl Into<String>) -> Self {
        Outcome::Cancel(reason.into())
    }

    pub fn fail_now(reason: impl Into<String>) -> Self {
        Outcome::FailNow(reason.into())
    }

    /// Finished with `result` kept as the task's result.
    pub fn result(result: impl Into<Value>) -> Self {
        Outcome::Finish(Some(result.into()))
    }
}

impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Outcome::Finish(None)
    }
}

impl From<Value> for Outcome {
    fn from(result: Value) -> Self {
        Outcome::Finish(Some(result))
    }
}

impl From<Option<Value>> for Outcome {
    fn from(result: Option<Value>) -> Self {
        Outcome::Finish(result)
    }
}

/// A handler's return value as an outcome: `Err(text)` is [`Outcome::Retry`].
pub(crate) fn outcome_of<D: Into<Outcome>>(returned: Result<D, String>) -> Outcome {
    match returned {
        Ok(done) => done.into(),
        Err(text) => Outcome::Retry(text),
    }
}

/// The reason a time-limited attempt ends with.
pub(crate) fn time_limit_reason(limit: Duration) -> String {
    format!("time limit of {}s exceeded", limit.as_secs_f64())
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`), from
/// what `catch_unwind` caught; None for any other payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

type Hook = Box<dyn FnOnce() + Send>;

/// Tells a handler that runs on a thread (blocking worker, C, Python) that its time
/// limit passed: poll [`TimeUp::is_up`], or register a hook with [`TimeUp::on_up`].
/// The engine has then already failed the attempt; whatever the handler returns
/// afterwards is ignored.
#[derive(Clone, Default)]
pub struct TimeUp {
    inner: Arc<TimeUpInner>,
}

#[derive(Default)]
struct TimeUpInner {
    up: AtomicBool,
    hooks: Mutex<Vec<Hook>>,
    clock: Mutex<Clock>,
}

/// Where an attempt's time limit counts from.
#[derive(Clone, Copy, Debug, Default)]
enum Clock {
    /// From when the engine started the attempt.
    #[default]
    FromStart,
    /// Not yet: the task was handed over ahead of a free handler.
    Held,
    /// From when the handler began (a held task's [`TimeUp::start_clock`]).
    StartedAt(Instant),
}

impl std::fmt::Debug for TimeUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeUp").field("up", &self.is_up()).finish()
    }
}

impl TimeUp {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Runs `hook` once when the time is up (at once, on this thread, if it already is).
    /// Hooks run on one of the engine's blocking threads.
    pub fn on_up(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_up() {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }

    /// Says that the handler begins now: the time limit of a task handed over ahead of
    /// a free handler ([`crate::blocking::Worker::hand_ahead`]) counts from here, not
    /// from the hand-over. Once per attempt; later calls and other tasks change nothing.
    pub fn start_clock(&self) {
        let mut clock = self.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*clock, Clock::Held) {
            *clock = Clock::StartedAt(Instant::now());
        }
    }

    /// Holds the time limit until [`TimeUp::start_clock`].
    pub(crate) fn hold_clock(&self) {
        *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner()) = Clock::Held;
    }

    /// Called when `limit` has passed since the attempt started: None if the time is
    /// up, or when the limit runs out instead (a full limit from now while the clock
    /// is held, as the handler may begin any time).
    pub(crate) fn limit_runs_out_later(&self, limit: Duration) -> Option<Instant> {
        let now = Instant::now();
        match *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner()) {
            Clock::FromStart => None,
            Clock::Held => now.checked_add(limit),
            Clock::StartedAt(began) => began.checked_add(limit).filter(|&end| end > now),
        }
    }

    /// Marks the time up and runs the hooks registered so far.
    pub(crate) fn set(&self) {
        let hooks = {
            let mut hooks = self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.up.store(true, Ordering::Release);
            std::mem::take(&mut *hooks)
        };
        for hook in hooks {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_s_text_is_read_from_either_payload() {
        let text: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_text(&*text), Some("static"));
        let owned: Box<dyn std::any::Any + Send> = Box::new(format!("owned {}", 1));
        assert_eq!(panic_text(&*owned), Some("owned 1"));
        let other: Box<dyn std::any::Any + Send> = Box::new(7_u32);
        assert_eq!(panic_text(&*other), None);
    }

    #[test]
    fn a_held_clock_counts_from_its_start() {
        let limit = Duration::from_secs(10);
        let from_start = TimeUp::new();
        from_start.start_clock();
        assert_eq!(
            from_start.limit_runs_out_later(limit),
            None,
            "not held: up when it fires"
        );
        let held = TimeUp::new();
        held.hold_clock();
        let before = Instant::now();
        let later = held.limit_runs_out_later(limit).expect("held: a full limit more");
        assert!(later >= before + limit);
        held.start_clock();
        let ends = held.limit_runs_out_later(limit).expect("started just now");
        assert!(ends >= before + limit && ends <= Instant::now() + limit);
        std::thread::sleep(Duration::from_millis(5));
        held.start_clock();
        assert_eq!(
            held.limit_runs_out_later(limit),
            Some(ends),
            "the first start counts"
        );
        assert_eq!(
            held.limit_runs_out_later(Duration::ZERO),
            None,
            "up once it ran out"
        );
    }

    #[test]
    fn values_convert_into_outcomes() {
        assert_eq!(outcome_of::<()>(Ok(())), Outcome::Finish(None));
        assert_eq!(
            outcome_of(Ok(serde_json::json!({"a": 1}))),
            Outcome::Finish(Some(serde_json::json!({"a": 1})))
        );
        assert_eq!(outcome_of::<()>(Err("x".into())), Outcome::Retry("x".into()));
        assert_eq!(
            time_limit_reason(Duration::from_millis(1500)),
            "time limit of 1.5s exceeded"
        );
    }

    #[test]
    fn hooks_run_once_when_time_is_up() {
        let up = TimeUp::new();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = runs.clone();
        up.on_up(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!up.is_up());
        up.set();
        assert!(up.is_up());
        let r = runs.clone();
        up.on_up(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
