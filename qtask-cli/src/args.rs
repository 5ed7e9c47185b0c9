//! The command line, as clap reads it.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// qtask: inspect, retry, cancel and pause the tasks of a qtask table; serve the dashboard.
#[derive(Debug, Parser)]
#[command(name = "qtask", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Database URL: sqlite://file.db, postgres://…, mysql://…
    #[arg(long, env = "QTASK_DB_URL", default_value = qtask_core::DEFAULT_DB_URL, hide_env_values = true)]
    pub db: String,
    /// Queue: "db" (the table itself) or a Redis URL. Put it before the command.
    #[arg(long = "queue", env = "QTASK_QUEUE_URL", default_value = qtask_core::DB_QUEUE, hide_env_values = true)]
    pub queue_url: String,
    /// Namespace (the seed's plat_name).
    #[arg(long, env = "QTASK_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Prefix of qtask's table names.
    #[arg(long, env = "QTASK_TABLE_PREFIX", default_value = "qtask_")]
    pub table_prefix: String,
    /// Prefix of qtask's Redis keys.
    #[arg(long, env = "QTASK_REDIS_PREFIX", default_value = "qtask")]
    pub redis_prefix: String,
    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit codes:
  0  done
  1  the database or queue failed (unreachable, refused, internal error)
  2  bad usage or invalid argument (nothing was changed)
  3  a task was not found
  4  a task's state does not allow the operation (e.g. retrying a live task)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or migrate qtask's tables (idempotent; never drops data).
    Install,
    /// Task counts of the namespace.
    Stats(JsonFlag),
    /// Queues: counts by status, pause and resume.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Tasks: list, show, retry, cancel.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Periodic tasks: list, add (or replace), remove.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Serve the web dashboard and /metrics.
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with its counts by status, whether it is paused, and its limits.
    List(JsonFlag),
    /// Stop dispatching a queue (every worker and sweeper notices within one sweep interval).
    Pause { queue: String },
    /// Dispatch a paused queue again.
    Resume { queue: String },
    /// Limit a queue across every worker of every process; with neither flag, remove its limits.
    Limit {
        queue: String,
        /// Tasks of the queue processing at once (at least 1).
        #[arg(long)]
        max_processing: Option<u32>,
        /// Claims per second (above 0; fractions allowed, 0.5 is one per 2 s).
        #[arg(long)]
        max_per_second: Option<f64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Tasks matching a filter, newest first.
    List(ListArgs),
    /// One task.
    Get {
        id: i64,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make failed or cancelled tasks run again, with a fresh attempt budget.
    Retry(BulkArgs),
    /// Cancel waiting or processing tasks.
    Cancel(BulkArgs),
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// waiting, processing, finished, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Queue name (the global --queue, before the command, is the queue URL).
    #[arg(long)]
    pub queue: Option<String>,
    /// Task name, exactly.
    #[arg(long)]
    pub name: Option<String>,
    /// Created at or after this UTC time (RFC 3339, e.g. 2026-11-25T08:00:00Z).
    #[arg(long, value_parser = utc_ms)]
    pub created_after: Option<i64>,
    /// Created before this UTC time (RFC 3339).
    #[arg(long, value_parser = utc_ms)]
    pub created_before: Option<i64>,
}

/// An RFC 3339 time in UTC (`T` or a space; `Z` optional) as Unix milliseconds.
fn utc_ms(text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{e} (expected e.g. 2026-11-25T08:00:00Z)"))?;
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| "times before 1970 are not supported".to_string())
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Tasks to print at most (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only tasks with ids below this one (the next page of an earlier list).
    #[arg(long)]
    pub before: Option<i64>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ids", "status"]))]
pub struct BulkArgs {
    /// Task ids.
    #[arg(conflicts_with_all = ["status", "queue", "name", "created_after", "created_before"])]
    pub ids: Vec<i64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub json: JsonFlag,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule of the namespace, with its next tick.
    List(JsonFlag),
    /// Declare a periodic task, or replace the one of the same name (its next tick is
    /// kept while its timing is unchanged).
    Add(ScheduleArgs),
    /// Remove a schedule (the tasks it made stay).
    Remove {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("timing").required(true).args(["cron", "every"]))]
pub struct ScheduleArgs {
    /// The schedule's name, also the name of every task it makes.
    pub name: String,
    /// Queue name of its tasks (the global --queue, before the command, is the queue URL).
    #[arg(long)]
    pub queue: String,
    /// A cron expression: 5 fields, 6 with seconds first, or @hourly, @daily…
    #[arg(long)]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default UTC).
    #[arg(long, requires = "cron")]
    pub time_zone: Option<String>,
    /// A fixed interval: seconds, or a duration such as 90s, 5m, 1h 30m (at least 1s).
    #[arg(long, value_parser = interval)]
    pub every: Option<std::time::Duration>,
    /// The input of each task, a JSON object.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Ticks missed while no process swept: run_once (one catch-up task) or skip.
    #[arg(long, default_value = "run_once", value_parser = ["run_once", "skip"])]
    pub missed: String,
    /// Lease of one dispatch of each task, in seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Seconds after its creation that each task is never dispatched again.
    #[arg(long)]
    pub deadline: Option<f64>,
    /// Seconds a finished task's row is kept.
    #[arg(long)]
    pub delete_deadline: Option<f64>,
    /// Dispatches of each task at most.
    #[arg(long)]
    pub max_count: Option<u32>,
    /// Priority of each task: claims take higher priority first (default 0, from
    /// -1000 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// Seconds (`90`, `1.5`) or a duration as people write it (`90s`, `5m`, `1h 30m`).
fn interval(text: &str) -> Result<std::time::Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) => std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}")),
        Err(_) => humantime::parse_duration(text).map_err(|e| format!("{e} (expected e.g. 60, 90s, 5m, 1h)")),
    }
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to listen on. Any address but loopback needs --token or --basic-auth.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Require this bearer token (header `Authorization: Bearer …`, or open /login?token=… once).
    #[arg(long, env = "QTASK_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Require HTTP basic authentication with USER:PASSWORD.
    #[arg(long, env = "QTASK_DASHBOARD_BASIC_AUTH", hide_env_values = true)]
    pub basic_auth: Option<String>,
}
