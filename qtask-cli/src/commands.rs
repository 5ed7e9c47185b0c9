//! The commands that print something and end: stats, queues, tasks.

use indicatif::{ProgressBar, ProgressStyle};
use qtask_core::admin::{parse_status, BulkBatch, TaskFilter, BULK_BATCH};
use qtask_core::{Client, QueueLimits, Result, Task};
use serde::Serialize;

use crate::args::{BulkArgs, FilterArgs, QueuesCommand, TasksCommand};
use crate::output::{json, line, short, table, time};
use crate::{exit_code, EXIT_USAGE};

/// Bulk work over at least this many tasks shows a progress bar (on a terminal).
const PROGRESS_FROM: i64 = 2 * BULK_BATCH as i64;

pub async fn stats(client: &Client, as_json: bool) -> Result<u8> {
    let stats = client.stats().await?;
    if as_json {
        json(&stats);
        return Ok(0);
    }
    let mut t = table(&[
        "waiting",
        "processing",
        "finished",
        "failed",
        "cancelled",
        "due",
        "redispatched live",
    ]);
    t.add_row([
        stats.waiting,
        stats.processing,
        stats.finished,
        stats.failed,
        stats.cancelled,
        stats.due,
        stats.redispatched_live,
    ]);
    line(&t);
    Ok(0)
}

pub async fn queues(client: &Client, command: QueuesCommand) -> Result<u8> {
    match command {
        QueuesCommand::List(flag) => {
            let queues = client.queues().await?;
            if flag.json {
                json(&queues);
                return Ok(0);
            }
            let mut t = table(&[
                "queue",
                "state",
                "limits",
                "waiting",
                "processing",
                "finished",
                "failed",
                "cancelled",
            ]);
            for q in &queues {
                let state = if q.paused { "paused" } else { "active" };
                t.add_row([
                    q.queue.clone(),
                    state.into(),
                    limits_text(&q.limits),
                    q.waiting.to_string(),
                    q.processing.to_string(),
                    q.finished.to_string(),
                    q.failed.to_string(),
                    q.cancelled.to_string(),
                ]);
            }
            line(&t);
        }
        QueuesCommand::Pause { queue } => {
            client.pause_queue(&queue).await?;
            line(format!("paused {queue}"));
        }
        QueuesCommand::Resume { queue } => {
            client.resume_queue(&queue).await?;
            line(format!("resumed {queue}"));
        }
        QueuesCommand::Limit {
            queue,
            max_processing,
            max_per_second,
        } => {
            let limits = QueueLimits {
                max_processing,
                max_per_second,
            };
            client.set_queue_limits(&queue, limits).await?;
            line(format!("{queue}: {}", limits_text(&limits)));
        }
    }
    Ok(0)
}

/// `4 processing, 2.5/s`, or `-` without limits.
fn limits_text(limits: &QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = limits.max_processing {
        parts.push(format!("{n} processing"));
    }
    if let Some(rate) = limits.max_per_second {
        parts.push(format!("{rate}/s"));
    }
    match parts.is_empty() {
        true => "-".into(),
        false => parts.join(", "),
    }
}

pub async fn tasks(client: &Client, command: TasksCommand) -> Result<u8> {
    match command {
        TasksCommand::List(args) => {
            let filter = filter(&args.filter)?;
            let page = client.list_tasks(&filter, args.before, args.limit).await?;
            if args.json.json {
                json(&page);
                return Ok(0);
            }
            print_tasks(&page.tasks);
            if let Some(next) = page.next_before_id {
                eprintln!("more: add --before {next}");
            }
            Ok(0)
        }
        TasksCommand::Get { id, json: flag } => {
            let task = client.get(id).await?;
            if flag.json {
                json(&task);
            } else {
                print_task(&task);
            }
            Ok(0)
        }
        TasksCommand::Retry(args) => bulk(client, Op::Retry, args).await,
        TasksCommand::Cancel(args) => bulk(client, Op::Cancel, args).await,
    }
}

fn filter(args: &FilterArgs) -> Result<TaskFilter> {
    Ok(TaskFilter {
        queue: args.queue.clone(),
        status: args.status.as_deref().map(parse_status).transpose()?,
        name: args.name.clone(),
        created_from: args.created_after,
        created_until: args.created_before,
    })
}

