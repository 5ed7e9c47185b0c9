//! A worker process: the demo binary re-run as `qtask-demo worker …`. It runs
//! `qtask_core::Worker` until its standard input closes (the parent ends the run, or
//! dies), or until the parent kills it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qtask_core::{Client, Config, Message, Worker};
use tokio::io::AsyncReadExt;

use crate::args::WorkerArgs;
use crate::QUEUE;

pub async fn run(args: WorkerArgs) -> Result<(), String> {
    let config = Config {
        db: args.db,
        queue: args.queue,
        table_prefix: args.table_prefix,
        ..Config::default()
    };
    let client = Client::open(config)
        .await
        .map_err(|e| format!("worker: open: {e}"))?;
    let ledger = Ledger::open(&args.ledger)?;
    let work_ms = args.work_ms;
    let handler = move |message: Message| {
        let ledger = ledger.clone();
        async move {
            // The business effect: one ledger line per execution. A task executed
            // twice (its worker was killed after this line) shows up twice.
            ledger.record(&message)?;
            if work_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=work_ms))).await;
            }
            Ok(())
        }
    };
    let report = Worker::new(client.clone(), QUEUE)
        .concurrency(args.concurrency)
        .run(handler, stdin_closed())
        .await
        .map_err(|e| format!("worker: {e}"))?;
    client.close().await;
    if report.failed > 0 {
        eprintln!("worker {}: {} handler errors", std::process::id(), report.failed);
    }
    Ok(())
}

/// Resolves when the parent closes our standard input, or exits.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// This worker's append-only ledger: `task_id attempt pid` per execution. Each line
/// is one `write` on an O_APPEND file, so it survives a SIGKILL right after.
#[derive(Clone)]
struct Ledger {
    file: Arc<Mutex<File>>,
    pid: u32,
}

impl Ledger {
    fn open(path: &std::path::Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("worker: ledger {}: {e}", path.display()))?;
        Ok(Ledger {
            file: Arc::new(Mutex::new(file)),
            pid: std::process::id(),
        })
    }

    fn record(&self, message: &Message) -> Result<(), String> {
        let line = format!("{} {} {}\n", message.task_id, message.attempt, self.pid);
        let mut file = self.file.lock().map_err(|_| "ledger lock poisoned".to_string())?;
        file.write_all(line.as_bytes())
            .map_err(|e| format!("ledger write: {e}"))
    }
}
