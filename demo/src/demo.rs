//! The parent process: prepares a fresh database, starts the worker processes,
//! creates the tasks, kills one worker mid-run, watches progress and checks the result.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use qtask_core::sqlx::{self, AssertSqlSafe};
use qtask_core::{Client, Config, NewTask, Status};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::args::DemoArgs;
use crate::QUEUE;

const DB_FILE: &str = "qtask-demo.db";
const LEDGER_DIR: &str = "ledger";
/// Finished rows stay this long, so the summary counts them from the table itself.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// Real-time tasks created one by one before the rest go in batches.
const ONE_BY_ONE: u64 = 100;
const BATCH: usize = 100;
const POLL: Duration = Duration::from_millis(200);

/// Runs the demo; Ok(true) when every created task finished.
pub async fn run(args: DemoArgs) -> Result<bool, String> {
    let dir = prepare_dir(&args.dir)?;
    let sqlite = args.db.is_none();
    let db = match &args.db {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.join(DB_FILE).display()),
    };
    // A server database gets a table of its own for this run, dropped at the end.
    let table_prefix = if sqlite {
        "qtask_".to_string()
    } else {
        format!("qtask_demo_{}_", std::process::id())
    };
    let config = Config {
        db: db.clone(),
        queue: args.queue.clone(),
        table_prefix: table_prefix.clone(),
        // A pure producer and observer; the workers sweep.
        sweeper: false,
        ..Config::default()
    };
    let client = Client::open(config)
        .await
        .map_err(|e| format!("open {}: {e}", qtask_core::store::redact(&db)))?;
    client.install().await.map_err(|e| format!("install: {e}"))?;
    let table = client.config().task_table();

    println!(
        "qtask demo: {} real-time + {} delayed tasks, {} worker processes x {} handlers, \
         timeout {:.1} s",
        args.tasks,
        args.delayed,
        args.workers,
        args.concurrency,
        args.timeout.as_secs_f64()
    );
    println!(
        "  database {}  table {table}  queue {}",
        qtask_core::store::redact(&db),
        args.queue
    );
    println!("  ledger   {}", dir.join(LEDGER_DIR).display());

    let mut pool = WorkerPool {
        exe: std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
        db: db.clone(),
        queue: args.queue.clone(),
        table_prefix,
        concurrency: args.concurrency,
        work_ms: args.work_ms,
        ledger_dir: dir.join(LEDGER_DIR),
        workers: Vec::new(),
    };
    let mut outcome = Err(String::new());
    for _ in 0..args.workers {
        if let Err(err) = pool.spawn() {
            outcome = Err(err);
            break;
        }
    }
    if pool.workers.len() == args.workers {
        outcome = watch(&client, &args, &mut pool).await;
    }
    pool.stop_all();
    let result = match outcome {
        Ok(watched) => summarize(&client, &table, &pool, &watched).await,
        Err(err) => Err(err),
    };
    if !sqlite {
        if let Err(err) = client.store().drop_tables().await {
            eprintln!("qtask-demo: could not drop the tables of {table}: {err}");
        }
    }
    client.close().await;
    result
}

