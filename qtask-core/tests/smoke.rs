use qtask_core::{Client, Config, NewTask, Status};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn sqlite_cycle() {
    let dir = std::env::temp_dir().join(format!("qtask-smoke-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let db = std::env::var("SMOKE_DB").unwrap_or(format!("sqlite://{}", dir.display()));
    let config = Config {
        db,
        table_prefix: format!("smoke{}_", std::process::id()),
        sweeper: false,
        ..Config::default()
    };
    let c = Client::open(config).await.unwrap();
    c.install().await.unwrap();
    c.install().await.unwrap();
    let created = c
        .create(NewTask::new("n", json!({"a": 1}), "Q").order_no("o1"))
        .await
        .unwrap();
    let again = c
        .create(NewTask::new("n", json!({"a": 1}), "Q").order_no("o1"))
        .await
        .unwrap();
    assert!(again.existing);
    assert_eq!(again.id, created.id);
    let m = c.pop("Q", Duration::from_millis(100)).await.unwrap().unwrap();
    assert_eq!(m.task_id, created.id);
    assert_eq!(m.attempt, 1);
    assert!(c.processing(m.task_id).await.unwrap());
    assert_eq!(c.fail(m.task_id, "boom").await.unwrap(), Status::Waiting);
    c.finish(m.task_id).await.unwrap();
    let t = c.get(m.task_id).await.unwrap();
    assert_eq!(t.status, Status::Finished);
    println!("{:?}", c.stats().await.unwrap());
    println!("{:?}", c.sweep_once().await.unwrap());
}
