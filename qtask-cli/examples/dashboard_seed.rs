//! Fills a qtask table with a few failed, finished and waiting tasks, for the browser
//! test and screenshots of `qtask dashboard`:
//!
//!     cargo run -p qtask-cli --example dashboard_seed -- sqlite:///tmp/demo.db
//!
//! Uses the table prefix of `QTASK_TABLE_PREFIX` (default `qtask_`), as `qtask` does.
//! Prints the id of one failed task.

use std::time::Duration;

use qtask_core::blocking::Client;
use qtask_core::{Config, NewTask, Status};
use serde_json::json;

fn main() -> qtask_core::Result<()> {
    let db = std::env::args()
        .nth(1)
        .unwrap_or_else(|| qtask_core::DEFAULT_DB_URL.to_string());
    let mut config = Config {
        db,
        sweeper: false,
        ..Config::from_env()
    };
    if let Ok(prefix) = std::env::var("QTASK_TABLE_PREFIX") {
        config.table_prefix = prefix;
    }
    let client = Client::open(config)?;
    client.install()?;
    let errors = [
        "bank API answered 503 Service Unavailable",
        "order 8973097380045 not found in ERP",
        "timeout after 30s talking to the warehouse",
    ];
    let mut failed = Vec::new();
    for (i, error) in errors.iter().enumerate() {
        let task = NewTask::new(
            "订单绑定任务",
            json!({ "order_no": format!("89730973800{i}") }),
            "ORDER:BIND",
        )
        .max_count(1)
        .delete_deadline(Duration::from_secs(86_400));
        let id = client.create(task)?.id;
        run_one(&client, "ORDER:BIND", |id| client.fail(id, error).map(|_| ()))?;
        failed.push(id);
    }
    for i in 0..12 {
        let task = NewTask::new("send receipt", json!({ "n": i }), "MAIL:SEND")
            .delete_deadline(Duration::from_secs(86_400));
        client.create(task)?;
        run_one(&client, "MAIL:SEND", |id| client.finish(id))?;
    }
    for i in 0..5 {
        client.create(NewTask::new("send receipt", json!({ "n": 100 + i }), "MAIL:SEND"))?;
    }
    assert_eq!(client.get(failed[0])?.status, Status::Failed);
    println!("{}", failed[0]);
    client.close();
    Ok(())
}

/// Pops one task of `queue`, marks it processing and ends it with `end`.
fn run_one(
    client: &Client,
    queue: &str,
    end: impl Fn(i64) -> qtask_core::Result<()>,
) -> qtask_core::Result<()> {
    let message = client
        .pop(queue, Duration::from_secs(1))?
        .ok_or_else(|| qtask_core::Error::Internal(format!("no task on {queue}")))?;
    client.processing(message.task_id)?;
    end(message.task_id)
}
