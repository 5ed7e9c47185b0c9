//! Spans of a task's life, through `tracing`: `qtask.create` (producer), `qtask.claim`
//! (one fetch that claimed tasks), `qtask.dispatch` (one task claimed: an attempt
//! began), `qtask.handle` (one handler run, in the worker engine), and at debug level
//! `qtask.sweep` (one sweeper service; every sweep interval, so off at info).
//!
//! With feature `otel` (on by default) a task carries the W3C trace context
//! (`traceparent`, `tracestate`) of its create span in the `trace_context` column, so
//! that its dispatch and handler spans continue the producer's trace in whatever
//! process claims it. The context is read from the `tracing-opentelemetry` layer of
//! the process's subscriber: the host's own, or the one `otlp_endpoint` installs
//! (feature `otlp`, export.rs). Without such a layer no context exists and none is kept.

use tracing::field::Empty;
use tracing::{debug_span, info_span, Span};

use crate::task::Message;

/// The span of one create (or delay); `task_id` is recorded once the row is written.
pub(crate) fn create_span(queue: &str, operation: &'static str) -> Span {
    info_span!(
        "qtask.create",
        otel.kind = "producer",
        operation,
        queue,
        task_id = Empty
    )
}

/// The span of one batch create.
pub(crate) fn create_many_span(count: usize) -> Span {
    info_span!("qtask.create_many", otel.kind = "producer", count)
}

/// Marks one fetch that claimed `claimed` tasks of `queue`.
pub(crate) fn claim_span(queue: &str, claimed: usize) -> Span {
    info_span!("qtask.claim", queue, claimed)
}

/// Marks the claim of one task, a child of its producer's context and linked to the
/// fetch that claimed it. The message then carries this span's context, so that
/// whatever runs the attempt continues from it.
pub(crate) fn dispatch(message: &mut Message, claim: &Span) {
    let span = info_span!(
        "qtask.dispatch",
        otel.kind = "consumer",
        task_id = message.task_id,
        queue = %message.queue,
        attempt = message.attempt
    );
    carry::adopt(&span, message.trace_context.as_deref());
    // An OpenTelemetry link to the claim (tracing-opentelemetry turns follows_from into one).
    span.follows_from(claim);
    if let Some(context) = carry::of(&span) {
        message.trace_context = Some(context);
    }
}

/// The span of one handler run, a child of the message's dispatch span.
pub(crate) fn handle_span(message: &Message) -> Span {
    let span = info_span!(
        "qtask.handle",
        otel.kind = "consumer",
        task_id = message.task_id,
        queue = %message.queue,
        attempt = message.attempt,
        outcome = Empty,
        otel.status_code = Empty
    );
    carry::adopt(&span, message.trace_context.as_deref());
    span
}

/// The span of one sweeper service's run.
pub(crate) fn sweep_span(service: &'static str) -> Span {
    debug_span!("qtask.sweep", service, tasks = Empty)
}

/// The W3C trace context of `span`, as the JSON object stored with a task; None when
/// no OpenTelemetry layer gives the span a context.
pub(crate) fn context_of(span: &Span) -> Option<String> {
    carry::of(span)
}

#[cfg(feature = "otel")]
mod carry {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::Context;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    pub fn of(span: &Span) -> Option<String> {
        let mut context = span.context();
        if !context.span().span_context().is_valid() {
            // A host that uses the OpenTelemetry API directly, without tracing spans.
            context = Context::current();
            if !context.span().span_context().is_valid() {
                return None;
            }
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        let ordered: std::collections::BTreeMap<_, _> = carrier.into_iter().collect();
        serde_json::to_string(&ordered).ok()
    }

    /// Makes `span` a child of the carried context; false when there is none to adopt.
    pub fn adopt(span: &Span, carried: Option<&str>) -> bool {
        let Some(carrier) =
            carried.and_then(|text| serde_json::from_str::<HashMap<String, String>>(text).ok())
        else {
            return false;
        };
        let context = TraceContextPropagator::new().extract(&carrier);
        if !context.span().span_context().is_valid() {
            return false;
        }
        span.set_parent(context).is_ok()
    }
}

#[cfg(not(feature = "otel"))]
mod carry {
    use tracing::Span;

    pub fn of(_: &Span) -> Option<String> {
        None
    }

    pub fn adopt(_: &Span, _: Option<&str>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(feature = "otel")]
    fn a_carried_context_round_trips() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
        use opentelemetry::Context;
        use std::collections::HashMap;

        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let _entered = Context::new().with_remote_span_context(remote).attach();
        let text = super::context_of(&tracing::Span::none()).unwrap();
        let carrier: HashMap<String, String> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            carrier["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(carrier["tracestate"], "vendor=x");
    }
}
