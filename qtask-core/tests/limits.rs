//! Queue-wide limits on every database × queue pair: two clients (two pools, as two
//! processes would have) race to claim, and together never exceed the limit.

mod common;

use std::time::Duration;

use common::{drop_table, fresh_pair, pairs};
use qtask_core::{Client, Message, NewTask, QueueLimits};
use serde_json::json;

const RACE_WAIT: Duration = Duration::from_millis(100);

/// Both clients fetch up to 10 tasks at once; returns what each claimed.
async fn race(a: &Client, b: &Client) -> (Vec<Message>, Vec<Message>) {
    let (x, y) = tokio::join!(a.fetch("LIM", 10, RACE_WAIT), b.fetch("LIM", 10, RACE_WAIT));
    (x.unwrap(), y.unwrap())
}

async fn setup(pair: &common::Pair, limits: QueueLimits) -> (Client, Client, qtask_core::Clock) {
    let (a, clock) = fresh_pair(pair).await;
    let b = Client::open(a.config().clone()).await.unwrap();
    a.set_queue_limits("LIM", limits).await.unwrap();
    let tasks = (0..10)
        .map(|i| NewTask::new("lim", json!({ "i": i }), "LIM"))
        .collect();
    a.create_many(tasks).await.unwrap();
    (a, b, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_processing_holds_across_racing_clients() {
    for pair in pairs().await {
        let name = pair.name();
        let limits = QueueLimits {
            max_processing: Some(3),
            max_per_second: None,
        };
        let (a, b, _clock) = setup(&pair, limits).await;
        let mut running = Vec::new();
        for round in 0..3 {
            let (x, y) = race(&a, &b).await;
            running.extend(x.into_iter().chain(y));
            assert_eq!(running.len(), 3, "{name} round {round}");
        }
        let queues = a.queues().await.unwrap();
        assert_eq!(queues[0].limits, limits, "{name}");
        assert_eq!(queues[0].processing, 3, "{name}");

        // One finishes: one more may start.
        a.finish_attempt(running.pop().unwrap().fence()).await.unwrap();
        if pair.carries_offers() {
            a.sweep_once().await.unwrap(); // offers refused for the limit come back
        }
        let (x, y) = race(&a, &b).await;
        assert_eq!(x.len() + y.len(), 1, "{name}");

        // Without limits both take what they can.
        a.set_queue_limits("LIM", QueueLimits::default()).await.unwrap();
        b.set_queue_limits("LIM", QueueLimits::default()).await.unwrap();
        if pair.carries_offers() {
            a.sweep_once().await.unwrap();
        }
        let (x, y) = race(&a, &b).await;
        assert_eq!(x.len() + y.len(), 6, "{name}");
        b.close().await;
        drop_table(&a).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_over_the_test_clock() {
    for pair in pairs().await {
        let name = pair.name();
        // One claim per two seconds: the bucket holds one token.
        let limits = QueueLimits {
            max_processing: None,
            max_per_second: Some(0.5),
        };
        let (a, b, clock) = setup(&pair, limits).await;
        let mut claimed = Vec::new();
        for (advance, expected) in [(0, 1), (0, 0), (2000, 1), (1000, 0), (1000, 1)] {
            clock.advance(Duration::from_millis(advance));
            if pair.carries_offers() {
                a.sweep_once().await.unwrap();
            }
            let (x, y) = race(&a, &b).await;
            assert_eq!(x.len() + y.len(), expected, "{name} after +{advance} ms");
            claimed.extend(x.into_iter().chain(y));
        }
        assert_eq!(claimed.len(), 3, "{name}");
        b.close().await;
        drop_table(&a).await;
    }
}

#[tokio::test]
async fn bad_limits_are_refused() {
    let pair = pairs().await.remove(0);
    let (c, _) = fresh_pair(&pair).await;
    for limits in [
        QueueLimits {
            max_processing: Some(0),
            max_per_second: None,
        },
        QueueLimits {
            max_processing: None,
            max_per_second: Some(0.0),
        },
        QueueLimits {
            max_processing: None,
            max_per_second: Some(f64::NAN),
        },
    ] {
        assert!(
            common::is_invalid(c.set_queue_limits("LIM", limits).await),
            "{limits:?}"
        );
    }
    assert!(common::is_invalid(
        c.set_queue_limits("", QueueLimits::default()).await
    ));
    assert!(c.queues().await.unwrap().is_empty());
    drop_table(&c).await;
}
