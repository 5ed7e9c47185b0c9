//! `qtask schedules list|add|remove`: periodic tasks.

use qtask_core::{seconds, Client, Missed, Result, Schedule, ScheduleInfo};

use crate::args::{ScheduleArgs, SchedulesCommand};
use crate::output::{json, line, table, time};

pub async fn run(client: &Client, command: SchedulesCommand) -> Result<u8> {
    match command {
        SchedulesCommand::List(flag) => {
            let schedules = client.schedules().await?;
            if flag.json {
                json(&schedules);
                return Ok(0);
            }
            let mut t = table(&[
                "name",
                "queue",
                "timing",
                "missed",
                "priority",
                "next tick (UTC)",
                "last task",
            ]);
            for s in &schedules {
                t.add_row([
                    s.name.clone(),
                    s.queue.clone(),
                    timing(s),
                    s.missed.as_str().into(),
                    s.priority.to_string(),
                    time(s.next_at),
                    s.last_task_id.map(|id| id.to_string()).unwrap_or_default(),
                ]);
            }
            line(&t);
        }
        SchedulesCommand::Add(args) => {
            let as_json = args.json.json;
            let info = client
                .schedule(schedule(args, client.config().max_payload_bytes)?)
                .await?;
            if as_json {
                json(&info);
            } else {
                line(format!(
                    "scheduled {} ({}); next tick {}",
                    info.name,
                    timing(&info),
                    time(info.next_at)
                ));
            }
        }
        SchedulesCommand::Remove { name, json: flag } => {
            let existed = client.unschedule(&name).await?;
            if flag.json {
                json(&serde_json::json!({ "name": name, "removed": existed }));
            } else if existed {
                line(format!("removed {name}"));
            } else {
                line(format!("no schedule {name}"));
            }
        }
    }
    Ok(0)
}

fn schedule(args: ScheduleArgs, max_payload_bytes: usize) -> Result<Schedule> {
    let input = qtask_core::input::parse_input(&args.input, max_payload_bytes)?;
    let mut schedule = match (&args.cron, args.every) {
        (Some(cron), _) => Schedule::cron(&args.name, input, &args.queue, cron),
        (None, every) => Schedule::every(&args.name, input, &args.queue, every.unwrap_or_default()),
    };
    schedule.time_zone = args.time_zone;
    schedule.missed = Missed::parse(&args.missed)?;
    if let Some(t) = args.timeout {
        schedule.timeout = seconds("timeout", t)?;
    }
    if let Some(d) = args.deadline {
        schedule.options.deadline = Some(seconds("deadline", d)?);
    }
    if let Some(d) = args.delete_deadline {
        schedule.options.delete_deadline = Some(seconds("delete_deadline", d)?);
    }
    schedule.options.max_count = args.max_count;
    schedule.options.priority = args.priority;
    Ok(schedule)
}

/// `0 9 * * * (Asia/Shanghai)` or `every 60s`.
fn timing(s: &ScheduleInfo) -> String {
    match (&s.cron, &s.time_zone, s.every_ms) {
        (Some(cron), Some(zone), _) => format!("{cron} ({zone})"),
        (_, _, Some(ms)) => format!(
            "every {}",
            humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
        ),
        _ => String::new(),
    }
}
