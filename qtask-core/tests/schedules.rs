//! Periodic tasks on every database: declared, listed, replaced and removed; each tick
//! becomes exactly one task however many sweepers race for it; ticks missed while
//! nothing ran are run once or skipped. Time moves with the shared test clock.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{databases, fresh, pairs, Db};
use qtask_core::admin::TaskFilter;
use qtask_core::{Client, Clock, Error, Missed, Schedule, Task};
use serde_json::json;

const Q: &str = "SCHED:Q";
const MINUTE: Duration = Duration::from_secs(60);

async fn on_each_db<F, Fut>(scenario: F)
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in databases().await {
        println!("-- {}", db.name);
        scenario(db).await;
    }
}

async fn tasks_of(client: &Client) -> Vec<Task> {
    let page = client
        .list_tasks(&TaskFilter::default(), None, 1000)
        .await
        .unwrap();
    page.tasks
}

fn every_minute(name: &str) -> Schedule {
    Schedule::every(name, json!({ "report": name }), Q, MINUTE)
}

#[tokio::test]
async fn schedules_are_declared_listed_replaced_and_removed() {
    on_each_db(|db| async move {
        let (c, _clock) = fresh(&db).await;
        assert!(c.schedules().await.unwrap().is_empty());

        let cron = Schedule::cron("nightly", json!({"kind": "report"}), Q, "0 9 * * *")
            .time_zone("Asia/Shanghai")
            .missed(Missed::Skip)
            .timeout(Duration::from_secs(30))
            .max_count(3);
        let info = c.schedule(cron.clone()).await.unwrap();
        assert_eq!(info.cron.as_deref(), Some("0 9 * * *"));
        assert_eq!(info.time_zone.as_deref(), Some("Asia/Shanghai"));
        assert_eq!(
            (info.every_ms, info.missed, info.timeout_ms, info.max_count),
            (None, Missed::Skip, 30_000, 3)
        );
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(info.next_at % 86_400_000, 3_600_000, "{info:?}");
        assert_eq!(info.last_task_id, None);

        let interval = c.schedule(every_minute("pulse")).await.unwrap();
        assert_eq!(
            (
                interval.every_ms,
                interval.cron.clone(),
                interval.time_zone.clone()
            ),
            (Some(60_000), None, None)
        );
        let names: Vec<String> = c.schedules().await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["nightly", "pulse"]);

        // Declared again unchanged (a program restarting): the next tick stays.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = c.schedule(every_minute("pulse")).await.unwrap();
        assert_eq!(again.next_at, interval.next_at);
        // A new input or queue keeps the tick too; a new interval starts a new series.
        let new_input = Schedule::every("pulse", json!({"v": 2}), "SCHED:OTHER", MINUTE);
        let replaced = c.schedule(new_input).await.unwrap();
        assert_eq!(
            (replaced.next_at, replaced.queue.as_str()),
            (interval.next_at, "SCHED:OTHER")
        );
        assert_eq!((replaced.input.clone(), replaced.priority), (json!({"v": 2}), 0));
        let urgent = c.schedule(every_minute("pulse").priority(-3)).await.unwrap();
        assert_eq!((urgent.priority, urgent.next_at), (-3, interval.next_at));
        let faster = c
            .schedule(Schedule::every("pulse", json!({}), Q, Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(faster.next_at < interval.next_at, "{faster:?}");
        assert_eq!(faster.created_at, interval.created_at);

        assert!(c.unschedule("pulse").await.unwrap());
        assert!(!c.unschedule("pulse").await.unwrap());
        assert_eq!(c.schedules().await.unwrap().len(), 1);
        common::drop_table(&c).await;
    })
    .await;
}

#[tokio::test]
async fn bad_schedules_are_invalid_arguments_and_write_nothing() {
    on_each_db(|db| async move {
        let (c, _clock) = fresh(&db).await;
        let bad = [
            Schedule::cron("x", json!({}), Q, "61 * * * *"),
            Schedule::cron("x", json!({}), Q, "not cron"),
            Schedule::cron("x", json!({}), Q, "0 0 30 2 *"), // February 30th: never
            Schedule::cron("x", json!({}), Q, "* * * * *").time_zone("Mars/Olympus"),
            Schedule::every("x", json!({}), Q, Duration::ZERO),
            Schedule::every("x", json!({}), Q, MINUTE).time_zone("UTC"),
            Schedule::every("x", json!([1]), Q, MINUTE),
            Schedule::every("", json!({}), Q, MINUTE),
            Schedule::every("x", json!({}), "a queue", MINUTE),
            Schedule::every("x", json!({}), Q, MINUTE).priority(-1001),
        ];
        for schedule in bad {
            let result = c.schedule(schedule.clone()).await;
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "{schedule:?}: {result:?}"
            );
        }
        assert!(c.schedules().await.unwrap().is_empty());
        common::drop_table(&c).await;
    })
    .await;
}

