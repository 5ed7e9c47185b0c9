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
    let mut config = common::config(&db, &common::unique_prefix(), &qtask_core::Clock::database());
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

    let text = scrape(&addr);
    for series in [
        "qtask_tasks_created_total{queue=\"METRICS:Q\"} 3",
        "qtask_tasks_dispatched_total{attempt=\"first\"} 3",
        "qtask_tasks_finished_total 2",
        "qtask_tasks_failed_total{outcome=\"retry\"} 1",
        "qtask_handler_duration_seconds_count{queue=\"METRICS:Q\",outcome=\"finished\"} 2",
        "qtask_sweep_duration_seconds_count{service=\"reaper\"} 1",
    ] {
        assert!(text.contains(series), "{series} missing in:\n{text}");
    }
    common::drop_table(&c).await;
}
