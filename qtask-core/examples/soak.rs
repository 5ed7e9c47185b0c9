//! Chaos soak (issue 10), run by `tests/faults/run.sh`.
//!
//! Per pair (database + queue) it creates tasks with a 2 s timeout while workers and
//! sweepers run as separate processes (this binary again, `soak worker` / `soak
//! sweeper`), and injects faults at random: SIGKILL of a worker or a sweeper (then a
//! restart), SIGSTOP of a worker past its lease (then SIGCONT), killed database
//! connections, deleted Redis keys and a restarted private redis-server, and (only when
//! asked) restarts PostgreSQL once. Handlers append `task_id attempt pid ms lang` to a
//! ledger (fsync) before returning. At the end the ledger and the table prove: lost 0,
//! never-run 0, no outcome of a stale attempt applied, and the duplicates stay within
//! the bound.
//!
//! One worker of each pair is Python (`tests/faults/soak_worker.py`, the `qtask`
//! package's `run_worker`) when `SOAK_PYTHON` names a python that has it; the others
//! are Rust.
//!
//! Environment: `QTASK_SOAK_MINUTES` (fault time over all pairs; default 2.5),
//! `QTASK_SOAK_PAIRS` (comma list, default all five), `SOAK_PYTHON`,
//! `QTASK_SOAK_RESTART_PG` (`1`: run `SOAK_PG_RESTART` once, in the first PostgreSQL
//! pair, then wait for `pg_isready`; `dry-run`: only print the command), the test URLs
//! of scripts/env.sh.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qtask_core::sqlx::{self, AssertSqlSafe, Row};
use qtask_core::{Client, Config, NewTask, Worker};
use serde_json::json;

const QUEUE: &str = "SOAK";
const TIMEOUT: Duration = Duration::from_secs(2);
const SWEEP: Duration = Duration::from_secs(1);
const WORKERS: usize = 3;
const CONCURRENCY: usize = 4;
const SWEEPERS: usize = 2;
/// A private redis-server the soak may restart (the shared one is never touched).
const PRIVATE_REDIS_PORT: u16 = 6391;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("worker") => child(false),
        Some("sweeper") => child(true),
        _ => coordinator(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn child_config(sweeper: bool) -> Config {
    Config {
        db: env("SOAK_DB"),
        queue: env("SOAK_QUEUE"),
        table_prefix: env("SOAK_TABLE_PREFIX"),
        redis_prefix: env("SOAK_REDIS_PREFIX"),
        sweeper,
        sweep_interval: SWEEP,
        max_connections: 4,
        connect_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A worker or a sweeper process; it runs until killed.
fn child(sweeper: bool) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = loop {
            match Client::open(child_config(sweeper)).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if sweeper {
            std::future::pending::<()>().await;
        }
        let ledger = env("SOAK_LEDGER");
        let handler = move |message: qtask_core::Message| {
            let ledger = ledger.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..60))).await;
                let line = format!(
                    "{} {} {} {} 0\n",
                    message.task_id,
                    message.attempt,
                    std::process::id(),
                    now_ms()
                );
                tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&ledger)?;
                    file.write_all(line.as_bytes())?;
                    file.sync_data()
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            }
        };
        let result = Worker::new(client, QUEUE)
            .concurrency(CONCURRENCY)
            .run(handler, std::future::pending())
            .await;
        eprintln!("soak worker {} ended: {result:?}", std::process::id());
        ExitCode::FAILURE
    })
}

#[derive(Clone, Debug)]
struct Pair {
    name: &'static str,
    db: String,
    queue: String,
    /// The queue is the private redis-server: it may be restarted.
    private_redis: bool,
}

fn pairs() -> Vec<Pair> {
    let pg = std::env::var("QTASK_TEST_PG_URL").unwrap_or("postgres://postgres@127.0.0.1:5432/test".into());
    let my = std::env::var("QTASK_TEST_MYSQL_URL").unwrap_or("mysql://root@127.0.0.1:3306/test".into());
    let cluster = std::env::var("QTASK_TEST_REDIS_CLUSTER_URLS")
        .unwrap_or("redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".into());
    let private = format!("redis://127.0.0.1:{PRIVATE_REDIS_PORT}/");
    let sqlite = std::env::temp_dir().join(format!("qtask-soak-{}.db", std::process::id()));
    let all = vec![
        Pair {
            name: "sqlite+db",
            db: format!("sqlite://{}", sqlite.display()),
            queue: "db".into(),
            private_redis: false,
        },
        Pair {
            name: "postgres+db",
            db: pg.clone(),
            queue: "db".into(),
            private_redis: false,
        },
        Pair {
            name: "postgres+redis",
            db: pg.clone(),
            queue: private.clone(),
            private_redis: true,
        },
        Pair {
            name: "mariadb+redis",
            db: my,
            queue: private,
            private_redis: true,
        },
        Pair {
            name: "cluster+postgres",
            db: pg,
            queue: cluster,
            private_redis: false,
        },
    ];
    let wanted = env("QTASK_SOAK_PAIRS");
    all.into_iter()
        .filter(|p| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == p.name))
        .collect()
}