/// On both queues: the tick's task reaches a worker with the schedule's input, once.
#[tokio::test]
async fn a_due_tick_becomes_one_task_that_a_worker_receives() {
    for pair in pairs().await {
        println!("-- {}", pair.name());
        let (c, clock) = common::fresh_pair(&pair).await;
        let info = c
            .schedule(every_minute("pulse").timeout(Duration::from_secs(30)).priority(7))
            .await
            .unwrap();
        assert_eq!(info.priority, 7);
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 0, "not due yet");

        clock.advance(MINUTE + Duration::from_secs(1));
        let report = c.sweep_once().await.unwrap();
        assert_eq!(report.scheduled, 1);
        assert_eq!(
            c.sweep_once().await.unwrap().scheduled,
            0,
            "a tick makes one task"
        );

        let message = c
            .pop(Q, Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the tick's task");
        assert_eq!(message.input.get("report"), Some(&json!("pulse")));
        let task = c.get(message.task_id).await.unwrap();
        assert_eq!(
            (task.name.as_str(), task.timeout_ms, task.priority),
            ("pulse", 30_000, 7),
            "the tick's task has the schedule's timeout and priority"
        );
        c.finish_attempt(message.fence()).await.unwrap();

        let after = c.schedules().await.unwrap().remove(0);
        assert_eq!(after.last_tick_at, Some(info.next_at));
        assert_eq!(after.last_task_id, Some(message.task_id));
        assert_eq!(
            after.next_at,
            info.next_at + 60_000,
            "an interval keeps its phase"
        );
        common::drop_table(&c).await;
    }
}

/// Two clients sweep the same table at once, tick after tick: one task per schedule
/// per tick, never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sweepers_make_one_task_per_tick() {
    on_each_db(|db| async move {
        let prefix = common::unique_prefix();
        let clock = Clock::database();
        let a = Client::open(common::config(&db, &prefix, &clock)).await.unwrap();
        a.install().await.unwrap();
        let b = Client::open(common::config(&db, &prefix, &clock)).await.unwrap();
        const SCHEDULES: usize = 4;
        const TICKS: usize = 6;
        for i in 0..SCHEDULES {
            a.schedule(every_minute(&format!("s{i}"))).await.unwrap();
        }
        for _ in 0..TICKS {
            clock.advance(MINUTE);
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { a.sweep_once().await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { b.sweep_once().await }
                })
            );
            let made = ra.unwrap().unwrap().scheduled + rb.unwrap().unwrap().scheduled;
            assert_eq!(made, SCHEDULES as u64, "each schedule's tick taken once");
        }
        let tasks = tasks_of(&a).await;
        assert_eq!(tasks.len(), SCHEDULES * TICKS);
        let mut per_schedule: HashMap<String, usize> = HashMap::new();
        for task in &tasks {
            *per_schedule.entry(task.name.clone()).or_default() += 1;
        }
        assert!(per_schedule.values().all(|n| *n == TICKS), "{per_schedule:?}");
        b.close().await;
        common::drop_table(&a).await;
    })
    .await;
}

