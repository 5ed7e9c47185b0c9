//! The blocking client: usable from plain threads and from inside a tokio runtime.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use qtask_core::blocking::{Client, Reply, StopSignal, Worker};
use qtask_core::{Clock, Config, Error, Message, NewTask, Outcome, Status, TimeUp, WorkerReport};
use serde_json::json;

fn open() -> Client {
    let db = common::Db {
        name: "sqlite",
        url: format!(
            "sqlite://{}",
            std::env::temp_dir()
                .join(format!("qtask-blocking-{}.db", std::process::id()))
                .display()
        ),
    };
    let client = Client::open(common::config(&db, &common::unique_prefix(), &Clock::database())).unwrap();
    client.install().unwrap();
    client
}

fn drop_table(client: &Client) {
    let c = client.as_async().clone();
    qtask_core::blocking::wait(async move {
        common::drop_table(&c).await;
        Ok(())
    })
    .unwrap();
}

#[test]
fn many_threads_share_one_client() {
    let client = Arc::new(open());
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    c.create(NewTask::new("n", json!({"t": t, "i": i}), "Q")).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                while let Some(m) = c.pop("Q", Duration::from_millis(200)).unwrap() {
                    assert!(c.processing(m.task_id).unwrap());
                    c.finish(m.task_id).unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: i32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(done, 100);
    assert_eq!(client.stats().unwrap().finished, 100);
    drop_table(&client);
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_tokio_runtime_without_panicking() {
    let client = open();
    let id = client.create(NewTask::new("n", json!({}), "Q")).unwrap().id;
    assert_eq!(
        client.pop("Q", Duration::from_secs(1)).unwrap().unwrap().task_id,
        id
    );
    client.finish(id).unwrap();
    drop_table(&client);
    client.close();
    assert!(matches!(client.get(id), Err(Error::Closed)));
}

#[test]
fn open_errors_are_returned_not_panicked() {
    let config = Config {
        db: "postgres://postgres@127.0.0.1:1/none".into(),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    assert!(matches!(Client::open(config), Err(Error::Database(_))));
}

/// A worker test's client: a SQLite file of the test's own (`tag`), the sweeper off (no
/// cleanup: finished rows stay to be counted); closed and its file removed on drop.
struct WorkerDb {
    client: Client,
    file: PathBuf,
}

impl WorkerDb {
    fn open(tag: &str) -> Self {
        let file = std::env::temp_dir().join(format!("qtask-{tag}-{}.db", std::process::id()));
        let config = Config {
            db: format!("sqlite://{}", file.display()),
            sweeper: false,
            ..Config::default()
        };
        let client = Client::open(config).unwrap();
        client.install().unwrap();
        WorkerDb { client, file }
    }
}

impl Drop for WorkerDb {
    fn drop(&mut self) {
        self.client.close();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The blocking worker runs the engine with a plain function, from a thread without a
/// runtime, and stops when its signal is set from another thread.
#[test]
fn blocking_worker_runs_plain_handlers_until_stopped() {
    let db = WorkerDb::open("bw");
    let client = &db.client;
    let tasks = (0..20)
        .map(|i| NewTask::new("bw", json!({ "i": i }), "BW"))
        .collect();
    client.create_many(tasks).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let seen = handled.clone();
    let stop = StopSignal::new();
    let stopper = stop.clone();
    let watcher = std::thread::spawn(move || {
        while seen.load(Ordering::SeqCst) < 20 {
            std::thread::sleep(Duration::from_millis(10));
        }
        stopper.stop();
    });
    let counter = handled.clone();
    let report = Worker::new(client, "BW")
        .concurrency(4)
        .run(
            move |m| {
                counter.fetch_add(1, Ordering::SeqCst);
                if m.input["i"] == 7 {
                    Err("seven fails".into())
                } else {
                    Ok(())
                }
            },
            &stop,
        )
        .unwrap();
    watcher.join().unwrap();
    assert_eq!((report.finished, report.failed), (19, 1), "{report:?}");
    assert_eq!(client.stats().unwrap().finished, 19);
}

/// The blocking worker tells a handler on a thread that its time is up (it polls its
/// `TimeUp`), fails the attempt with the reason, and keeps a handler's result.
#[test]
fn blocking_worker_time_limit_and_result() {
    let db = WorkerDb::open("bwt");
    let client = &db.client;
    let task = |slow: bool| {
        NewTask::new("bwt", json!({ "slow": slow }), "BWT").delete_deadline(Duration::from_secs(3600))
    };
    let slow = client.create(task(true)).unwrap().id;
    let quick = client.create(task(false)).unwrap().id;
    let told = Arc::new(AtomicBool::new(false));
    let stop = StopSignal::new();
    let (handler_told, stopper) = (told.clone(), stop.clone());
    let report = Worker::new(client, "BWT")
        .concurrency(2)
        .time_limit(Duration::from_millis(200))
        .run_with_time_up(
            move |m, time_up| {
                if m.input["slow"] == false {
                    return Ok(Outcome::result(json!({"ok": true})));
                }
                for _ in 0..1000 {
                    if time_up.is_up() {
                        handler_told.store(true, Ordering::SeqCst);
                        stopper.stop();
                        return Ok(().into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err("never told".into())
            },
            &stop,
        )
        .unwrap();
    assert!(told.load(Ordering::SeqCst));
    assert_eq!((report.finished, report.failed), (1, 1), "{report:?}");
    let row = client.get(slow).unwrap();
    assert_eq!(row.last_error.as_deref(), Some("time limit of 0.2s exceeded"));
    assert_eq!(row.status, Status::Waiting);
    assert_eq!(
        client.result(quick, Duration::from_secs(5)).unwrap(),
        json!({"ok": true})
    );
}

/// Runs `worker` with `run_handing_off`, every task answered on one thread of the
/// caller's own, in arrival order, after starting its clock: the task with `n` 99
/// once its time is up (an error, ignored), the others after `work`, with `{"n": n}`
/// as their result. Stops after `answers`; returns the report and the most tasks
/// handed over and not yet taken by that thread at once.
fn answer_on_one_thread(worker: Worker, answers: usize, work: Duration) -> (WorkerReport, usize) {
    type Handed = (Message, TimeUp, Reply);
    let (hand, handed) = mpsc::channel::<Handed>();
    let waiting = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let stop = StopSignal::new();
    let (taker_waiting, stopper) = (waiting.clone(), stop.clone());
    let runner = std::thread::spawn(move || {
        for (done, (m, time_up, reply)) in handed.into_iter().enumerate() {
            taker_waiting.fetch_sub(1, Ordering::SeqCst);
            time_up.start_clock();
            if m.input["n"] == 99 {
                while !time_up.is_up() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                reply.send_returned::<()>(Err("ignored".into()));
            } else {
                std::thread::sleep(work);
                reply.send_returned(Ok(json!({"n": m.input["n"].clone()})));
            }
            if done + 1 == answers {
                stopper.stop();
            }
        }
    });
    let hand = Mutex::new(hand);
    let handler_most = most.clone();
    let report = worker
        .run_handing_off(
            move |m, time_up, reply| {
                let now = waiting.fetch_add(1, Ordering::SeqCst) + 1;
                handler_most.fetch_max(now, Ordering::SeqCst);
                hand.lock().unwrap().send((m, time_up, reply)).unwrap();
            },
            &stop,
        )
        .unwrap();
    runner.join().unwrap();
    (report, most.load(Ordering::SeqCst))
}

/// `run_handing_off`: the handler hands each task to a thread of the caller's own,
/// which sends the outcome later; at most `concurrency` tasks are out at once. A
/// task's own time limit reaches the handler through its `TimeUp`.
#[test]
fn blocking_worker_replies_from_the_caller_s_threads() {
    let db = WorkerDb::open("brep");
    let client = &db.client;
    let task =
        |n: i64| NewTask::new("brep", json!({ "n": n }), "BREP").delete_deadline(Duration::from_secs(3600));
    let ids: Vec<i64> = (0..12).map(|n| client.create(task(n)).unwrap().id).collect();
    let limited = client
        .create(task(99).time_limit(Duration::from_millis(200)))
        .unwrap()
        .id;
    let worker = Worker::new(client, "BREP").concurrency(3);
    let (report, most) = answer_on_one_thread(worker, 13, Duration::from_millis(5));
    assert_eq!((report.finished, report.failed), (12, 1), "{report:?}");
    assert!(most <= 3, "{most:?}");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            client.result(*id, Duration::from_secs(5)).unwrap(),
            json!({ "n": n })
        );
    }
    let row = client.get(limited).unwrap();
    assert_eq!(row.last_error.as_deref(), Some("time limit of 0.2s exceeded"));
}

/// `hand_ahead`: the engine hands over more tasks than the concurrency; those that
/// wait in the caller's queue keep their whole time limit, which counts from
/// `TimeUp::start_clock`, and one that then overruns it still fails for it. One
/// thread runs them one at a time (the concurrency of 1), 150 ms each: the last of
/// five waits 600 ms for it, past the limit of 300 ms from its hand-over.
#[test]
fn tasks_handed_ahead_keep_their_time_limit_until_started() {
    let db = WorkerDb::open("bahead");
    let client = &db.client;
    let task = |n: i64| {
        NewTask::new("bahead", json!({ "n": n }), "BAHEAD").delete_deadline(Duration::from_secs(3600))
    };
    let ids: Vec<i64> = (0..5).map(|n| client.create(task(n)).unwrap().id).collect();
    let overrun = client.create(task(99)).unwrap().id;
    let worker = Worker::new(client, "BAHEAD")
        .concurrency(1)
        .hand_ahead(5)
        .time_limit(Duration::from_millis(300));
    let (report, most) = answer_on_one_thread(worker, 6, Duration::from_millis(150));
    assert!((3..=6).contains(&most), "waiting at once: {most}");
    assert_eq!((report.finished, report.failed), (5, 1), "{report:?}");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            client.result(*id, Duration::from_secs(5)).unwrap(),
            json!({ "n": n })
        );
    }
    let row = client.get(overrun).unwrap();
    assert_eq!(row.last_error.as_deref(), Some("time limit of 0.3s exceeded"));
}