fn coordinator() -> ExitCode {
    let minutes: f64 = env("QTASK_SOAK_MINUTES").parse().unwrap_or(2.5);
    let pairs = pairs();
    let per_pair = Duration::from_secs_f64(minutes * 60.0 / pairs.len().max(1) as f64);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut redis = PrivateRedis::start();
    let mut pg_restart = PgRestart::from_env();
    let mut ok = true;
    for (n, pair) in pairs.iter().enumerate() {
        match runtime.block_on(soak(pair, n, per_pair, &mut redis, &mut pg_restart)) {
            Ok(summary) => {
                println!("{}", summary.line);
                ok &= summary.passed;
            }
            // A server that is not there: a loud skip, a failure in CI.
            Err(err) if env("CI") != "true" => println!("SKIP: {}: not run: {err}", pair.name),
            Err(err) => {
                println!("{}: FAILED to run: {err}", pair.name);
                ok = false;
            }
        }
    }
    redis.stop();
    if pg_restart == PgRestart::Pending {
        println!("postgres restart: asked for, but no PostgreSQL pair ran  FAILED");
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The redis-server on PRIVATE_REDIS_PORT, started (and restarted) by the soak.
struct PrivateRedis(Option<Child>);

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &PRIVATE_REDIS_PORT.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok();
        std::thread::sleep(Duration::from_millis(300));
        PrivateRedis(child)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        *self = PrivateRedis::start();
    }
}

/// The one PostgreSQL restart (`QTASK_SOAK_RESTART_PG`): the server is shared, so it
/// happens only when asked (CI, where the soak is the last step).
#[derive(Clone, Copy, Debug, PartialEq)]
enum PgRestart {
    Off,
    DryRun,
    Pending,
    Done,
}

impl PgRestart {
    fn from_env() -> PgRestart {
        match env("QTASK_SOAK_RESTART_PG").as_str() {
            "1" => PgRestart::Pending,
            "dry-run" => PgRestart::DryRun,
            _ => PgRestart::Off,
        }
    }

    fn command() -> String {
        let command = env("SOAK_PG_RESTART");
        if command.is_empty() {
            "pg_ctlcluster --skip-systemctl-redirect 15 main restart".into()
        } else {
            command
        }
    }

    /// Restarts PostgreSQL and waits (up to 60 s) until `pg_isready` answers. Returns
    /// whether it ran: false for a dry run (which prints the command) or when off.
    fn restart(&mut self) -> Result<bool, String> {
        let command = PgRestart::command();
        match *self {
            PgRestart::DryRun => {
                eprintln!("soak: dry run: would restart PostgreSQL with `{command}`, then wait for `pg_isready -h 127.0.0.1 -p 5432`");
                *self = PgRestart::Done;
                return Ok(false);
            }
            PgRestart::Pending => {}
            _ => return Ok(false),
        }
        *self = PgRestart::Done;
        let status = Command::new("sh")
            .args(["-c", &command])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{command}: {e}"))?;
        if !status.success() {
            return Err(format!("{command}: {status}"));
        }
        let ready_by = Instant::now() + Duration::from_secs(60);
        while Instant::now() < ready_by {
            let ready = Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("PostgreSQL not ready 60 s after its restart".into())
    }
}

struct Summary {
    line: String,
    passed: bool,
}

struct Procs {
    pair_env: Vec<(&'static str, String)>,
    /// The venv's python with the `qtask` package: worker 0 is Python then.
    python: Option<String>,
    workers: Vec<Child>,
    sweepers: Vec<Child>,
    /// Stopped workers and when to resume them.
    stopped: Vec<(u32, Instant)>,
}

impl Procs {
    /// Starts worker `i` (Python for worker 0 when there is a python).
    fn spawn_worker(&self, i: usize) -> std::io::Result<Child> {
        match &self.python {
            Some(python) if i == 0 => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/faults/soak_worker.py");
                self.spawn_with(Command::new(python).arg(script))
            }
            _ => self.spawn("worker"),
        }
    }