/// Empties the demo's own files (never anything else) in `dir`.
fn prepare_dir(dir: &Path) -> Result<PathBuf, String> {
    let ledger = dir.join(LEDGER_DIR);
    std::fs::create_dir_all(&ledger).map_err(|e| format!("create {}: {e}", ledger.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = dir.join(format!("{DB_FILE}{suffix}"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", file.display())),
        }
    }
    let entries = std::fs::read_dir(&ledger).map_err(|e| format!("{}: {e}", ledger.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".ledger") {
            std::fs::remove_file(entry.path()).map_err(|e| format!("remove {:?}: {e}", name))?;
        }
    }
    Ok(dir)
}

/// The worker processes: this program re-run as `qtask-demo worker`.
struct WorkerPool {
    exe: PathBuf,
    db: String,
    queue: String,
    table_prefix: String,
    concurrency: usize,
    work_ms: u64,
    ledger_dir: PathBuf,
    workers: Vec<WorkerProcess>,
}

struct WorkerProcess {
    child: Child,
    ledger: PathBuf,
    killed: bool,
}

impl WorkerPool {
    fn spawn(&mut self) -> Result<u32, String> {
        let ledger = self
            .ledger_dir
            .join(format!("worker-{}.ledger", self.workers.len() + 1));
        let child = std::process::Command::new(&self.exe)
            .arg("worker")
            .args(["--db", &self.db, "--queue", &self.queue])
            .args(["--table-prefix", &self.table_prefix])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--work-ms", &self.work_ms.to_string()])
            .arg("--ledger")
            .arg(&ledger)
            // The worker runs until this pipe closes: when the demo ends, or dies.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start a worker process: {e}"))?;
        let pid = child.id();
        self.workers.push(WorkerProcess {
            child,
            ledger,
            killed: false,
        });
        Ok(pid)
    }

    /// A worker that exited although nobody asked it to.
    fn check_alive(&mut self) -> Result<(), String> {
        for worker in self.workers.iter_mut().filter(|w| !w.killed) {
            if let Ok(Some(status)) = worker.child.try_wait() {
                return Err(format!(
                    "worker process {} exited on its own ({status})",
                    worker.child.id()
                ));
            }
        }
        Ok(())
    }

    /// Closes every worker's standard input (a graceful stop), then waits; kills
    /// whatever has not stopped after 10 s.
    fn stop_all(&mut self) {
        for worker in &mut self.workers {
            drop(worker.child.stdin.take());
        }
        let until = Instant::now() + Duration::from_secs(10);
        for worker in &mut self.workers {
            loop {
                match worker.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= until => {
                        eprintln!(
                            "qtask-demo: worker {} did not stop; killing it",
                            worker.child.id()
                        );
                        let _ = worker.child.kill();
                        let _ = worker.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// What the run observed, for the summary.
struct Watched {
    created: Vec<i64>,
    real_time: u64,
    delayed: u64,
    /// Creation start to the moment the last task was seen finished.
    elapsed: Duration,
    /// (pid, started-but-unfinished tasks it held when killed).
    killed: Option<(u32, usize)>,
    timed_out: bool,
}

/// Creates the tasks in the background and follows them to the end with a progress bar.
async fn watch(client: &Client, args: &DemoArgs, pool: &mut WorkerPool) -> Result<Watched, String> {
    let total = args.tasks + args.delayed;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:32.green/white}] {pos}/{len} finished {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let created_count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut creator: Option<JoinHandle<Result<Vec<i64>, String>>> = Some(tokio::spawn(create_all(
        client.clone(),
        args.clone(),
        created_count.clone(),
    )));
    let mut created: Option<Vec<i64>> = None;
    let mut killed = None;
    let mut kill_note = String::new();
    let mut timed_out = false;
    loop {
        tokio::time::sleep(POLL).await;
        if creator.as_ref().is_some_and(JoinHandle::is_finished) {
            let handle = creator.take().expect("checked above");
            created = Some(handle.await.map_err(|e| format!("creator: {e}"))??);
        }
        let stats = client.stats().await.map_err(|e| format!("stats: {e}"))?;
        let finished = u64::try_from(stats.finished).unwrap_or(0);
        bar.set_position(finished);
        bar.set_message(format!(
            "| {:.0}/s | created {} | running {}{kill_note}",
            finished as f64 / start.elapsed().as_secs_f64(),
            created_count.load(Ordering::Relaxed),
            stats.processing
        ));
        pool.check_alive()?;
        if args.kill && killed.is_none() && finished * 4 >= total && finished > 0 {
            let (pid, held) = kill_one(client, pool).await?;
            let replacement = pool.spawn()?;
            kill_note = format!(" | killed {pid}");
            let line = format!(
                "  SIGKILL worker pid {pid} after {finished} finished; it held {held} started, unfinished \
                 tasks; replacement worker pid {replacement}"
            );
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
            killed = Some((pid, held));
        }
        if let Some(ids) = &created {
            let ended = stats.finished + stats.failed + stats.cancelled;
            if ended >= ids.len() as i64 {
                break;
            }
        }
        if start.elapsed() > args.time_limit {
            timed_out = true;
            break;
        }
    }
    let elapsed = start.elapsed();
    if timed_out {
        bar.abandon_with_message("TIME LIMIT REACHED");
        eprintln!(
            "qtask-demo: TIME LIMIT: not every task finished within {:.0} s",
            args.time_limit.as_secs_f64()
        );
    } else {
        bar.finish();
    }
    let created = match (created, creator) {
        (Some(ids), _) => ids,
        (None, Some(handle)) => {
            handle.abort();
            return Err(format!(
                "TIME LIMIT: still creating tasks after {:.0} s",
                args.time_limit.as_secs_f64()
            ));
        }
        (None, None) => unreachable!("the creator's result is taken when it ends"),
    };
    Ok(Watched {
        created,
        real_time: args.tasks,
        delayed: args.delayed,
        elapsed,
        killed,
        timed_out,
    })
}

/// Creates the real-time tasks (the first one by one, the rest in batches), then the
/// delayed ones, due 1 to 3 s after creation. Returns every id.
async fn create_all(client: Client, args: DemoArgs, count: Arc<AtomicU64>) -> Result<Vec<i64>, String> {
    let task = |n: u64, kind: &str| {
        NewTask::new("demo task", json!({ "n": n, "kind": kind }), QUEUE)
            .timeout(args.timeout)
            .delete_deadline(KEEP_FINISHED)
    };
    let mut ids = Vec::with_capacity((args.tasks + args.delayed) as usize);
    let one_by_one = args.tasks.min(ONE_BY_ONE);
    for n in 0..one_by_one {
        let created = client
            .create(task(n, "real-time"))
            .await
            .map_err(|e| format!("create: {e}"))?;
        ids.push(created.id);
        count.fetch_add(1, Ordering::Relaxed);
    }
    let rest: Vec<u64> = (one_by_one..args.tasks).collect();
    for chunk in rest.chunks(BATCH) {
        let tasks = chunk.iter().map(|&n| task(n, "real-time")).collect();
        let created = client
            .create_many(tasks)
            .await
            .map_err(|e| format!("create_many: {e}"))?;
        ids.extend(created.iter().map(|c| c.id));
        count.fetch_add(created.len() as u64, Ordering::Relaxed);
    }
    for n in 0..args.delayed {
        let delay = Duration::from_millis(fastrand::u64(1000..=3000));
        let created = client
            .delay(task(n, "delayed"), delay)
            .await
            .map_err(|e| format!("delay: {e}"))?;
        ids.push(created.id);
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ids)
}

/// SIGKILLs the first worker and counts the tasks it had started (its ledger) that
/// are still unfinished: those come back after their timeout.
async fn kill_one(client: &Client, pool: &mut WorkerPool) -> Result<(u32, usize), String> {
    let worker = pool
        .workers
        .iter_mut()
        .find(|w| !w.killed)
        .ok_or("no worker left to kill")?;
    let pid = worker.child.id();
    worker
        .child
        .kill()
        .map_err(|e| format!("kill worker {pid}: {e}"))?;
    let _ = worker.child.wait();
    worker.killed = true;
    // A statement the worker had already sent (a finish) may still complete on a
    // database server after the process is gone; let it land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started: HashSet<i64> = read_ledger(&worker.ledger)?.iter().map(|e| e.task_id).collect();
    let table = client.config().task_table();
    let live = ids(
        client,
        &format!("SELECT id FROM {table} WHERE status IN (20, 30)"),
    )
    .await?;
    let held = live.iter().filter(|id| started.contains(id)).count();
    Ok((pid, held))
}

/// One line of a worker's ledger.
struct Execution {
    task_id: i64,
    attempt: i64,
    pid: u32,
}

fn read_ledger(path: &Path) -> Result<Vec<Execution>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(' ').map(str::parse::<i64>);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(task_id)), Some(Ok(attempt)), Some(Ok(pid))) => out.push(Execution {
                task_id,
                attempt,
                pid: pid as u32,
            }),
            // A line cut short by SIGKILL mid-write is not an execution that finished its effect.
            _ => eprintln!(
                "qtask-demo: skipping a torn ledger line in {}: {line:?}",
                path.display()
            ),
        }
    }
    Ok(out)
}

async fn ids(client: &Client, sql: &str) -> Result<HashSet<i64>, String> {
    let rows: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
        .fetch_all(client.store().pool())
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(rows.into_iter().collect())
}

async fn count(client: &Client, sql: &str) -> Result<i64, String> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
        .fetch_one(client.store().pool())
        .await
        .map_err(|e| format!("{sql}: {e}"))
}

