//! Faults across processes on the `db` queue: a worker killed with SIGKILL, a producer
//! killed between its write and its dispatch, two processes claiming at once.
//! Children are this test binary re-run with `child_role` and QTASK_CHILD_* variables.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{config, databases, drop_table, fresh_at, spawn_child, unique_prefix, Db};
use qtask_core::{Client, Clock, Message, NewTask, Worker};
use serde_json::json;

const QUEUE: &str = "FAULT:Q";

fn child_env(db: &Db, prefix: &str, role: &str) -> Vec<(&'static str, String)> {
    vec![
        ("QTASK_CHILD_ROLE", role.to_string()),
        ("QTASK_CHILD_DB", db.url.clone()),
        ("QTASK_CHILD_PREFIX", prefix.to_string()),
    ]
}

/// Reads a child's stdout until a line starts with `prefix`; returns the rest of it.
fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // libtest prints "test child_role ... " without a newline before the child's first line.
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_string();
        }
        seen.push(line);
    }
    panic!("child ended without printing {prefix}; it printed {seen:?}");
}

/// Runs workers in this process until `done` says so or `limit` passes.
async fn work_until(client: &Client, limit: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(client.clone(), QUEUE).concurrency(2);
    let running = tokio::spawn(worker.run(
        move |m: Message| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(m);
                Ok(())
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let start = Instant::now();
    while !done(&seen.lock().unwrap()) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    seen
}

/// Contract 1: a worker killed with SIGKILL mid-task has its task run again after
/// the timeout (real time here, no clock shift).
#[tokio::test]
async fn worker_killed_with_sigkill_has_its_task_run_again() {
    for db in databases().await {
        let prefix = unique_prefix();
        let (client, _) = fresh_at(&db, &prefix).await;
        let id = client
            .create(NewTask::new("pay", json!({"amount": 1}), QUEUE).timeout(Duration::from_secs(1)))
            .await
            .unwrap()
            .id;
        let mut child = spawn_child("child_role", &child_env(&db, &prefix, "hold"));
        let held: i64 = wait_for_line(&mut child, "HOLDING ").parse().unwrap();
        assert_eq!(held, id);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(
            client.pop(QUEUE, Duration::ZERO).await.unwrap().is_none(),
            "{}: still leased",
            db.name
        );
        let seen = work_until(&client, Duration::from_secs(20), |seen| !seen.is_empty()).await;
        assert_eq!(seen.len(), 1, "{}: task re-run exactly once here", db.name);
        assert_eq!((seen[0].task_id, seen[0].attempt), (id, 2), "{}", db.name);
        let task = client.get(id).await.unwrap();
        assert_eq!(task.status, qtask_core::Status::Finished, "{}", db.name);
        drop_table(&client).await;
    }
}

/// Contract 1: the producer died after the row was committed and before it
/// dispatched the task; the task is still executed.
#[tokio::test]
async fn producer_killed_before_dispatch_loses_nothing() {
    for db in databases().await {
        let prefix = unique_prefix();
        let (client, _) = fresh_at(&db, &prefix).await;
        let mut child = spawn_child("child_role", &child_env(&db, &prefix, "produce_and_die"));
        let id: i64 = wait_for_line(&mut child, "CREATED ").parse().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the producer aborted");
        let seen = work_until(&client, Duration::from_secs(20), |seen| !seen.is_empty()).await;
        assert_eq!(
            seen.iter().map(|m| m.task_id).collect::<Vec<_>>(),
            vec![id],
            "{}",
            db.name
        );
        drop_table(&client).await;
    }
}

/// Contract 3 across processes: two processes claiming due tasks at once never
/// claim the same one.
#[tokio::test]
async fn two_processes_never_claim_the_same_task() {
    for db in databases().await {
        let prefix = unique_prefix();
        let (client, _) = fresh_at(&db, &prefix).await;
        let n = 300;
        let tasks = (0..n)
            .map(|i| NewTask::new("t", json!({"i": i}), QUEUE))
            .collect();
        client.create_many(tasks).await.unwrap();
        let children: Vec<Child> = (0..2)
            .map(|_| spawn_child("child_role", &child_env(&db, &prefix, "drain")))
            .collect();
        let mut claimed = Vec::new();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}: drain child failed", db.name);
            claimed.extend(common::lines_with(
                &String::from_utf8_lossy(&output.stdout),
                "GOT ",
            ));
        }
        let distinct: HashSet<&String> = claimed.iter().collect();
        let stats = client.stats().await.unwrap();
        assert_eq!((claimed.len(), distinct.len()), (n, n), "{}: {stats:?}", db.name);
        drop_table(&client).await;
    }
}

