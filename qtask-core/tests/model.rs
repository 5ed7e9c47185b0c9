//! Issue 10: a model-checked state machine. Random sequences of create / delay / pop /
//! finish_attempt / fail_attempt / cancel_attempt / sweep / clock advance run against
//! SQLite and against a small in-memory model of DESIGN.md's contract; after every
//! step each task's status must match the model's. proptest shrinks a failure to a
//! minimal sequence (keep it below as a regression case).
//!
//! Time is whole steps of 60 s on the shared test clock: a lease (timeout 60 s) and a
//! retry backoff (30 s + up to 10 % jitter) both end within one step, so the model
//! needs no jitter.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use qtask_core::{Client, Clock, Config, Fence, Fenced, NewTask, Status};
use serde_json::json;

const QUEUE: &str = "MODEL";
const STEP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Op {
    Create { max_count: u32 },
    Delay { max_count: u32 },
    Pop,
    Finish(usize),
    Fail(usize),
    Cancel(usize),
    Sweep,
    Advance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1u32..4).prop_map(|max_count| Op::Create { max_count }),
        1 => (1u32..4).prop_map(|max_count| Op::Delay { max_count }),
        3 => Just(Op::Pop),
        1 => (0usize..8).prop_map(Op::Finish),
        1 => (0usize..8).prop_map(Op::Fail),
        1 => (0usize..8).prop_map(Op::Cancel),
        1 => Just(Op::Sweep),
        2 => Just(Op::Advance),
    ]
}

/// The model's view of one task.
#[derive(Clone, Debug)]
struct Model {
    status: Status,
    attempts: u32,
    max_count: u32,
    /// In steps; None once ended.
    due_at: Option<u32>,
}

impl Model {
    fn live(&self) -> bool {
        self.status.is_live()
    }

    fn claimable(&self, now: u32) -> bool {
        self.live() && self.due_at.is_some_and(|d| d <= now) && self.attempts < self.max_count
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let file = std::env::temp_dir().join(format!("qtask-model-{}.db", std::process::id()));
    let db = common::Db {
        name: "sqlite",
        url: format!("sqlite://{}", file.display()),
    };
    let clock = Clock::database();
    let client = Client::open(Config {
        retry_backoff: Duration::from_secs(30),
        retry_backoff_max: Duration::from_secs(30),
        ..common::config(&db, &common::unique_prefix(), &clock)
    })
    .await
    .unwrap();
    client.install().await.unwrap();
    let result = check(&client, &clock, ops).await;
    common::drop_table(&client).await;
    result
}

async fn check(client: &Client, clock: &Clock, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut tasks: BTreeMap<i64, Model> = BTreeMap::new();
    let mut fences: Vec<Fence> = Vec::new();
    let mut now = 0u32;
    for (step, op) in ops.into_iter().enumerate() {
        let at = format!("step {step}: {op:?}");
        match op {
            Op::Create { max_count } | Op::Delay { max_count } => {
                let task = NewTask::new("model", json!({}), QUEUE)
                    .timeout(STEP)
                    // Ended rows stay for the whole run: the model checks every row.
                    .delete_deadline(Duration::from_secs(24 * 3600))
                    .max_count(max_count);
                let (created, due_at) = if matches!(op, Op::Create { .. }) {
                    (client.create(task).await.unwrap(), now)
                } else {
                    (client.delay(task, STEP).await.unwrap(), now + 1)
                };
                tasks.insert(
                    created.id,
                    Model {
                        status: Status::Waiting,
                        attempts: 0,
                        max_count,
                        due_at: Some(due_at),
                    },
                );
            }
            Op::Pop => {
                let popped = client.pop(QUEUE, Duration::ZERO).await.unwrap();
                match popped {
                    None => {
                        let any = tasks.values().any(|t| t.claimable(now));
                        prop_assert!(!any, "{at}: nothing claimed, but the model has a due task");
                    }
                    Some(m) => {
                        let t = tasks.get_mut(&m.task_id).expect("a task of this test");
                        prop_assert!(
                            t.claimable(now),
                            "{at}: claimed task {} not due: {t:?}",
                            m.task_id
                        );
                        t.attempts += 1;
                        prop_assert_eq!(m.attempt, i64::from(t.attempts), "{}", at);
                        t.status = Status::Processing;
                        t.due_at = Some(now + 1);
                        fences.push(m.fence());
                    }
                }
            }
            Op::Finish(k) | Op::Fail(k) | Op::Cancel(k) => {
                let Some(&fence) = fences.get(k % fences.len().max(1)) else {
                    continue;
                };
                let t = tasks.get_mut(&fence.task_id).unwrap();
                let current = t.live() && i64::from(t.attempts) == fence.attempt;
                let outcome = match op {
                    Op::Finish(_) => {
                        let done = client.finish_attempt(fence).await.unwrap();
                        if current {
                            t.status = Status::Finished;
                            t.due_at = None;
                        }
                        matches!(done, Fenced::Current(_))
                    }
                    Op::Fail(_) => {
                        let done = client.fail_attempt(fence, "model").await.unwrap();
                        if current {
                            if t.attempts >= t.max_count {
                                t.status = Status::Failed;
                                t.due_at = None;
                            } else {
                                t.status = Status::Waiting;
                                t.due_at = Some(now + 1);
                            }
                            prop_assert_eq!(done, Fenced::Current(t.status), "{}", at);
                        }
                        matches!(done, Fenced::Current(_))
                    }
                    _ => {
                        let done = client.cancel_attempt(fence).await.unwrap();
                        if current {
                            t.status = Status::Cancelled;
                            t.due_at = None;
                        }
                        matches!(done, Fenced::Current(_))
                    }
                };
                prop_assert_eq!(outcome, current, "{}: current or stale", at);
            }
            Op::Sweep => {
                let report = client.sweep_once().await.unwrap();
                let mut gave_up = 0;
                for t in tasks.values_mut() {
                    if t.live() && t.due_at.is_some_and(|d| d <= now) && t.attempts >= t.max_count {
                        t.status = Status::Failed;
                        t.due_at = None;
                        gave_up += 1;
                    }
                }
                prop_assert_eq!(report.gave_up, gave_up, "{}", at);
            }
            Op::Advance => {
                clock.advance(STEP);
                now += 1;
            }
        }
        for (id, t) in &tasks {
            let row = client.get(*id).await.unwrap();
            prop_assert_eq!(row.status, t.status, "{}: task {}", at, id);
            prop_assert_eq!(row.count, i64::from(t.attempts), "{}: task {}", at, id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_sqlite_table_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}