fn print_tasks(tasks: &[Task]) {
    let mut t = table(&[
        "id",
        "queue",
        "name",
        "status",
        "priority",
        "attempts",
        "updated (UTC)",
        "last error",
    ]);
    for task in tasks {
        t.add_row([
            task.id.to_string(),
            task.queue.clone(),
            short(&task.name, 40),
            task.status.as_str().into(),
            task.priority.to_string(),
            format!("{}/{}", task.count, task.max_count),
            time(task.updated_at),
            short(task.last_error.as_deref().unwrap_or(""), 60),
        ]);
    }
    line(&t);
}

fn print_task(task: &Task) {
    let mut t = table(&["field", "value"]);
    let mut row = |k: &str, v: String| {
        t.add_row([k.to_string(), v]);
    };
    row("id", task.id.to_string());
    row("namespace", task.namespace.clone());
    row("queue", task.queue.clone());
    row("name", task.name.clone());
    row("status", task.status.as_str().into());
    row("priority", task.priority.to_string());
    row("attempts", format!("{} of {}", task.count, task.max_count));
    row("order_no", task.order_no.clone().unwrap_or_default());
    row("timeout", format!("{} ms", task.timeout_ms));
    row(
        "next dispatch",
        task.next_at.map(time).unwrap_or_else(|| "-".into()),
    );
    row("deadline", time(task.deadline_at));
    row("delete at", time(task.delete_at));
    row("created", time(task.created_at));
    row("updated", time(task.updated_at));
    row("last error", task.last_error.clone().unwrap_or_default());
    row("input", task.input.to_string());
    line(&t);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Retry,
    Cancel,
}

impl Op {
    fn done(self) -> &'static str {
        match self {
            Op::Retry => "retried",
            Op::Cancel => "cancelled",
        }
    }
}

/// What a bulk command did, for `--json`.
#[derive(Debug, Default, Serialize)]
struct BulkReport {
    changed: u64,
    /// Per id: the error, for ids that could not be changed.
    errors: Vec<IdError>,
}

#[derive(Debug, Serialize)]
struct IdError {
    id: i64,
    error: String,
}

async fn bulk(client: &Client, op: Op, args: BulkArgs) -> Result<u8> {
    let mut report = BulkReport::default();
    let mut code = 0;
    if !args.ids.is_empty() {
        for &id in &args.ids {
            let result = match op {
                Op::Retry => client.retry(id).await,
                Op::Cancel => client.cancel(id).await,
            };
            match result {
                Ok(()) => report.changed += 1,
                Err(err) => {
                    code = code.max(exit_code(&err));
                    if !args.json.json {
                        eprintln!("qtask: task {id}: {err}");
                    }
                    report.errors.push(IdError {
                        id,
                        error: err.to_string(),
                    });
                }
            }
        }
    } else {
        let filter = filter(&args.filter)?;
        if filter.status.is_none() {
            // The arg group makes --status required without ids; keep the promise here too.
            eprintln!("qtask: give task ids or --status");
            return Ok(EXIT_USAGE);
        }
        let total = client.count_tasks(&filter).await?;
        let bar = progress(total, op);
        let mut after_id = 0;
        loop {
            let batch: BulkBatch = match op {
                Op::Retry => client.retry_batch(&filter, after_id).await?,
                Op::Cancel => client.cancel_batch(&filter, after_id).await?,
            };
            report.changed += batch.changed;
            if let Some(bar) = &bar {
                bar.set_position(report.changed);
            }
            match batch.next_after_id {
                Some(next) => after_id = next,
                None => break,
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
    if args.json.json {
        json(&report);
    } else {
        line(format!("{} {} task(s)", op.done(), report.changed));
    }
    Ok(code)
}

/// A progress bar on stderr for long bulk work (hidden when stderr is not a terminal).
fn progress(total: i64, op: Op) -> Option<ProgressBar> {
    if total < PROGRESS_FROM {
        return None;
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {human_pos}/{human_len} ({eta} left)") {
        bar.set_style(style);
    }
    bar.set_message(match op {
        Op::Retry => "retrying",
        Op::Cancel => "cancelling",
    });
    Some(bar)
}