/// Contract 7 across processes: a worker paused (SIGSTOP) past its lease wakes up
/// (SIGCONT) and finishes its handler; its outcome is stale, so the newer attempt,
/// taken meanwhile by another process, still owns the task.
#[tokio::test]
async fn a_worker_paused_past_its_lease_cannot_finish_the_newer_attempt() {
    for db in databases().await {
        let prefix = unique_prefix();
        let (client, _) = fresh_at(&db, &prefix).await;
        let id = client
            .create(NewTask::new("pay", json!({"amount": 3}), QUEUE).timeout(Duration::from_secs(1)))
            .await
            .unwrap()
            .id;
        let mut child = spawn_child("child_role", &child_env(&db, &prefix, "slow_worker"));
        let started = wait_for_line(&mut child, "STARTED ");
        assert_eq!(started, format!("{id} 1"), "{}", db.name);
        let pid = child.id().to_string();
        let signal = |name: &str| {
            let done = std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap();
            assert!(done.success(), "kill {name}");
        };
        signal("-STOP");
        let newer = client
            .pop(QUEUE, Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the lease ran out: a newer attempt");
        assert_eq!((newer.task_id, newer.attempt), (id, 2), "{}", db.name);
        signal("-CONT");
        let report = wait_for_line(&mut child, "REPORT ");
        assert_eq!(report, "finished=0 skipped=1", "{}", db.name);
        assert!(child.wait().unwrap().success());
        let task = client.get(id).await.unwrap();
        assert_eq!(
            (task.status, task.count),
            (qtask_core::Status::Processing, 2),
            "{}: the stale finish changed nothing",
            db.name
        );
        assert!(!client.finish_attempt(newer.fence()).await.unwrap().is_stale());
        assert_eq!(client.get(id).await.unwrap().status, qtask_core::Status::Finished);
        drop_table(&client).await;
    }
}

/// The body of every child process; does nothing when run without a role.
#[tokio::test]
#[ignore = "run as a child process by the tests above"]
async fn child_role() {
    let Ok(role) = std::env::var("QTASK_CHILD_ROLE") else {
        return;
    };
    let db = Db {
        name: "child",
        url: std::env::var("QTASK_CHILD_DB").unwrap(),
    };
    let prefix = std::env::var("QTASK_CHILD_PREFIX").unwrap();
    let client = Client::open(config(&db, &prefix, &Clock::database()))
        .await
        .unwrap();
    match role.as_str() {
        "hold" => {
            let m = client
                .pop(QUEUE, Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a task to hold");
            assert!(client.processing(m.task_id).await.unwrap());
            println!("HOLDING {}", m.task_id);
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "produce_and_die" => {
            let task = NewTask::new("pay", json!({"amount": 2}), QUEUE).timeout(Duration::from_secs(1));
            let (created, _invoke) = client.create_deferred(task).await.unwrap();
            println!("CREATED {}", created.id);
            std::process::abort();
        }
        "slow_worker" => {
            // One task: say so, outlive the lease (the parent stops this process
            // meanwhile), then end and report what the worker counted.
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let done = std::sync::Mutex::new(Some(done));
            let report = Worker::new(client.clone(), QUEUE)
                .run(
                    move |m: Message| {
                        println!("STARTED {} {}", m.task_id, m.attempt);
                        let done = done.lock().unwrap().take();
                        async move {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            if let Some(done) = done {
                                let _ = done.send(());
                            }
                            Ok(())
                        }
                    },
                    async move {
                        let _ = finished.await;
                    },
                )
                .await
                .unwrap();
            println!("REPORT finished={} skipped={}", report.finished, report.skipped);
        }
        "drain" => {
            while let Some(m) = client.pop(QUEUE, Duration::from_millis(500)).await.unwrap() {
                println!("GOT {}", m.task_id);
            }
        }
        other => panic!("unknown child role {other}"),
    }
}
