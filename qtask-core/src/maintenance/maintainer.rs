//! Starts the sweep loop when a client opens and stops it when the client closes.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, MissedTickBehavior};

use super::{sweep_once, Context};

/// A running sweep loop. `stop` may be called any number of times.
#[derive(Debug)]
pub struct Maintainer {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl Maintainer {
    /// Spawns the loop on the current tokio runtime.
    pub(crate) fn start(ctx: Context, interval: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            // A random first delay keeps many sweepers from hitting the database in step.
            let jitter = interval.mul_f64(fastrand::f64());
            tokio::select! {
                _ = sleep(jitter) => {}
                _ = stopped.changed() => return,
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                match sweep_once(&ctx).await {
                    Ok(_) => failures = 0,
                    Err(err) => {
                        failures += 1;
                        // One line per outage step, not one per tick.
                        if failures.is_power_of_two() {
                            tracing::warn!(error = %err, failures, "qtask: sweep failed; retrying");
                        }
                        let backoff = interval
                            .mul_f64(f64::from(failures.min(5)))
                            .min(Duration::from_secs(5));
                        tokio::select! {
                            _ = sleep(backoff) => {}
                            _ = stopped.changed() => return,
                        }
                    }
                }
            }
        });
        Maintainer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the loop and waits for a sweep in progress to end.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}
