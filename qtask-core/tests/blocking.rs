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
