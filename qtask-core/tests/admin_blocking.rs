//! The operators' calls through the blocking façade (what C, Go and Python stand on).

mod common;

use std::time::Duration;

use qtask_core::admin::TaskFilter;
use qtask_core::blocking::Client;
use qtask_core::{Clock, NewTask, Status};
use serde_json::json;

#[test]
fn blocking_client_lists_retries_and_pauses() {
    let file = std::env::temp_dir().join(format!("qtask-admin-blocking-{}.db", std::process::id()));
    let db = common::Db {
        name: "sqlite",
        url: format!("sqlite://{}", file.display()),
    };
    let c = Client::open(common::config(&db, &common::unique_prefix(), &Clock::database())).unwrap();
    c.install().unwrap();
    let id = c
        .create(NewTask::new("b", json!({}), "ADMIN:B").max_count(1))
        .unwrap()
        .id;
    let m = c.pop("ADMIN:B", Duration::ZERO).unwrap().unwrap();
    assert!(c.processing(m.task_id).unwrap());
    assert_eq!(c.fail(id, "broken").unwrap(), Status::Failed);

    let failed = TaskFilter::default().status(Status::Failed);
    let page = c.list_tasks(&failed, None, 10).unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].last_error.as_deref(), Some("broken"));
    assert_eq!(c.retry_matching(&failed).unwrap(), 1);

    c.pause_queue("ADMIN:B").unwrap();
    assert!(c.queues().unwrap()[0].paused);
    assert!(c.pop("ADMIN:B", Duration::ZERO).unwrap().is_none());
    c.resume_queue("ADMIN:B").unwrap();
    assert_eq!(
        c.pop("ADMIN:B", Duration::ZERO).unwrap().map(|m| m.attempt),
        Some(2)
    );
    assert_eq!(c.rates(3).unwrap().len(), 3);
    c.close();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
