//! Process metrics, recorded through the `metrics` facade: nothing is kept unless the
//! host program installs a recorder, or sets `Config::metrics_listen` (feature
//! `prometheus`, on by default) to serve them for Prometheus at `http://ADDR/metrics`.
//!
//! Series (all `qtask_`): `tasks_created_total{queue}`, `tasks_dispatched_total{attempt}`
//! (`first`, or `again` for a dispatch after a lease ran out or a retry),
//! `tasks_finished_total`, `tasks_failed_total{outcome}` (`retry` or `gave_up`),
//! `tasks_gave_up_total` (sweeper: deadline or max_count), `tasks_deleted_total`,
//! `tasks_rescued_total{queue}` (claims of a task whose previous attempt's lease ran
//! out), `tasks_retried_total` (operators' retries) and `tasks_cancelled_total` (cancels by filter),
//! `handler_duration_seconds{queue,outcome}` (a worker's handler run),
//! `claim_to_finish_seconds{queue,outcome}` (a worker's claim until its outcome
//! committed), `create_to_start_seconds{queue}` (create until the first attempt was
//! claimed; a delayed task's delay included), `sweep_duration_seconds{service}`.

use std::future::Future;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use tracing::Instrument;

use crate::task::Status;

pub(crate) fn created(queue: &str) {
    counter!("qtask_tasks_created_total", "queue" => queue.to_string()).increment(1);
}

pub(crate) fn dispatched(attempt: i64) {
    let attempt = if attempt > 1 { "again" } else { "first" };
    counter!("qtask_tasks_dispatched_total", "attempt" => attempt).increment(1);
}

/// A claim began the attempt after one whose lease ran out.
pub(crate) fn rescued(queue: &str) {
    counter!("qtask_tasks_rescued_total", "queue" => queue.to_string()).increment(1);
}

pub(crate) fn finished() {
    counter!("qtask_tasks_finished_total").increment(1);
}

pub(crate) fn failed(status: Status) {
    let outcome = if status == Status::Failed {
        "gave_up"
    } else {
        "retry"
    };
    counter!("qtask_tasks_failed_total", "outcome" => outcome).increment(1);
}

pub(crate) fn swept(gave_up: u64, deleted: u64) {
    counter!("qtask_tasks_gave_up_total").increment(gave_up);
    counter!("qtask_tasks_deleted_total").increment(deleted);
}

pub(crate) fn retried(n: u64) {
    counter!("qtask_tasks_retried_total").increment(n);
}

pub(crate) fn cancelled(n: u64) {
    counter!("qtask_tasks_cancelled_total").increment(n);
}

pub(crate) fn handler_done(queue: &str, ok: bool, took: Duration) {
    let outcome = if ok { "finished" } else { "failed" };
    histogram!("qtask_handler_duration_seconds", "queue" => queue.to_string(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// A worker's attempt from its claim until its outcome committed.
pub(crate) fn claim_to_finish(queue: &str, ok: bool, took: Duration) {
    let outcome = if ok { "finished" } else { "failed" };
    histogram!("qtask_claim_to_finish_seconds", "queue" => queue.to_string(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// A task's first attempt was claimed `waited_ms` (database clock) after its create.
pub(crate) fn started(queue: &str, waited_ms: i64) {
    histogram!("qtask_create_to_start_seconds", "queue" => queue.to_string())
        .record(waited_ms.max(0) as f64 / 1000.0);
}

/// Runs one sweeper service in its span and records how long it took.
pub(crate) async fn timed(
    service: &'static str,
    run: impl Future<Output = crate::Result<u64>>,
) -> crate::Result<u64> {
    let span = crate::trace::sweep_span(service);
    let started = Instant::now();
    let out = run.instrument(span.clone()).await;
    histogram!("qtask_sweep_duration_seconds", "service" => service).record(started.elapsed().as_secs_f64());
    if let Ok(tasks) = &out {
        span.record("tasks", tasks);
    }
    out
}

/// Serves this process's metrics on `config.metrics_listen`, once per process.
pub(crate) fn serve(config: &crate::Config) -> crate::Result<()> {
    match &config.metrics_listen {
        None => Ok(()),
        Some(addr) => listener::serve(addr),
    }
}

#[cfg(feature = "prometheus")]
mod listener {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    use crate::error::{invalid, Result};

    /// Latency buckets, in seconds.
    const BUCKETS: [f64; 12] = [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
    ];

    static SERVING: Mutex<Option<SocketAddr>> = Mutex::new(None);

    pub fn serve(addr: &str) -> Result<()> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| invalid(format!("metrics_listen {addr:?}: {e}")))?;
        let mut serving = SERVING.lock().unwrap_or_else(|e| e.into_inner());
        match *serving {
            Some(current) if current == addr => return Ok(()),
            Some(current) => {
                return Err(invalid(format!(
                    "this process already serves metrics on {current}; metrics_listen {addr} cannot be added"
                )))
            }
            None => {}
        }
        // On a thread of its own, so that the listener gets its own runtime and
        // outlives the caller's.
        let installed = std::thread::spawn(move || {
            PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .and_then(|builder| builder.install())
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| invalid("metrics listener panicked while starting"))?;
        installed.map_err(|e| invalid(format!("metrics_listen {addr}: {e}")))?;
        *serving = Some(addr);
        Ok(())
    }
}

#[cfg(not(feature = "prometheus"))]
mod listener {
    pub fn serve(addr: &str) -> crate::Result<()> {
        Err(crate::error::invalid(format!(
            "metrics_listen {addr:?}: qtask-core was built without the `prometheus` feature"
        )))
    }
}
