//! A process serves its metrics on `metrics_listen`: counters of what its clients did,
//! handler and sweep durations. (Its own test binary: the recorder is per process.)

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use qtask_core::{Client, Config, Error, NewTask, Worker};
use serde_json::json;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_its_metrics() {
    let db = common::databases().await.remove(0);
    let addr = format!("127.0.0.1:{}", free_port());
    let clock = qtask_core::Clock::database();
    let mut config = common::config(&db, &common::unique_prefix(), &clock);
    config.metrics_listen = Some(addr.clone());
    let c = Client::open(config.clone()).await.unwrap();
    c.install().await.unwrap();
    // The same address again is fine; another one is refused (one listener per process).
    let again = Client::open(config.clone()).await.unwrap();
    again.close().await;
    let mut elsewhere = config.clone();
    elsewhere.metrics_listen = Some(format!("127.0.0.1:{}", free_port()));
    assert!(matches!(
        Client::open(elsewhere).await,
        Err(Error::InvalidArgument(_))
    ));
    let parsed = Config::from_json(&format!(r#"{{"metrics_listen": "{addr}"}}"#)).unwrap();
    assert_eq!(parsed.metrics_listen.as_deref(), Some(addr.as_str()));

    for i in 0..3 {
        c.create(NewTask::new("m", json!({ "i": i }), "METRICS:Q"))
            .await
            .unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::new(c.clone(), "METRICS:Q");
    let running = tokio::spawn(worker.run(
        move |m: qtask_core::Message| {
            let done = done.clone();
            async move {
                let i = m.input["i"].as_i64().unwrap();
                done.send(i).unwrap();
                if i == 0 {
                    Err("first one fails".to_string())
                } else {
                    Ok(())
                }
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    for _ in 0..3 {
        done_rx.recv().await.unwrap();
    }
    let _ = stop.send(());
    let report = running.await.unwrap().unwrap();
    assert_eq!((report.finished, report.failed), (2, 1));
    c.sweep_once().await.unwrap();

    // Its retry (attempt 2) is no rescue; a task whose lease ran out is.
    let wait = std::time::Duration::from_secs(1);
    clock.advance(std::time::Duration::from_secs(2));
    let retry = c.pop("METRICS:Q", wait).await.unwrap().unwrap();
    assert_eq!(retry.attempt, 2);
    c.finish_attempt(retry.fence()).await.unwrap();
    let lost = c
        .create(NewTask::new("m", json!({}), "METRICS:R").timeout(std::time::Duration::from_secs(5)))
        .await
        .unwrap();
    let first = c.pop("METRICS:R", wait).await.unwrap().unwrap();
    clock.advance(std::time::Duration::from_secs(6));
    let rescue = c.pop("METRICS:R", wait).await.unwrap().unwrap();
    assert_eq!((rescue.task_id, rescue.attempt), (lost.id, first.attempt + 1));
    c.finish_attempt(rescue.fence()).await.unwrap();

    let text = scrape(&addr);
    for series in [
        "qtask_tasks_created_total{queue=\"METRICS:Q\"} 3",
        "qtask_tasks_dispatched_total{attempt=\"first\"} 4",
        "qtask_tasks_dispatched_total{attempt=\"again\"} 2",
        "qtask_tasks_finished_total 4",
        "qtask_tasks_failed_total{outcome=\"retry\"} 1",
        "qtask_handler_duration_seconds_count{queue=\"METRICS:Q\",outcome=\"finished\"} 2",
        "qtask_sweep_duration_seconds_count{service=\"reaper\"} 1",
        "qtask_tasks_rescued_total{queue=\"METRICS:R\"} 1",
        // First attempts only: three tasks of METRICS:Q, one of METRICS:R.
        "qtask_create_to_start_seconds_count{queue=\"METRICS:Q\"} 3",
        "qtask_create_to_start_seconds_count{queue=\"METRICS:R\"} 1",
        "qtask_claim_to_finish_seconds_count{queue=\"METRICS:Q\",outcome=\"finished\"} 2",
        "qtask_claim_to_finish_seconds_count{queue=\"METRICS:Q\",outcome=\"failed\"} 1",
    ] {
        assert!(text.contains(series), "{series} missing in:\n{text}");
    }
    assert!(
        !text.contains("qtask_tasks_rescued_total{queue=\"METRICS:Q\"}"),
        "{text}"
    );
    // Latencies are sane: positive, and well under a minute on a fresh table.
    for sum in [
        "qtask_create_to_start_seconds_sum{queue=\"METRICS:Q\"} ",
        "qtask_claim_to_finish_seconds_sum{queue=\"METRICS:Q\",outcome=\"finished\"} ",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(sum))
            .unwrap_or_else(|| panic!("{sum}"));
        let value: f64 = line[sum.len()..].trim().parse().unwrap();
        assert!((0.0..60.0).contains(&value), "{line}");
    }
    common::drop_table(&c).await;

    // Every database × queue: a retry after a failure is no rescue; a claim after a
    // lease ran out is one (MariaDB reads it before its change, Redis through an offer).
    for pair in common::pairs().await {
        let (c, clock) = common::fresh_pair(&pair).await;
        let queue = format!("RESCUE:{}", pair.name().replace('+', "-"));
        let rescued = format!("qtask_tasks_rescued_total{{queue=\"{queue}\"}}");
        let five = std::time::Duration::from_secs(5);
        let task = NewTask::new("r", json!({}), queue.as_str()).timeout(five);
        let created = c.create(task).await.unwrap();
        let next = |c: Client| {
            let queue = queue.clone();
            async move {
                c.sweep_once().await.unwrap(); // Redis: offers what is due
                c.pop(&queue, wait).await.unwrap().unwrap()
            }
        };
        let first = next(c.clone()).await;
        c.fail_attempt(first.fence(), "no").await.unwrap();
        clock.advance(std::time::Duration::from_secs(2));
        let second = next(c.clone()).await;
        assert_eq!((second.task_id, second.attempt), (created.id, 2), "{queue}");
        assert!(!scrape(&addr).contains(&rescued), "{queue}: a retry is no rescue");
        clock.advance(std::time::Duration::from_secs(6));
        let third = next(c.clone()).await;
        assert_eq!(third.attempt, 3, "{queue}");
        c.finish_attempt(third.fence()).await.unwrap();
        let text = scrape(&addr);
        assert!(text.contains(&format!("{rescued} 1")), "{queue}: {text}");
        common::drop_table(&c).await;
    }
}
