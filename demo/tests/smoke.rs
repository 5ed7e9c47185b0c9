//! Runs the demo binary with small numbers: a worker is killed mid-run, and the
//! summary must still say that nothing was lost.

use std::process::Command;

#[test]
fn demo_loses_nothing_when_a_worker_is_killed() {
    let dir = std::env::temp_dir().join(format!("qtask-demo-smoke-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_qtask-demo"))
        .args([
            "--tasks",
            "200",
            "--delayed",
            "20",
            "--workers",
            "2",
            "--time-limit",
            "60",
        ])
        .arg("--dir")
        .arg(&dir)
        .env_remove("QTASK_DB_URL")
        .env_remove("QTASK_QUEUE_URL")
        .output()
        .expect("run qtask-demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "qtask-demo failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    assert!(summary.contains("created 220,"), "{summary}");
    assert!(summary.contains("finished 220,"), "{summary}");
    assert!(summary.contains("lost 0,"), "{summary}");
    assert!(
        stdout.contains("SIGKILL worker pid"),
        "no worker was killed:\n{stdout}"
    );
}

#[test]
fn bad_options_exit_with_status_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_qtask-demo"))
        .args(["--tasks", "many"])
        .output()
        .expect("run qtask-demo");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tasks"));
}
