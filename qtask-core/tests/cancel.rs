//! Cancellable waits on every database × queue: a pop or a result wait blocked in the
//! engine ends as soon as its token is cancelled, claims nothing, and leaves a task
//! that arrives later for the next pop. (What Go's `Pop(ctx, …)` stands on.)

mod common;

use std::time::Duration;

use common::{fresh_pair, pairs};
use qtask_core::{CancellationToken, Error, NewTask};
use serde_json::json;
use tokio::time::timeout;

const Q: &str = "CANCEL:Q";
/// Far longer than any test runs: a wait that ends was ended by its token.
const LONG_WAIT: Duration = Duration::from_secs(3600);
/// What a cancelled wait is given to notice; it takes milliseconds.
const NOTICE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_cancelled_pop_ends_claims_nothing_and_leaves_later_tasks() {
    for pair in pairs().await {
        println!("-- {}", pair.name());
        let (c, _clock) = fresh_pair(&pair).await;

        // Cancelled while blocked (the token fires once the pop waits).
        let cancel = CancellationToken::new();
        let pop = tokio::spawn({
            let (c, cancel) = (c.clone(), cancel.clone());
            async move { c.pop_cancellable(Q, LONG_WAIT, &cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
        let popped = timeout(NOTICE, pop)
            .await
            .expect("the cancelled pop ends")
            .unwrap();
        assert!(matches!(popped, Ok(None)), "{popped:?}");

        // A task created after the cancel is the next pop's, on its first attempt.
        let created = c.create(NewTask::new("later", json!({"n": 1}), Q)).await.unwrap();
        let message = c
            .pop(Q, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the later task");
        assert_eq!((message.task_id, message.attempt), (created.id, 1));
        c.finish_attempt(message.fence()).await.unwrap();

        // Already cancelled: returns at once, even with a task waiting, and claims nothing.
        let waiting = c.create(NewTask::new("waiting", json!({}), Q)).await.unwrap();
        let done = CancellationToken::new();
        done.cancel();
        let popped = timeout(NOTICE, c.pop_cancellable(Q, LONG_WAIT, &done))
            .await
            .expect("an already cancelled pop ends");
        assert!(matches!(popped, Ok(None)), "{popped:?}");
        assert_eq!(c.get(waiting.id).await.unwrap().count, 0, "nothing was claimed");
        let message = c
            .pop(Q, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("still there");
        assert_eq!(message.task_id, waiting.id);
        c.finish_attempt(message.fence()).await.unwrap();

        common::drop_table(&c).await;
    }
}

/// Pops cancelled at every moment (before blocking, while blocked, while a task
/// arrives) never lose a task: each is either returned by the cancelled pop or left
/// for the next one. The sweeper is off, so a lost Redis offer would stay lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pops_cancelled_at_any_moment_lose_no_task() {
    for pair in pairs().await {
        println!("-- {}", pair.name());
        let (c, _clock) = fresh_pair(&pair).await;
        let mut created = Vec::new();
        let mut seen = Vec::new();
        for round in 0..20u64 {
            let cancel = CancellationToken::new();
            let pop = tokio::spawn({
                let (c, cancel) = (c.clone(), cancel.clone());
                async move { c.pop_cancellable(Q, LONG_WAIT, &cancel).await }
            });
            tokio::time::sleep(Duration::from_millis(round % 5)).await;
            if round % 2 == 0 {
                let task = NewTask::new("racing", json!({ "round": round }), Q);
                created.push(c.create(task).await.unwrap().id);
            }
            cancel.cancel();
            let popped = timeout(NOTICE, pop)
                .await
                .expect("the cancelled pop ends")
                .unwrap();
            if let Some(message) = popped.unwrap() {
                seen.push(message.task_id);
                c.finish_attempt(message.fence()).await.unwrap();
            }
        }
        while seen.len() < created.len() {
            let message = c
                .pop(Q, Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("lost: created {created:?}, seen {seen:?}"));
            seen.push(message.task_id);
            c.finish_attempt(message.fence()).await.unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, created);
        common::drop_table(&c).await;
    }
}

#[tokio::test]
async fn a_cancelled_result_wait_ends_as_a_timeout() {
    let pair = pairs().await.remove(0);
    let (c, _clock) = fresh_pair(&pair).await;
    let live = c.create(NewTask::new("live", json!({}), Q)).await.unwrap();
    let cancel = CancellationToken::new();
    let wait = tokio::spawn({
        let (c, cancel) = (c.clone(), cancel.clone());
        async move { c.result_cancellable(live.id, LONG_WAIT, &cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let result = timeout(NOTICE, wait)
        .await
        .expect("the cancelled wait ends")
        .unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    common::drop_table(&c).await;
}
