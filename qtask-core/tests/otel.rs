//! OpenTelemetry: a task carries its producer's trace context through the database,
//! so the worker's dispatch and handler spans continue the producer's trace. Spans go
//! to an in-memory exporter through the process's global subscriber (its own binary).
#![cfg(feature = "otel")]

mod common;

use std::collections::HashMap;

use once_cell::sync::Lazy;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use qtask_core::sqlx::{AssertSqlSafe, Row};
use qtask_core::{Client, Message, NewTask, Worker};
use serde_json::json;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

static EXPORTER: Lazy<InMemorySpanExporter> = Lazy::new(|| {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("qtask-test"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    exporter
});

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The one exported span named `name` whose `task_id` attribute is `task_id`.
fn span_of<'a>(spans: &'a [SpanData], name: &str, task_id: i64) -> &'a SpanData {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && attribute(s, "task_id") == Some(task_id.to_string()))
        .collect();
    assert_eq!(found.len(), 1, "{name} of task {task_id} in {spans:#?}");
    found[0]
}

/// Runs a worker on its own client (as another process would) until one task was handled.
async fn handle_one(client: &Client, queue: &str) {
    let (done, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(client.clone(), queue);
    let running = tokio::spawn(worker.run(
        move |message: Message| {
            let done = done.clone();
            async move {
                // A span of the handler's own nests in qtask.handle.
                tracing::info_span!("user.work", task = message.task_id).in_scope(|| {});
                done.send(message.task_id).unwrap();
                Ok(())
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    handled.recv().await.unwrap();
    let _ = stop.send(());
    assert_eq!(running.await.unwrap().unwrap().finished, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_span_continues_the_producers_trace() {
    let exporter = &*EXPORTER;
    for pair in common::pairs().await {
        let name = pair.name();
        exporter.reset();
        let (producer, clock) = common::fresh_pair(&pair).await;
        // The worker opens a client of its own: the context reaches it through the row.
        let config = producer.config().clone();
        let consumer = Client::open(config).await.unwrap();
        let queue = "OTEL:Q";

        let producer_span = tracing::info_span!("producer");
        let producer_trace = producer_span.context();
        let (trace_id, producer_id) = {
            use opentelemetry::trace::TraceContextExt;
            let ctx = producer_trace.span().span_context().clone();
            (ctx.trace_id(), ctx.span_id())
        };
        assert_ne!(trace_id, TraceId::INVALID);
        let created = producer
            .create(NewTask::new("traced", json!({"n": 1}), queue))
            .instrument(producer_span.clone())
            .await
            .unwrap();
        drop(producer_span);

        // The row keeps the W3C context of the create span.
        let sql = format!(
            "SELECT trace_context FROM {} WHERE id = {}",
            producer.store().table(),
            created.id
        );
        let row = qtask_core::sqlx::query(AssertSqlSafe(sql))
            .fetch_one(producer.store().pool())
            .await
            .unwrap();
        let stored: String = row.try_get(0).unwrap();
        let carrier: HashMap<String, String> = serde_json::from_str(&stored).unwrap();
        assert!(
            carrier["traceparent"].starts_with(&format!("00-{trace_id}-")),
            "{name}: {stored}"
        );

        handle_one(&consumer, queue).await;
        let spans = exporter.get_finished_spans().unwrap();

        let create = span_of(&spans, "qtask.create", created.id);
        assert_eq!(create.span_context.trace_id(), trace_id, "{name}");
        assert_eq!(create.parent_span_id, producer_id, "{name}");
        assert_eq!(attribute(create, "queue").as_deref(), Some(queue));

        let dispatch = span_of(&spans, "qtask.dispatch", created.id);
        assert_eq!(dispatch.span_context.trace_id(), trace_id, "{name}");
        assert_eq!(dispatch.parent_span_id, create.span_context.span_id(), "{name}");
        assert!(
            dispatch.parent_span_is_remote,
            "{name}: the parent came from the row"
        );
        assert_eq!(attribute(dispatch, "queue").as_deref(), Some(queue));
        assert_eq!(attribute(dispatch, "attempt").as_deref(), Some("1"));
        // Linked to the fetch that claimed it.
        let claim = spans
            .iter()
            .find(|s| s.name == "qtask.claim" && attribute(s, "queue").as_deref() == Some(queue))
            .unwrap_or_else(|| panic!("{name}: no qtask.claim in {spans:#?}"));
        assert!(
            dispatch
                .links
                .iter()
                .any(|l| l.span_context.span_id() == claim.span_context.span_id()),
            "{name}: {dispatch:#?}"
        );

        let handle = span_of(&spans, "qtask.handle", created.id);
        assert_eq!(handle.span_context.trace_id(), trace_id, "{name}");
        assert_eq!(handle.parent_span_id, dispatch.span_context.span_id(), "{name}");
        assert_eq!(attribute(handle, "outcome").as_deref(), Some("finished"));
        assert_eq!(attribute(handle, "queue").as_deref(), Some(queue));

        let work = spans.iter().find(|s| s.name == "user.work").unwrap();
        assert_eq!(work.parent_span_id, handle.span_context.span_id(), "{name}");
        assert_eq!(work.span_context.trace_id(), trace_id, "{name}");

        // A task created outside any span still gets a trace of its own, from create to
        // handler; a delayed one too.
        exporter.reset();
        let lone = producer
            .delay(
                NewTask::new("lone", json!({}), queue),
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
        clock.advance(std::time::Duration::from_secs(31));
        producer.sweep_once().await.unwrap();
        handle_one(&consumer, queue).await;
        let spans = exporter.get_finished_spans().unwrap();
        let create = span_of(&spans, "qtask.create", lone.id);
        assert_eq!(create.parent_span_id, SpanId::INVALID, "{name}");
        assert_eq!(attribute(create, "operation").as_deref(), Some("delay"));
        let handle = span_of(&spans, "qtask.handle", lone.id);
        assert_eq!(
            handle.span_context.trace_id(),
            create.span_context.trace_id(),
            "{name}"
        );

        consumer.close().await;
        common::drop_table(&producer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_insert_carries_the_producers_trace() {
    let _exporter = &*EXPORTER;
    let pair = common::pairs().await.into_iter().next().unwrap();
    let (client, _clock) = common::fresh_pair(&pair).await;
    let producer_span = tracing::info_span!("producer");
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        producer_span.context().span().span_context().trace_id()
    };
    let insert = producer_span
        .in_scope(|| {
            client.caller_insert(
                &NewTask::new("traced", json!({}), "OTEL:TX"),
                Default::default(),
                None,
            )
        })
        .unwrap();
    let traced = insert
        .insert
        .params
        .iter()
        .filter_map(|p| p.as_str())
        .any(|p| p.contains(&format!("00-{trace_id}-")));
    assert!(traced, "{:?}", insert.insert.params);
}