    fn spawn(&self, mode: &str) -> std::io::Result<Child> {
        self.spawn_with(Command::new(std::env::current_exe()?).arg(mode))
    }

    fn spawn_with(&self, cmd: &mut Command) -> std::io::Result<Child> {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in &self.pair_env {
            cmd.env(k, v);
        }
        cmd.spawn()
    }

    /// Restarts the children that exited (a worker whose run ended on an error).
    fn keep_up(&mut self) -> std::io::Result<()> {
        for i in 0..self.workers.len() {
            if self.workers[i].try_wait()?.is_some() {
                self.workers[i] = self.spawn_worker(i)?;
            }
        }
        for i in 0..self.sweepers.len() {
            if self.sweepers[i].try_wait()?.is_some() {
                self.sweepers[i] = self.spawn("sweeper")?;
            }
        }
        Ok(())
    }

    fn resume_due(&mut self, all: bool) {
        let now = Instant::now();
        self.stopped.retain(|(pid, at)| {
            if all || *at <= now {
                signal("CONT", *pid);
                false
            } else {
                true
            }
        });
    }

    fn kill_all(&mut self) {
        self.resume_due(true);
        for child in self.workers.iter_mut().chain(self.sweepers.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(name: &str, pid: u32) {
    // The process may be gone already (killed while stopped): nothing to say then.
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

async fn soak(
    pair: &Pair,
    n: usize,
    fault_time: Duration,
    redis: &mut PrivateRedis,
    pg_restart: &mut PgRestart,
) -> Result<Summary, String> {
    let table_prefix = format!("soak{}_{n}_", std::process::id());
    let redis_prefix = format!("soak{}x{n}", std::process::id());
    let ledger = std::env::temp_dir().join(format!("qtask-soak-{}-{n}.ledger", std::process::id()));
    let _ = std::fs::remove_file(&ledger);
    let config = Config {
        db: pair.db.clone(),
        queue: pair.queue.clone(),
        table_prefix: table_prefix.clone(),
        redis_prefix: redis_prefix.clone(),
        sweeper: false,
        ..Config::default()
    };
    let client = Client::open(config).await.map_err(|e| e.to_string())?;
    client.install().await.map_err(|e| e.to_string())?;
    let table = client.store().table().to_string();
    // The coordinator's own pool kills the others' connections; it is never killed.
    let admin = sqlx::AnyPool::connect(&pair.db)
        .await
        .map_err(|e| e.to_string())?;
    let mut procs = Procs {
        pair_env: vec![
            ("SOAK_DB", pair.db.clone()),
            ("SOAK_QUEUE", pair.queue.clone()),
            ("SOAK_TABLE_PREFIX", table_prefix.clone()),
            ("SOAK_REDIS_PREFIX", redis_prefix.clone()),
            ("SOAK_LEDGER", ledger.display().to_string()),
        ],
        python: Some(env("SOAK_PYTHON")).filter(|p| !p.is_empty()),
        workers: Vec::new(),
        sweepers: Vec::new(),
        stopped: Vec::new(),
    };
    for i in 0..WORKERS {
        let w = procs.spawn_worker(i).map_err(|e| e.to_string())?;
        procs.workers.push(w);
    }
    for _ in 0..SWEEPERS {
        let s = procs.spawn("sweeper").map_err(|e| e.to_string())?;
        procs.sweepers.push(s);
    }

    // When each fault struck and what it was: counted by kind in the summary, and
    // named beside the re-runs over the recovery bound.
    let mut struck: Vec<(i64, &'static str)> = Vec::new();
    let mut next_task = 0u64;
    let mut create_errors = 0u64;
    let mut created_ids = std::collections::HashSet::new();
    let started = Instant::now();
    while started.elapsed() < fault_time {
        // Tasks arrive all along; an order number makes a retried batch idempotent.
        let batch: Vec<NewTask> = (next_task..next_task + 40)
            .map(|i| {
                NewTask::new("soak", json!({ "i": i }), QUEUE)
                    .timeout(TIMEOUT)
                    .delete_deadline(Duration::from_secs(3600))
                    .order_no(format!("soak-{i}"))
            })
            .collect();
        match client.create_many(batch).await {
            Ok(created) => {
                next_task += 40;
                created_ids.extend(created.iter().map(|c| c.id));
            }
            Err(err) => {
                create_errors += 1;
                if create_errors <= 3 {
                    eprintln!("{}: create failed (retried): {err}", pair.name);
                }
            }
        }
        procs.resume_due(false);
        procs.keep_up().map_err(|e| e.to_string())?;
        // The PostgreSQL restart, once, halfway through the first PostgreSQL pair.
        let restart_now = matches!(pg_restart, PgRestart::Pending | PgRestart::DryRun)
            && pair.db.starts_with("postgres")
            && started.elapsed() >= fault_time / 2;
        if restart_now && pg_restart.restart()? {
            struck.push((now_ms(), "restarted postgres"));
            continue;
        }
        let fault = match fastrand::u8(0..10) {
            0 | 1 => {
                let i = fastrand::usize(0..procs.workers.len());
                let _ = procs.workers[i].kill();
                let _ = procs.workers[i].wait();
                procs.workers[i] = procs.spawn_worker(i).map_err(|e| e.to_string())?;
                "sigkill worker"
            }
            2 => {
                let i = fastrand::usize(0..procs.sweepers.len());
                let _ = procs.sweepers[i].kill();
                let _ = procs.sweepers[i].wait();
                procs.sweepers[i] = procs.spawn("sweeper").map_err(|e| e.to_string())?;
                "sigkill sweeper"
            }
            3 if procs.stopped.is_empty() => {
                let pid = procs.workers[fastrand::usize(0..procs.workers.len())].id();
                signal("STOP", pid);
                procs
                    .stopped
                    .push((pid, Instant::now() + TIMEOUT + SWEEP + SWEEP));
                "sigstop worker past its lease"
            }
            // Counted only when it found connections (SQLite has none to kill).
            4 | 5 if kill_connections(&admin, pair, &table).await > 0 => "killed db connections",
            6 if pair.queue != "db" => {
                delete_keys(&pair.queue, &redis_prefix).await;
                "deleted redis keys"
            }
            7 if pair.private_redis && fastrand::u8(0..3) == 0 => {
                redis.restart();
                "restarted redis"
            }
            _ => "none",
        };
        if fault != "none" {
            struck.push((now_ms(), fault));
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(150..400))).await;
    }
    procs.resume_due(true);

    // Drain: every task must finish; bounded by timeout + sweeps after the last fault.
    let drain_limit = Instant::now() + Duration::from_secs(90);
    let mut left = i64::MAX;
    while Instant::now() < drain_limit {
        procs.keep_up().map_err(|e| e.to_string())?;
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE status <> 0");
        if let Ok(row) = sqlx::query(AssertSqlSafe(sql)).fetch_one(&admin).await {
            left = row.try_get::<i64, _>(0).unwrap_or(i64::MAX);
            if left == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    procs.kill_all();

    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, status, dispatch_count FROM {table}"
    )))
    .fetch_all(&admin)
    .await
    .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&ledger).unwrap_or_default();
    let mut runs: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut python_runs = 0;
    for line in text.lines() {
        let f: Vec<i64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
        if let [id, attempt, _pid, at, lang] = f[..] {
            runs.entry(id).or_default().push((attempt, at));
            python_runs += lang;
        }
    }
    let (mut lost, mut never_run, mut stale, mut duplicates) = (0, 0, 0, 0);
    // Recovery: the time between two runs of one task (the first one's outcome was
    // lost to a fault). A second fault on the same task (its re-offer deleted from
    // Redis, the sweeper killed) adds another timeout + sweep: counted as over_bound.
    let mut longest_recovery = 0i64;
    let mut over_bound = 0;
    let mut slowest: Vec<(i64, i64, i64)> = Vec::new();
    for row in &rows {
        let id: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        created_ids.remove(&id);
        let status: i64 = row.try_get(1).map_err(|e| e.to_string())?;
        let attempts: i64 = row.try_get(2).map_err(|e| e.to_string())?;
        if status != 0 {
            lost += 1;
        }
        match runs.get_mut(&id) {
            None => never_run += 1,
            Some(list) => {
                duplicates += list.len() as i64 - 1;
                // The finishing attempt is the row's last one: its run must be in the ledger.
                if status == 0 && !list.iter().any(|(a, _)| *a == attempts) {
                    stale += 1;
                }
                list.sort_by_key(|(_, at)| *at);
                for w in list.windows(2) {
                    let gap = w[1].1 - w[0].1;
                    longest_recovery = longest_recovery.max(gap);
                    if gap > (TIMEOUT + SWEEP).as_millis() as i64 {
                        over_bound += 1;
                        slowest.push((gap, id, w[0].1));
                    }
                }
            }
        }
    }
    // A created task missing from the table was lost.
    lost += created_ids.len() as i64;
    let injected = struck.len() as u64;
    // Each fault can interrupt at most one process's claims in flight (fetched batches
    // included): a generous bound of 2 × concurrency × faults.
    let bound = 2 * CONCURRENCY as i64 * injected as i64;
    // A Python worker that was started must have run tasks too.
    let python_ok = procs.python.is_none() || python_runs > 0;
    let passed = lost == 0 && never_run == 0 && stale == 0 && duplicates <= bound && left == 0 && python_ok;
    let mut kinds: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (_, kind) in &struck {
        *kinds.entry(kind).or_default() += 1;
    }
    let line = format!(
        "{}: tasks {} ({} runs by Python), faults {} ({}), duplicates {} (bound {}), longest recovery {:.1}s (bound: timeout + sweep interval = {}s; {} re-runs over it), never-run {}, stale outcomes {}, lost {}{}",
        pair.name,
        rows.len(),
        python_runs,
        injected,
        kinds.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        duplicates,
        bound,
        longest_recovery as f64 / 1000.0,
        (TIMEOUT + SWEEP).as_secs(),
        over_bound,
        never_run,
        stale,
        lost,
        if passed { "" } else { "  FAILED" },
    );
    for table in client.store().table_names() {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
            .execute(&admin)
            .await;
    }
    if pair.queue != "db" {
        delete_keys(&pair.queue, &redis_prefix).await;
    }
    client.close().await;
    admin.close().await;
    let _ = std::fs::remove_file(&ledger);
    Ok(Summary {
        line: line + &slowest_recoveries(pair.name, slowest, &struck),
        passed,
    })
}

/// The three slowest re-runs over the recovery bound, each with the faults that struck
/// between its two runs (ms after the first), one line each.
fn slowest_recoveries(pair: &str, mut slowest: Vec<(i64, i64, i64)>, struck: &[(i64, &str)]) -> String {
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    slowest
        .iter()
        .take(3)
        .map(|&(gap, id, first)| {
            let between: Vec<String> = struck
                .iter()
                .filter(|(at, _)| *at >= first && *at <= first + gap)
                .map(|(at, kind)| format!("{kind} +{:.1}s", (at - first) as f64 / 1000.0))
                .collect();
            format!(
                "\n  {pair}: task {id} ran again {:.1}s later; faults between: {}",
                gap as f64 / 1000.0,
                if between.is_empty() {
                    "none".to_string()
                } else {
                    between.join(", ")
                }
            )
        })
        .collect()
}

/// Kills the database connections that last ran a statement on the soak's table
/// (never other engineers' connections, never the coordinator's admin connection).
async fn kill_connections(admin: &sqlx::AnyPool, pair: &Pair, table: &str) -> usize {
    let pattern = format!("%{table}%");
    if pair.db.starts_with("postgres") {
        let sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                   WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE $1";
        return sqlx::query(sql)
            .bind(pattern)
            .fetch_all(admin)
            .await
            .map(|r| r.len())
            .unwrap_or(0);
    }
    if pair.db.starts_with("mysql") {
        let sql = "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
                   WHERE ID <> CONNECTION_ID() AND INFO LIKE ?";
        let ids: Vec<i64> = match sqlx::query(sql).bind(pattern).fetch_all(admin).await {
            Ok(rows) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
            Err(_) => return 0,
        };
        for id in &ids {
            let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}")))
                .execute(admin)
                .await;
        }
        return ids.len();
    }
    0
}

/// Deletes the soak's Redis keys (its prefix only; the shared Redis is never flushed).
async fn delete_keys(queue: &str, prefix: &str) {
    for node in queue.split(',') {
        let Ok(client) = redis::Client::open(node) else {
            continue;
        };
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await
        else {
            continue;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for key in keys {
            // One key at a time: a cluster node holds each key it lists.
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        }
    }
}
