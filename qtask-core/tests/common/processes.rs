//! Child processes: a test binary runs one of its own ignored tests as a worker or
//! producer to kill, stop or read.

use std::process::{Child, Command, Stdio};

/// Runs the ignored test `name` of this test binary as a child process with `env`.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// What follows `prefix` on each line a child printed it (libtest may print its own
/// "test name ... " before the child's first line).
pub fn lines_with(output: &str, prefix: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.find(prefix).map(|at| l[at + prefix.len()..].trim().to_string()))
        .collect()
}
