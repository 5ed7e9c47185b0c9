//! CPU time per task of the large drain, for the client and for each server process on
//! this machine. Unlike tasks/s it hardly moves when other work shares the cores, so a
//! change can be judged on a busy machine: fewer microseconds per task is faster.

use std::collections::BTreeMap;
use std::fs;

/// Linux reports process times in clock ticks of 1/100 s to user space.
const TICKS_PER_SECOND: f64 = 100.0;
/// Server programs whose processes are counted, by their command name.
const SERVERS: [&str; 4] = ["postgres", "mariadbd", "mysqld", "redis-server"];

/// CPU seconds used so far: by this process, and by each server process (by pid: a
/// process that exits between two samples drops out instead of making a sum go back).
#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    client: f64,
    servers: BTreeMap<u32, (String, f64)>,
}

/// CPU seconds this process (every thread, ended ones too) used so far.
pub fn own_cpu_seconds() -> f64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_seconds(&stat).map(|(_, secs)| secs))
        .unwrap_or(0.0)
}

impl CpuUse {
    pub fn now() -> CpuUse {
        let client = own_cpu_seconds();
        let mut servers = BTreeMap::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, secs)) = cpu_seconds(&stat) {
                if SERVERS.contains(&comm.as_str()) {
                    servers.insert(pid, (comm, secs));
                }
            }
        }
        CpuUse { client, servers }
    }

    /// Microseconds of CPU per task between `before` and now, as "client 41 µs, postgres 160 µs".
    pub fn per_task_since(&self, before: &CpuUse, tasks: u64) -> String {
        let per_task = |secs: f64| secs * 1e6 / tasks.max(1) as f64;
        let mut used: BTreeMap<&str, f64> = BTreeMap::new();
        for (pid, (name, secs)) in &self.servers {
            let earlier = before.servers.get(pid).map_or(0.0, |(_, secs)| *secs);
            *used.entry(name.as_str()).or_insert(0.0) += secs - earlier;
        }
        let mut parts = vec![format!("client {:.0} µs", per_task(self.client - before.client))];
        for (name, secs) in used {
            if secs > 0.0 {
                parts.push(format!("{name} {:.0} µs", per_task(secs)));
            }
        }
        parts.join(", ")
    }
}

/// The command name and the user + system CPU seconds in a `/proc/<pid>/stat` line.
fn cpu_seconds(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / TICKS_PER_SECOND))
}

/// Profiles only the drain: with `QTASK_BENCH_PERF_CTL` naming the control fifo of
/// `perf record --control fifo:PATH -D -1`, the drain sends `enable` as it starts and
/// `disable` as it ends, so creating the tasks and the ceiling stay out of the profile.
pub fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("QTASK_BENCH_PERF_CTL") {
        if let Err(err) = fs::write(&path, format!("{command}\n")) {
            eprintln!("qtask-bench: cannot write {command:?} to {path}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_times_after_a_command_with_spaces() {
        let stat = "42 (tokio rt) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_seconds(stat), Some(("tokio rt".to_string(), 3.0)));
    }
}
