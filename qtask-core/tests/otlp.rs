//! OTLP export (feature `otlp`): a client opened with `otlp_endpoint` sends its spans
//! to the collector over HTTP; here a one-shot collector that keeps what it received.
#![cfg(feature = "otlp")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use qtask_core::{Client, Config, Error, NewTask};
use serde_json::json;

/// Accepts OTLP/HTTP posts and hands each (request line, body) over a channel.
fn collector() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                )
                .unwrap();
            let _ = tx.send((request, body));
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector() {
    let (endpoint, received) = collector();
    let db = common::databases().await.remove(0);
    let mut config = common::config(&db, &common::unique_prefix(), &qtask_core::Clock::database());
    config.otlp_endpoint = Some(endpoint.clone());
    let client = Client::open(config.clone()).await.unwrap();
    client.install().await.unwrap();
    // One endpoint per process: the same again is fine, another is refused (redacted).
    Client::open(config.clone()).await.unwrap().close().await;
    let mut elsewhere = config.clone();
    elsewhere.otlp_endpoint = Some("http://u:s3cret@127.0.0.1:1".into());
    match Client::open(elsewhere).await {
        Err(Error::InvalidArgument(text)) => assert!(!text.contains("s3cret"), "{text}"),
        other => panic!("{other:?}"),
    }
    let parsed = Config::from_json(&format!(r#"{{"otlp_endpoint": "{endpoint}"}}"#)).unwrap();
    assert_eq!(parsed.otlp_endpoint.as_deref(), Some(endpoint.as_str()));

    let created = client
        .create(NewTask::new("exported", json!({}), "OTLP:Q"))
        .await
        .unwrap();
    let message = client
        .pop("OTLP:Q", std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.task_id, created.id);
    assert!(
        message.trace_context.is_some(),
        "the exporter gives spans a context"
    );
    common::drop_table(&client).await; // closing flushes the batch

    let (request, body) = received.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    assert!(request.starts_with("POST /v1/traces "), "{request}");
    let body = String::from_utf8_lossy(&body);
    for name in ["qtask.create", "qtask.claim", "qtask.dispatch", "OTLP:Q"] {
        assert!(body.contains(name), "{name} not exported: {body:?}");
    }
}
