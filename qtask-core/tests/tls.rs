//! TLS on loopback against the servers `scripts/services.sh` starts with its own CA:
//! PostgreSQL and MariaDB (`sslmode=verify-full`, `ssl-mode=VERIFY_IDENTITY`), a
//! TLS-only Redis and a TLS-only Redis Cluster (`rediss://…?tls_ca=`). With the CA a
//! task goes through create, pop, processing and finish; without it the
//! connection fails with a typed error.

mod common;

use std::time::Duration;

use common::unique_prefix;
use qtask_core::{Client, Clock, Config, Error, NewTask};
use serde_json::json;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The CA file, or a loud skip (a failure with CI=true).
fn ca() -> Option<String> {
    let ca = var("QTASK_TEST_TLS_CA").unwrap_or_else(|| "/tmp/qtask-tls/ca.crt".into());
    if std::path::Path::new(&ca).exists() {
        return Some(ca);
    }
    common::skip("the TLS CA file", &ca);
    None
}

/// The URL in `name`, or the local default made from the CA.
fn url(name: &str, default: impl FnOnce(&str) -> String, ca: &str) -> String {
    var(name).unwrap_or_else(|| default(ca))
}

fn config(db: String, queue: String) -> Config {
    let prefix = unique_prefix();
    Config {
        db,
        queue,
        table_prefix: prefix.clone(),
        redis_prefix: format!("qtask-test-{}", prefix.trim_end_matches('_')),
        sweeper: false,
        connect_timeout: Duration::from_secs(3),
        clock: Clock::database(),
        ..Config::default()
    }
}

/// One task through the whole cycle; drops its table after.
async fn cycle(what: &str, config: Config) {
    let client = Client::open(config)
        .await
        .unwrap_or_else(|e| panic!("{what}: open: {e}"));
    client.install().await.unwrap();
    let created = client
        .create(NewTask::new("tls", json!({"n": 1}), "TLS"))
        .await
        .unwrap();
    assert!(created.dispatched, "{what}: dispatched");
    let message = client
        .pop("TLS", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{what}: pop: {e}"))
        .unwrap_or_else(|| panic!("{what}: no message"));
    assert_eq!(message.task_id, created.id);
    assert!(client.processing(message.task_id).await.unwrap());
    client.finish(message.task_id).await.unwrap();
    common::drop_table(&client).await;
}

fn sqlite() -> String {
    let file = std::env::temp_dir().join(format!("qtask-tls-{}.db", std::process::id()));
    format!("sqlite://{}", file.display())
}

#[tokio::test]
async fn postgres_over_verified_tls() {
    let Some(ca) = ca() else { return };
    let pg = url(
        "QTASK_TEST_PG_TLS_URL",
        |ca| format!("postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full&sslrootcert={ca}"),
        &ca,
    );
    cycle("postgres", config(pg.clone(), "db".into())).await;

    // verify-full without the CA: the system's roots do not know it.
    let without_ca = pg
        .split('&')
        .filter(|p| !p.starts_with("sslrootcert="))
        .collect::<Vec<_>>()
        .join("&");
    let err = Client::open(config(without_ca, "db".into())).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err}");
}

#[tokio::test]
async fn mariadb_over_verified_tls() {
    let Some(ca) = ca() else { return };
    let mysql = url(
        "QTASK_TEST_MYSQL_TLS_URL",
        |ca| format!("mysql://root@127.0.0.1:3306/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
        &ca,
    );
    cycle("mariadb", config(mysql.clone(), "db".into())).await;

    let without_ca = mysql
        .split('&')
        .filter(|p| !p.starts_with("ssl-ca="))
        .collect::<Vec<_>>()
        .join("&");
    let err = Client::open(config(without_ca, "db".into())).await.unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err}");
}

/// Redis is reached lazily: without the CA, open succeeds (the row is the truth) and
/// every queue call fails with a queue error naming the certificate.
async fn redis_over_verified_tls(what: &str, queue: String) {
    cycle(what, config(sqlite(), queue.clone())).await;

    let without_ca = queue.split('?').next().unwrap().to_string();
    let client = Client::open(config(sqlite(), without_ca)).await.unwrap();
    client.install().await.unwrap();
    let created = client
        .create(NewTask::new("tls", json!({}), "TLS"))
        .await
        .unwrap();
    assert!(!created.dispatched, "{what}: pushed without trusting the server");
    // A blocking pop opens its own connection, so the error is the handshake's own.
    let err = client.pop("TLS", Duration::from_millis(10)).await.unwrap_err();
    assert!(matches!(err, Error::Queue(_)), "{what}: {err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{what}: {err}"
    );
    client.close().await;
}

#[tokio::test]
async fn redis_over_verified_tls_single() {
    let Some(ca) = ca() else { return };
    let queue = url(
        "QTASK_TEST_REDIS_TLS_URL",
        |ca| format!("rediss://127.0.0.1:6380/?tls_ca={ca}"),
        &ca,
    );
    redis_over_verified_tls("redis", queue).await;
}

#[tokio::test]
async fn redis_cluster_over_verified_tls() {
    let Some(ca) = ca() else { return };
    let queue = url(
        "QTASK_TEST_REDIS_TLS_CLUSTER_URL",
        |ca| format!("rediss+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102/?tls_ca={ca}"),
        &ca,
    );
    redis_over_verified_tls("redis cluster", queue).await;
}
