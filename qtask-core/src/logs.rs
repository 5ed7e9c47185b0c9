//! Log lines for hosts that are not Rust. The engine logs through `tracing`; a binding
//! calls [`forward_to`] once with a sink (Python's `logging`, a C or Go callback) and
//! every event at `info` or above reaches it as a level and one line of text, with URL
//! passwords hidden. Rust programs install their own subscriber instead.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use once_cell::sync::OnceCell;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

use crate::secret::redact;

/// Severity of a forwarded line (the C ABI's numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum LogLevel {
    Error = 40,
    Warn = 30,
    Info = 20,
}

/// Receives each forwarded line. Called on the engine's threads: keep it short.
pub type Sink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALLED: OnceCell<bool> = OnceCell::new();

/// A layer the process's subscriber carries beside the forwarder (the OTLP exporter).
pub(crate) type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Sends the engine's log lines to `sink` from now on (replacing an earlier sink).
/// Returns false when another `tracing` subscriber was already installed in this
/// process (then that one keeps receiving them).
pub fn forward_to(sink: Sink) -> bool {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    install(None)
}

/// Installs the process's subscriber with `extra` (otlp.rs); false when a subscriber
/// was installed before (ours without it, or another), so `extra` was not added.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn install_with(extra: ExtraLayer) -> bool {
    let mut extra = Some(extra);
    install(Some(&mut extra)) && extra.is_none()
}

/// Installs, once, the registry with the forwarder and what `extra` holds (taken).
fn install(extra: Option<&mut Option<ExtraLayer>>) -> bool {
    *INSTALLED.get_or_init(|| {
        let layer = extra.and_then(Option::take);
        // Without an exporter nothing reads spans: declined, each `info_span!` of the
        // hot path is a no-op instead of a span in the registry (an allocation, and an
        // enter and exit per poll of every attempt).
        let forward = Forward {
            spans: layer.is_some(),
        };
        let subscriber = tracing_subscriber::registry().with(layer).with(forward);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    })
}

/// Stops forwarding (lines are dropped until a new sink is set).
pub fn stop_forwarding() {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Forwards events to the sink. A layer that declines a span declines it for every
/// layer of the subscriber, so it lets spans through only for an exporter beside it.
struct Forward {
    spans: bool,
}

impl<S: Subscriber> Layer<S> for Forward {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= Level::INFO && (self.spans || metadata.is_event())
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            _ => return,
        };
        let Some(sink) = SINK.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let mut line = Line::default();
        event.record(&mut line);
        sink(level, &redact(&line.text));
    }
}

/// `message key=value …`, as one line.
#[derive(Default)]
struct Line {
    text: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.text);
            let _ = write!(self.text, "{value:?}");
            if !rest.is_empty() {
                self.text.push(' ');
                self.text.push_str(&rest);
            }
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lines_reach_the_sink_without_passwords() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        forward_to(Arc::new(move |level, line: &str| {
            into.lock().unwrap().push((level, line.to_string()))
        }));
        tracing::warn!(
            url = "redis://:hunter2@h:6379",
            count = 3,
            "qtask: queue unreachable"
        );
        tracing::debug!("not forwarded");
        // Without an exporter spans are declined (each would cost an attempt a
        // registry entry), and events inside one still arrive.
        let span = tracing::info_span!("qtask.handle", task_id = 7);
        assert!(span.is_disabled());
        span.in_scope(|| tracing::info!("inside a span"));
        stop_forwarding();
        tracing::warn!("after stop");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[1], (LogLevel::Info, "inside a span".to_string()));
        assert_eq!(seen[0].0, LogLevel::Warn);
        assert!(seen[0].1.starts_with("qtask: queue unreachable"), "{}", seen[0].1);
        assert!(
            seen[0].1.contains("count=3") && !seen[0].1.contains("hunter2"),
            "{}",
            seen[0].1
        );
    }
}
