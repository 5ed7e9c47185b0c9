//! `GET /metrics`: Prometheus series, recorded with the `metrics` crate and printed
//! by `metrics-exporter-prometheus`. Task counts come from the kept counts (counts.rs).

use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use qtask_core::{Error, Result};

use super::counts::Counts;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

pub struct Exporter {
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the process's metrics recorder (once per process).
    pub fn install() -> Result<Exporter> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .and_then(|builder| builder.install_recorder())
            .map_err(|e| Error::Internal(format!("metrics recorder: {e}")))?;
        describe_gauge!("qtask_tasks", "Tasks in the table, by queue and status.");
        describe_gauge!("qtask_queue_paused", "1 when the queue is paused.");
        describe_gauge!(
            "qtask_tasks_due",
            "Live tasks whose next dispatch time has passed."
        );
        describe_gauge!(
            "qtask_tasks_redispatched_live",
            "Live tasks dispatched more than once (rescued after a lease ran out, or retried)."
        );
        describe_gauge!(
            "qtask_tasks_ended_last_minute",
            "Tasks finished or failed in the last whole minute (rows still in the table)."
        );
        describe_counter!(
            "qtask_dashboard_actions_total",
            "Retry, cancel, pause and resume done from the dashboard."
        );
        describe_histogram!(
            "qtask_dashboard_request_duration_seconds",
            Unit::Seconds,
            "Time to answer a dashboard API request."
        );
        describe_gauge!(
            "qtask_counting_duration_seconds",
            Unit::Seconds,
            "Time the last count of the table took (counts are kept and refreshed in the background)."
        );
        Ok(Exporter { handle })
    }

    pub fn observe_request(&self, route: &'static str, started: Instant) {
        histogram!("qtask_dashboard_request_duration_seconds", "route" => route)
            .record(started.elapsed().as_secs_f64());
    }

    pub fn count_action(&self, action: &str) {
        counter!("qtask_dashboard_actions_total", "action" => action.to_string()).increment(1);
    }

    /// Prints every series, the task counts from `counts`.
    pub fn render(&self, counts: &Counts) -> String {
        for q in &counts.queues {
            for (status, n) in [
                ("waiting", q.waiting),
                ("processing", q.processing),
                ("finished", q.finished),
                ("failed", q.failed),
                ("cancelled", q.cancelled),
            ] {
                gauge!("qtask_tasks", "queue" => q.queue.clone(), "status" => status).set(n as f64);
            }
            gauge!("qtask_queue_paused", "queue" => q.queue.clone()).set(if q.paused { 1.0 } else { 0.0 });
        }
        gauge!("qtask_tasks_due").set(counts.stats.due as f64);
        gauge!("qtask_tasks_redispatched_live").set(counts.stats.redispatched_live as f64);
        // The last whole minute (the last point is the minute now running).
        if let Some(last_whole) = counts.rates.iter().rev().nth(1) {
            gauge!("qtask_tasks_ended_last_minute", "status" => "finished").set(last_whole.finished as f64);
            gauge!("qtask_tasks_ended_last_minute", "status" => "failed").set(last_whole.failed as f64);
        }
        gauge!("qtask_counting_duration_seconds").set(counts.took_ms as f64 / 1000.0);
        self.handle.run_upkeep();
        self.handle.render()
    }
}
