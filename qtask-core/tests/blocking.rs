//! The blocking client: usable from plain threads and from inside a tokio runtime.

mod common;

use std::sync::Arc;
use std::time::Duration;

use qtask_core::blocking::Client;
use qtask_core::{Clock, Error, NewTask};
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
    let config = qtask_core::Config {
        db: "postgres://postgres@127.0.0.1:1/none".into(),
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    assert!(matches!(Client::open(config), Err(Error::Database(_))));
}

/// The blocking worker runs the engine with a plain function, from a thread without a
/// runtime, and stops when its signal is set from another thread.
#[test]
fn blocking_worker_runs_plain_handlers_until_stopped() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = std::env::temp_dir().join(format!("qtask-bw-{}.db", std::process::id()));
    let config = qtask_core::Config {
        db: format!("sqlite://{}", dir.display()),
        // No cleanup: finished rows stay to be counted.
        sweeper: false,
        ..qtask_core::Config::default()
    };
    let client = qtask_core::blocking::Client::open(config).unwrap();
    client.install().unwrap();
    let tasks = (0..20)
        .map(|i| qtask_core::NewTask::new("bw", serde_json::json!({ "i": i }), "BW"))
        .collect();
    client.create_many(tasks).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let seen = handled.clone();
    let stop = qtask_core::blocking::StopSignal::new();
    let stopper = stop.clone();
    let watcher = std::thread::spawn(move || {
        while seen.load(Ordering::SeqCst) < 20 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stopper.stop();
    });
    let counter = handled.clone();
    let report = qtask_core::blocking::Worker::new(&client, "BW")
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
    client.close();
    let _ = std::fs::remove_file(&dir);
}

/// The blocking worker tells a handler on a thread that its time is up (it polls its
/// `TimeUp`), fails the attempt with the reason, and keeps a handler's result.
#[test]
fn blocking_worker_time_limit_and_result() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("qtask-bwt-{}.db", std::process::id()));
    let config = qtask_core::Config {
        db: format!("sqlite://{}", dir.display()),
        sweeper: false,
        ..qtask_core::Config::default()
    };
    let client = qtask_core::blocking::Client::open(config).unwrap();
    client.install().unwrap();
    let task = |slow: bool| {
        qtask_core::NewTask::new("bwt", serde_json::json!({ "slow": slow }), "BWT")
            .delete_deadline(Duration::from_secs(3600))
    };
    let slow = client.create(task(true)).unwrap().id;
    let quick = client.create(task(false)).unwrap().id;
    let told = Arc::new(AtomicBool::new(false));
    let stop = qtask_core::blocking::StopSignal::new();
    let (handler_told, stopper) = (told.clone(), stop.clone());
    let report = qtask_core::blocking::Worker::new(&client, "BWT")
        .concurrency(2)
        .time_limit(Duration::from_millis(200))
        .run_with_time_up(
            move |m, time_up| {
                if m.input["slow"] == false {
                    return Ok(qtask_core::Outcome::result(serde_json::json!({"ok": true})));
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
    assert_eq!(row.status, qtask_core::Status::Waiting);
    assert_eq!(
        client.result(quick, Duration::from_secs(5)).unwrap(),
        serde_json::json!({"ok": true})
    );
    client.close();
    let _ = std::fs::remove_file(&dir);
}

/// `run_replying`: the handler hands each task to a thread of the caller's own, which
/// sends the outcome later; at most `concurrency` tasks are out at once. A task's own
/// time limit reaches the handler through its `TimeUp`.
#[test]
fn blocking_worker_replies_from_the_caller_s_threads() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("qtask-brep-{}.db", std::process::id()));
    let config = qtask_core::Config {
        db: format!("sqlite://{}", dir.display()),
        sweeper: false,
        ..qtask_core::Config::default()
    };
    let client = qtask_core::blocking::Client::open(config).unwrap();
    client.install().unwrap();
    let task = |n: i64| {
        qtask_core::NewTask::new("brep", serde_json::json!({ "n": n }), "BREP")
            .delete_deadline(Duration::from_secs(3600))
    };
    let ids: Vec<i64> = (0..12).map(|n| client.create(task(n)).unwrap().id).collect();
    let limited = client
        .create(task(99).time_limit(Duration::from_millis(200)))
        .unwrap()
        .id;
    type Handed = (
        qtask_core::Message,
        qtask_core::TimeUp,
        qtask_core::blocking::Reply,
    );
    let (hand, handed) = mpsc::channel::<Handed>();
    let out = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let stop = qtask_core::blocking::StopSignal::new();
    let (runner_out, stopper) = (out.clone(), stop.clone());
    // The caller's own thread: answers in arrival order, the limited task once told.
    let runner = std::thread::spawn(move || {
        let mut done = 0;
        for (m, time_up, reply) in handed {
            runner_out.fetch_sub(1, Ordering::SeqCst);
            if m.input["n"] == 99 {
                while !time_up.is_up() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                reply.send_returned::<()>(Err("ignored".into()));
            } else {
                std::thread::sleep(Duration::from_millis(5));
                reply.send_returned(Ok(serde_json::json!({"n": m.input["n"].clone()})));
            }
            done += 1;
            if done == 13 {
                stopper.stop();
            }
        }
    });
    let hand = Mutex::new(hand);
    let (handler_out, handler_most) = (out.clone(), most.clone());
    let report = qtask_core::blocking::Worker::new(&client, "BREP")
        .concurrency(3)
        .run_handing_off(
            move |m, time_up, reply| {
                let now = handler_out.fetch_add(1, Ordering::SeqCst) + 1;
                handler_most.fetch_max(now, Ordering::SeqCst);
                hand.lock().unwrap().send((m, time_up, reply)).unwrap();
            },
            &stop,
        )
        .unwrap();
    runner.join().unwrap();
    assert_eq!((report.finished, report.failed), (12, 1), "{report:?}");
    assert!(most.load(Ordering::SeqCst) <= 3, "{most:?}");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            client.result(*id, Duration::from_secs(5)).unwrap(),
            serde_json::json!({ "n": n })
        );
    }
    let row = client.get(limited).unwrap();
    assert_eq!(row.last_error.as_deref(), Some("time limit of 0.2s exceeded"));
    client.close();
    let _ = std::fs::remove_file(&dir);
}