/// Prints the summary from the table and the ledgers; true when nothing was lost.
async fn summarize(client: &Client, table: &str, pool: &WorkerPool, w: &Watched) -> Result<bool, String> {
    let finished_ids = ids(
        client,
        &format!(
            "SELECT id FROM {table} WHERE status = {}",
            Status::Finished.code()
        ),
    )
    .await?;
    let redispatched = count(
        client,
        &format!("SELECT COUNT(*) FROM {table} WHERE dispatch_count > 1"),
    )
    .await?;
    let stats = client.stats().await.map_err(|e| format!("stats: {e}"))?;
    let mut executions = Vec::new();
    for worker in &pool.workers {
        executions.extend(read_ledger(&worker.ledger)?);
    }
    let mut per_task: HashMap<i64, u32> = HashMap::new();
    for e in &executions {
        *per_task.entry(e.task_id).or_default() += 1;
    }
    let pids: HashSet<u32> = executions.iter().map(|e| e.pid).collect();
    let later_attempts = executions.iter().filter(|e| e.attempt > 1).count();
    let duplicates = executions.len() - per_task.len();
    let created = w.created.len();
    let finished = w.created.iter().filter(|id| finished_ids.contains(id)).count();
    let lost = created - finished;
    let never_run = w.created.iter().filter(|id| !per_task.contains_key(id)).count();
    let secs = w.elapsed.as_secs_f64();
    let rate = finished as f64 / secs.max(1e-9);

    println!();
    println!(
        "  created        {created:>7}   ({} real-time, {} delayed 1-3 s)",
        w.real_time, w.delayed
    );
    println!("  finished       {finished:>7}   distinct created tasks with status finished in the table");
    match w.killed {
        Some((pid, held)) => println!(
            "  killed         {:>7}   worker pid {pid} (SIGKILL), holding {held} started, unfinished tasks",
            1
        ),
        None => println!("  killed         {:>7}   (--no-kill)", 0),
    }
    println!("  re-dispatched  {redispatched:>7}   tasks dispatched more than once (dispatch_count > 1)");
    println!(
        "  executions     {:>7}   ledger lines from {} worker processes; {later_attempts} were attempt > 1",
        executions.len(),
        pids.len()
    );
    println!(
        "  duplicates     {duplicates:>7}   executions beyond one per task (at least once, not exactly once)"
    );
    if stats.failed + stats.cancelled > 0 {
        println!(
            "  failed         {:>7}   given up (max count or deadline); cancelled {}",
            stats.failed, stats.cancelled
        );
    }
    println!("  never run      {never_run:>7}   created tasks with no ledger line");
    println!("  lost           {lost:>7}   created - finished");
    println!("  elapsed        {secs:>9.1} s");
    println!("  throughput     {rate:>7.0}   tasks/s (finished / elapsed)");
    println!();
    println!(
        "summary: created {created}, finished {finished}, re-dispatched {redispatched}, \
         duplicates {duplicates}, lost {lost}, {rate:.0} tasks/s"
    );
    let ok = lost == 0 && never_run == 0 && !w.timed_out;
    if ok {
        let despite = if w.killed.is_some() {
            ", although a worker was killed mid-run"
        } else {
            ""
        };
        println!("OK: every task was executed and finished{despite}.");
    } else {
        println!("FAILED: {lost} tasks lost, {never_run} never run (see the lines above).");
    }
    Ok(ok)
}
