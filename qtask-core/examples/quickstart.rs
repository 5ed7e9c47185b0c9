//! The README's Rust quick start (kept compiling by `cargo test --all-targets`).

use qtask_core::{Client, Config, NewTask, Worker};
use serde_json::json;
use std::time::Duration;

#[tokio::main]
async fn main() -> qtask_core::Result<()> {
    let client = Client::open(Config::from_env()).await?; // SQLite qtask.db + the db queue by default
    client.install().await?; // creates or migrates the table; never drops

    // Real-time: written and dispatched now. Delayed: written now, dispatched in 60 s.
    let order = NewTask::new("订单绑定任务", json!({"order_no": "8973097380045"}), "ORDER:BIND")
        .timeout(Duration::from_secs(3600))
        .order_no("8973097380045");
    let created = client.create(order.clone()).await?;
    client
        .delay(order.order_no("8973097380046"), Duration::from_secs(60))
        .await?;

    // A worker by hand: pop claims the task (attempt n begins), work, then finish that
    // attempt (or fail_attempt to retry with backoff). A stale attempt changes nothing.
    if let Some(message) = client.pop("ORDER:BIND", Duration::from_secs(1)).await? {
        println!(
            "attempt {} of task {}: {:?}",
            message.attempt, message.task_id, message.input
        );
        if client.finish_attempt(message.fence()).await?.is_stale() {
            println!("the lease ran out meanwhile; a newer attempt owns the task");
        }
    }

    // Or the worker engine: batched claims and finishes, fenced lease renewal, graceful stop.
    let worker = Worker::new(client.clone(), "ORDER:BIND").concurrency(8);
    worker
        .run(
            |message| async move {
                println!("{}", message.to_json());
                Ok(())
            },
            async { tokio::time::sleep(Duration::from_secs(5)).await },
        )
        .await?;
    println!("task {} done; {:?}", created.id, client.stats().await?);
    client.close().await;
    Ok(())
}
