//! qtask: a durable task dispatcher.
//!
//! A task's row in a relational database (SQLite, PostgreSQL, MySQL/MariaDB) is the
//! source of truth; a queue (the database itself, or Redis) carries it to a worker;
//! a sweeper started with every [`Client`] re-dispatches whatever is due or overdue.
//!
//! ```no_run
//! # async fn demo() -> qtask_core::Result<()> {
//! use std::time::Duration;
//! use qtask_core::{Client, Config, NewTask};
//!
//! let client = Client::open(Config::from_env()).await?;
//! client.install().await?;
//! let task = NewTask::new("订单绑定任务", serde_json::json!({"order_no": "8973097380045"}), "ORDER:BIND")
//!     .timeout(Duration::from_secs(3600));
//! let created = client.create(task).await?;
//! if let Some(message) = client.pop("ORDER:BIND", Duration::from_secs(1)).await? {
//!     // … the work of attempt `message.attempt` …
//!     client.finish_attempt(message.fence()).await?;
//! }
//! # let _ = created; Ok(()) }
//! ```

pub mod admin;
pub mod blocking;
mod client;
mod clock;
mod completer;
mod config;
mod creator;
mod error;
pub mod input;
pub mod logs;
mod maintenance;
mod otlp;
mod outcome;
pub mod queue;
mod results;
mod schedule;
mod secret;
pub mod store;
mod task;
mod task_args;
mod telemetry;
mod trace;
mod worker;
mod write_loop;

pub use client::{Client, Invoke};
pub use clock::{Clock, MAX_WAIT};
pub use config::{Config, DB_QUEUE, DEFAULT_DB_URL};
pub use error::{Error, Result};
pub use maintenance::SweepReport;
pub use outcome::{panic_text, Outcome, TimeUp};
pub use schedule::{Missed, Schedule, ScheduleInfo, MIN_EVERY, MISSED_AFTER, NO_MORE_TICKS};
pub use secret::redact;
pub use store::QueueLimits;
pub use store::{CallerInsert, CallerStatement, ParamStyle};
pub use task::{
    check_new_task, seconds, Created, Fence, Fenced, Message, NewTask, Stats, Status, Task, TaskOptions,
    DEFAULT_DEADLINE, DEFAULT_MAX_COUNT, DEFAULT_TIMEOUT, MAX_PRIORITY, RESERVED_KEYS,
};
pub use task_args::{TaskArgs, OPTION_KEYS};
pub use worker::{Worker, WorkerReport};

/// The driver behind `Store::pool`, re-exported so callers' transactions match qtask's.
pub use sqlx;
/// Cancels a blocked [`Client::pop_cancellable`] or [`Client::result_cancellable`].
pub use tokio_util::sync::CancellationToken;
