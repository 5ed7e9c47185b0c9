//! Priorities on every database × queue pair: claims take higher priority first, then
//! the earliest due.

mod common;

use std::time::Duration;

use common::{drop_table, fresh_pair, is_invalid, pairs};
use qtask_core::{NewTask, MAX_PRIORITY};
use serde_json::json;

fn task(label: &str, priority: i32) -> NewTask {
    NewTask::new("prio", json!({ "label": label }), "PRIO").priority(priority)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_take_higher_priority_then_earliest_due() {
    for pair in pairs().await {
        let (c, clock) = fresh_pair(&pair).await;
        let name = pair.name();
        // Due later but more urgent ones, due now but less urgent ones, and a batch.
        c.delay(task("zero-due-2s", 0), Duration::from_secs(2))
            .await
            .unwrap();
        c.delay(task("five-due-3s", 5), Duration::from_secs(3))
            .await
            .unwrap();
        c.delay(task("five-due-1s", 5), Duration::from_secs(1))
            .await
            .unwrap();
        c.create(task("minus-three", -3)).await.unwrap();
        let ten = c.create(task("ten", 10)).await.unwrap().id;
        c.create_many(vec![task("seven", 7), task("minus-four", -4)])
            .await
            .unwrap();
        assert_eq!(c.get(ten).await.unwrap().priority, 10, "{name}");

        // Before the delays pass only the tasks due now are claimed, by priority.
        let mut order = Vec::new();
        for _ in 0..2 {
            let m = c.pop("PRIO", Duration::from_secs(2)).await.unwrap().expect(&name);
            c.finish_attempt(m.fence()).await.unwrap();
            order.push(m.input["label"].as_str().unwrap().to_string());
        }
        clock.advance(Duration::from_secs(4));
        if pair.carries_offers() {
            assert_eq!(c.sweep_once().await.unwrap().dispatched, 3, "{name}");
        }
        while let Some(m) = c.pop("PRIO", Duration::from_millis(300)).await.unwrap() {
            c.finish_attempt(m.fence()).await.unwrap();
            order.push(m.input["label"].as_str().unwrap().to_string());
        }
        assert_eq!(
            order,
            [
                "ten",
                "seven",
                "five-due-1s",
                "five-due-3s",
                "zero-due-2s",
                "minus-three",
                "minus-four"
            ],
            "{name}"
        );
        drop_table(&c).await;
    }
}

#[tokio::test]
async fn priorities_out_of_range_write_nothing() {
    let pair = pairs().await.remove(0);
    let (c, _) = fresh_pair(&pair).await;
    assert!(is_invalid(c.create(task("high", MAX_PRIORITY + 1)).await));
    assert!(is_invalid(
        c.create_many(vec![task("ok", 1), task("low", -MAX_PRIORITY - 1)])
            .await
    ));
    assert!(c.create(task("edge", -MAX_PRIORITY)).await.is_ok());
    assert_eq!(c.stats().await.unwrap().waiting, 1);
    drop_table(&c).await;
}