#[tokio::test]
async fn missed_ticks_run_once_then_resume_in_the_future() {
    on_each_db(|db| async move {
        let (c, clock) = fresh(&db).await;
        let info = c.schedule(every_minute("catch-up")).await.unwrap();
        // Everything was down for ten ticks.
        clock.advance(10 * MINUTE + Duration::from_secs(1));
        assert_eq!(
            c.sweep_once().await.unwrap().scheduled,
            1,
            "one catch-up task, not ten"
        );
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 0);
        let after = c.schedules().await.unwrap().remove(0);
        // updated_at is when the sweep took the tick (database clock).
        assert!(
            after.next_at > after.updated_at,
            "the next tick is in the future: {after:?}"
        );
        assert_eq!((after.next_at - info.next_at) % 60_000, 0, "same phase");
        assert_eq!(
            after.last_tick_at,
            Some(info.next_at),
            "the catch-up task is the first missed tick's"
        );

        clock.advance(MINUTE);
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 1, "back on time");
        assert_eq!(tasks_of(&c).await.len(), 2);
        common::drop_table(&c).await;
    })
    .await;
}

#[tokio::test]
async fn missed_ticks_are_skipped_with_the_skip_policy() {
    on_each_db(|db| async move {
        let (c, clock) = fresh(&db).await;
        c.schedule(every_minute("skipper").missed(Missed::Skip))
            .await
            .unwrap();
        // On time: the tick just came.
        clock.advance(MINUTE + Duration::from_secs(1));
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 1);

        // Down for ten ticks: nothing is made for them.
        clock.advance(10 * MINUTE);
        assert_eq!(
            c.sweep_once().await.unwrap().scheduled,
            0,
            "missed ticks are skipped"
        );
        let skipped = c.schedules().await.unwrap().remove(0);
        assert!(
            skipped.next_at > skipped.updated_at,
            "straight to the next future tick"
        );
        assert_eq!(tasks_of(&c).await.len(), 1);

        // The next tick in the future runs as usual.
        clock.advance(MINUTE);
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 1);
        assert_eq!(tasks_of(&c).await.len(), 2);
        common::drop_table(&c).await;
    })
    .await;
}

#[tokio::test]
async fn cron_schedules_tick_on_their_expression() {
    on_each_db(|db| async move {
        let (c, clock) = fresh(&db).await;
        let info = c
            .schedule(Schedule::cron("minutely", json!({}), Q, "* * * * *"))
            .await
            .unwrap();
        assert_eq!(info.next_at % 60_000, 0, "on a minute boundary");
        clock.advance(MINUTE);
        assert_eq!(c.sweep_once().await.unwrap().scheduled, 1);
        let after = c.schedules().await.unwrap().remove(0);
        assert_eq!(after.next_at % 60_000, 0);
        assert!(after.next_at > info.next_at);
        common::drop_table(&c).await;
    })
    .await;
}

/// The background sweeper (started with the client) runs the scheduler too.
#[tokio::test]
async fn the_background_sweeper_makes_scheduled_tasks() {
    let db = databases().await.remove(0);
    let prefix = common::unique_prefix();
    let clock = Clock::database();
    let config = qtask_core::Config {
        sweeper: true,
        sweep_interval: Duration::from_millis(50),
        ..common::config(&db, &prefix, &clock)
    };
    let c = Client::open(config).await.unwrap();
    c.install().await.unwrap();
    c.schedule(every_minute("background")).await.unwrap();
    clock.advance(MINUTE + Duration::from_secs(1));
    let message = c.pop(Q, Duration::from_secs(10)).await.unwrap();
    assert!(message.is_some(), "the sweeper made the tick's task");
    common::drop_table(&c).await;
}

/// A cron expression with a year ticks for the last time in that year, then never.
#[tokio::test]
async fn a_cron_with_a_passed_year_stops_ticking() {
    let db = databases().await.remove(0);
    let (c, clock) = fresh(&db).await;
    // 2090-01-01T00:00:00Z, seconds-first with a year field.
    const AT_MS: i64 = 3_786_912_000_000;
    let info = c
        .schedule(Schedule::cron("once", json!({}), Q, "0 0 0 1 1 * 2090"))
        .await
        .unwrap();
    assert_eq!(info.next_at, AT_MS);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    clock.advance(Duration::from_millis(AT_MS as u64) - wall + MINUTE);
    assert_eq!(c.sweep_once().await.unwrap().scheduled, 1);
    let after = c.schedules().await.unwrap().remove(0);
    assert_eq!(after.next_at, qtask_core::NO_MORE_TICKS);
    assert_eq!(c.sweep_once().await.unwrap().scheduled, 0);
    common::drop_table(&c).await;
}
