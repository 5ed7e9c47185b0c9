//! Holes an audit found (issue 10): inputs that panicked, and passwords that leaked.
//! Each test failed before its fix.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{databases, drop_table, fresh, unique_prefix};
use qtask_core::{Client, Config, Error, NewTask};
use serde_json::json;

const SECRET: &str = "s3cret-pw";

/// A pop whose wait overflows `Instant` (Python's `wait=1e19`, Rust's `Duration::MAX`)
/// returns the message instead of panicking.
#[tokio::test]
async fn pop_with_a_huge_wait_does_not_panic() {
    for db in databases().await {
        let (client, _) = fresh(&db).await;
        client.create(NewTask::new("t", json!({}), "HUGE")).await.unwrap();
        let message = client.pop("HUGE", Duration::MAX).await.unwrap();
        assert!(message.is_some(), "{}: the task", db.name);
        client.create(NewTask::new("t", json!({}), "HUGE")).await.unwrap();
        let message = client.pop("HUGE", Duration::from_secs_f64(1e19)).await.unwrap();
        assert!(message.is_some(), "{}: the second task", db.name);
        drop_table(&client).await;
    }
    let Some(redis) = common::redis() else { return };
    let db = &databases().await[0];
    let prefix = unique_prefix();
    let client = Client::open(Config {
        queue: redis,
        redis_prefix: format!("qtask-test-{}", prefix.trim_end_matches('_')),
        ..common::config(db, &prefix, &qtask_core::Clock::database())
    })
    .await
    .unwrap();
    client.install().await.unwrap();
    client.create(NewTask::new("t", json!({}), "HUGE")).await.unwrap();
    assert!(
        client.pop("HUGE", Duration::MAX).await.unwrap().is_some(),
        "redis"
    );
    drop_table(&client).await;
}

/// An oversized input is refused without being copied whole: the compact JSON is
/// written through a writer that stops at the limit.
#[tokio::test]
async fn an_oversized_input_is_refused_before_it_is_copied() {
    let db = &databases().await[0];
    let (client, _) = fresh(db).await;
    let input = json!({"blob": "x".repeat(2 << 20)});
    let err = client.create(NewTask::new("t", input, "BIG")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert!(qtask_core::input::parse_input(&"x".repeat(7 << 20), 1 << 20).is_err());
    drop_table(&client).await;
}

/// Log lines written while `f` runs on this thread (a current-thread runtime keeps
/// spawned tasks on it too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

/// A password in the database or queue URL appears in no log line, error message,
/// `Debug` output or stats.
#[tokio::test]
async fn passwords_never_show() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Errors: bad URLs, an unreachable database, an unknown queue scheme.
    let bad_configs = [
        Config {
            db: format!("oracle://u:{SECRET}@h/db"),
            ..Config::default()
        },
        Config {
            db: format!("postgres://u:{SECRET}@h:notaport/db"),
            ..Config::default()
        },
        Config {
            db: format!("postgres://u:{SECRET}@127.0.0.1:1/db"),
            connect_timeout: Duration::from_millis(300),
            ..Config::default()
        },
        Config {
            queue: format!("kafka://u:{SECRET}@h"),
            ..Config::default()
        },
        Config {
            queue: format!("redis://:{SECRET}@h:notaport/"),
            sweeper: false,
            db: "sqlite::memory:".into(),
            ..Config::default()
        },
        Config {
            queue: format!("rediss://:{SECRET}@h/?tls_ca=/no/such/ca.pem"),
            sweeper: false,
            db: "sqlite::memory:".into(),
            ..Config::default()
        },
    ];
    for config in bad_configs {
        assert_hidden("Config Debug", &format!("{config:?}"));
        match Client::open(config).await {
            Ok(_) => panic!("opened a bad config"),
            Err(err) => {
                assert_hidden("error message", &err.to_string());
                assert_hidden("error Debug", &format!("{err:?}"));
            }
        }
    }

    // A client whose queue is down (unreachable port, password set): the warning at
    // open, the failed push, the failed pop.
    let db = &databases().await[0];
    let prefix = unique_prefix();
    let client = Client::open(Config {
        queue: format!("redis://:{SECRET}@127.0.0.1:1/0"),
        ..common::config(db, &prefix, &qtask_core::Clock::database())
    })
    .await
    .expect("open with Redis down");
    client.install().await.unwrap();
    let created = client
        .create(NewTask::new("t", json!({}), "SECRETS"))
        .await
        .unwrap();
    assert!(!created.dispatched);
    let err = client.pop("SECRETS", Duration::ZERO).await.unwrap_err();
    assert_hidden("pop error", &err.to_string());
    assert_hidden("Client Debug", &format!("{client:?}"));
    assert_hidden("Store Debug", &format!("{:?}", client.store()));
    let stats = client.stats().await.unwrap();
    assert_hidden("stats", &serde_json::to_string(&stats).unwrap());
    drop_table(&client).await;

    // A real database login with a password in the URL (loopback logins trust any).
    if let Some(pg) = databases().await.into_iter().find(|d| d.name == "postgres") {
        let url = pg.url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
        let client = Client::open(Config {
            db: url,
            ..common::config(&pg, &unique_prefix(), &qtask_core::Clock::database())
        })
        .await
        .expect("open with a password");
        client.install().await.unwrap();
        assert_hidden("Client Debug", &format!("{client:?}"));
        assert_hidden(
            "stats",
            &serde_json::to_string(&client.stats().await.unwrap()).unwrap(),
        );
        drop_table(&client).await;
    }

    let log = log.text();
    assert!(
        log.contains("127.0.0.1:1"),
        "the Redis warnings were captured: {log}"
    );
    assert_hidden("log", &log);
}
