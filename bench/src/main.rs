//! qtask-bench: tasks per second of qtask's hot paths on each database, beside a raw
//! sqlx baseline measured in the same run on the same server.
//!
//! ```text
//! source scripts/env.sh && cargo run --release -p qtask-bench -- [--db URL]... [--n N]
//! ```
//!
//! See bench/README.md for what each row measures and the figures of this machine.

mod cpu;
mod suite;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qtask_core::sqlx::{self, AnyPool, AssertSqlSafe, Executor};
use qtask_core::store::{redact, Dialect};
use qtask_core::{Client, Config, Message, NewTask, Worker};
use serde_json::json;

const USAGE: &str = "\
qtask-bench: tasks per second of create, create_many and create->pop->processing->finish,
with a raw sqlx INSERT+UPDATE+DELETE baseline on the same server in the same run.

usage: qtask-bench [--db URL]... [--n N] [--parallel P] [--drain D] [--drain-concurrency C]
                   [--drain-only] [--redis URL | --no-redis]

  --db URL       a database to measure; repeat for several (default: a SQLite file in
                 $TMPDIR, $QTASK_TEST_PG_URL, $QTASK_TEST_MYSQL_URL, with the defaults of
                 scripts/env.sh); a server that cannot be reached is skipped, loudly
  --n N          tasks per measurement (default 500)
  --parallel P   concurrent loops in the parallel rows (default 4)
  --drain D      tasks in the large drain row (default 20000; 0 skips it)
  --drain-concurrency C
                 Worker concurrency of the large drain row (default 32)
  --drain-only   measure only the large drain row and its ceiling (for profiling)
  --redis URL    also measure every database with this Redis as the queue
                 (default $QTASK_TEST_REDIS_URL when set)
  --no-redis     measure only the db queue";

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";
const BATCH: usize = 100;
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
const POP_WAIT: Duration = Duration::from_secs(5);

struct Args {
    dbs: Vec<String>,
    n: u64,
    parallel: usize,
    drain: u64,
    drain_concurrency: usize,
    drain_only: bool,
    redis: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        dbs: Vec::new(),
        n: 500,
        parallel: 4,
        drain: 20_000,
        drain_concurrency: 32,
        drain_only: false,
        redis: env("QTASK_TEST_REDIS_URL"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--db" => args.dbs.push(value()?),
            "--n" => args.n = value()?.parse().map_err(|_| "--n must be a number")?,
            "--parallel" => args.parallel = value()?.parse().map_err(|_| "--parallel must be a number")?,
            "--drain" => args.drain = value()?.parse().map_err(|_| "--drain must be a number")?,
            "--drain-concurrency" => {
                args.drain_concurrency = value()?
                    .parse()
                    .map_err(|_| "--drain-concurrency must be a number")?
            }
            "--drain-only" => args.drain_only = true,
            "--redis" => args.redis = Some(value()?),
            "--no-redis" => args.redis = None,
            _ => return Err(format!("unknown argument {arg:?} (try --help)")),
        }
    }
    if args.n == 0 || args.parallel == 0 {
        return Err("--n and --parallel must be at least 1".into());
    }
    if args.dbs.is_empty() {
        let sqlite = std::env::temp_dir().join(format!("qtask-bench-{}.db", std::process::id()));
        args.dbs = vec![
            format!("sqlite://{}", sqlite.display()),
            env("QTASK_TEST_PG_URL").unwrap_or_else(|| PG_DEFAULT.into()),
            env("QTASK_TEST_MYSQL_URL").unwrap_or_else(|| MYSQL_DEFAULT.into()),
        ];
    }
    Ok(Some(args))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() -> ExitCode {
    // bench/run.py's entry: `--suite SYSTEM --params JSON`, JSON lines out.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--suite") {
        let (Some(system), Some(params)) = (argv.get(2), argv.get(4)) else {
            eprintln!("qtask-bench: usage: --suite SYSTEM --params JSON");
            return ExitCode::from(2);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return match runtime.block_on(suite::run(system, params)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("qtask-bench: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("qtask-bench: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("qtask-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One printed figure.
struct Row {
    db: &'static str,
    queue: &'static str,
    what: String,
    tasks: u64,
    secs: f64,
    /// The raw baseline's rate for the same concurrency, for the ratio column.
    baseline: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.tasks as f64 / self.secs.max(1e-9)
    }

    fn ratio(&self) -> String {
        match self.baseline {
            Some(base) => format!("{:.2}", self.rate() / base),
            None => "1.00".into(),
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let run_id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 100_000)
            .unwrap_or(0)
    );
    println!(
        "qtask-bench: n = {} tasks per row, parallel rows run {} loops at once; run {run_id}",
        args.n, args.parallel
    );
    println!("load average at the start: {}", load_average());
    let mut queues: Vec<Option<String>> = vec![None];
    match &args.redis {
        Some(url) => queues.push(Some(url.clone())),
        None => println!("(no Redis rows: set QTASK_TEST_REDIS_URL or pass --redis URL)"),
    }
    let mut rows = Vec::new();
    let mut index = 0;
    for queue in &queues {
        for db in &args.dbs {
            index += 1;
            let prefix = format!("qb{run_id}_{index}_");
            match Target::open(db, queue.as_deref(), &prefix).await {
                Ok(target) => {
                    let result = target.measure(&args, &mut rows).await;
                    target.clean_up().await;
                    result?;
                }
                Err(err) => println!(
                    "!!! SKIPPED {} with queue {}: {err}",
                    redact(db),
                    queue.as_deref().map(redact).unwrap_or_else(|| "db".into())
                ),
            }
        }
    }
    for db in &args.dbs {
        remove_sqlite_file(db);
    }
    println!("load average at the end: {}", load_average());
    println!();
    println!("| database | queue | measurement | tasks | tasks/s | vs raw |");
    println!("|---|---|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} |",
            row.db,
            row.queue,
            row.what,
            row.tasks,
            row.rate(),
            row.ratio()
        );
    }
    Ok(())
}

/// Other work on the machine skews every figure; the run says how much there was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The default SQLite file of this run, with its WAL files.
fn remove_sqlite_file(db: &str) {
    let default = std::env::temp_dir().join(format!("qtask-bench-{}.db", std::process::id()));
    if db == format!("sqlite://{}", default.display()) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", default.display()));
        }
    }
}

/// One database with one queue, on tables of this run's own.
struct Target {
    client: Client,
    db_label: &'static str,
    queue_label: &'static str,
    redis: Option<String>,
    raw_table: String,
}

const Q_CREATE: &str = "bench:create";
const Q_MANY: &str = "bench:many";
const Q_CYCLE: &str = "bench:cycle";
const Q_PARALLEL: &str = "bench:parallel";
const Q_WORKER: &str = "bench:worker";

impl Target {
    async fn open(db: &str, redis: Option<&str>, prefix: &str) -> Result<Target, String> {
        let config = Config {
            db: db.to_string(),
            queue: redis.unwrap_or("db").to_string(),
            table_prefix: prefix.to_string(),
            redis_prefix: format!("qtask-bench-{prefix}"),
            // Measure the calls themselves: no sweeper competing for the table.
            sweeper: false,
            ..Config::default()
        };
        let client = tokio::time::timeout(OPEN_TIMEOUT, Client::open(config))
            .await
            .map_err(|_| "not reachable within 5 s".to_string())?
            .map_err(|e| format!("not reachable: {e}"))?;
        let target = Target {
            db_label: match client.store().dialect() {
                Dialect::Sqlite => "SQLite (file)",
                Dialect::Postgres => "PostgreSQL",
                Dialect::MySql => "MariaDB",
            },
            queue_label: if redis.is_some() { "redis" } else { "db" },
            redis: redis.map(String::from),
            raw_table: format!("{prefix}raw"),
            client,
        };
        let installed = async {
            target
                .client
                .install()
                .await
                .map_err(|e| format!("install: {e}"))?;
            target.create_raw_table().await
        };
        if let Err(err) = installed.await {
            target.clean_up().await;
            return Err(err);
        }
        Ok(target)
    }

    fn pool(&self) -> &AnyPool {
        self.client.store().pool()
    }

    fn dialect(&self) -> Dialect {
        self.client.store().dialect()
    }

    /// The baseline's table: what a hand-written queue would need at least.
    async fn create_raw_table(&self) -> Result<(), String> {
        let t = &self.raw_table;
        let sql = match self.dialect() {
            Dialect::Sqlite => format!(
                "CREATE TABLE {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, status BIGINT NOT NULL)"
            ),
            Dialect::Postgres => {
                format!("CREATE TABLE {t} (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, status BIGINT NOT NULL)")
            }
            Dialect::MySql => format!(
                "CREATE TABLE {t} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, payload LONGTEXT NOT NULL, \
                 status BIGINT NOT NULL) ENGINE=InnoDB"
            ),
        };
        sqlx::query(AssertSqlSafe(sql))
            .execute(self.pool())
            .await
            .map_err(|e| format!("create {t}: {e}"))?;
        Ok(())
    }

    /// Drops this run's tables and Redis lists; reports but never fails.
    async fn clean_up(&self) {
        if let Err(err) = self.client.store().drop_tables().await {
            eprintln!("qtask-bench: could not drop the task tables: {err}");
        }
        let sql = format!("DROP TABLE IF EXISTS {}", self.raw_table);
        if let Err(err) = sqlx::query(AssertSqlSafe(sql)).execute(self.pool()).await {
            eprintln!("qtask-bench: could not drop {}: {err}", self.raw_table);
        }
        if let Some(url) = &self.redis {
            let config = self.client.config();
            let keys: Vec<String> = [Q_CREATE, Q_MANY, Q_CYCLE, Q_PARALLEL, Q_WORKER]
                .iter()
                .map(|q| qtask_core::queue::offers_key(&config.redis_prefix, &config.namespace, q))
                .collect();
            let deleted = async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                for key in &keys {
                    redis::cmd("DEL").arg(key).exec_async(&mut conn).await?;
                }
                Ok::<_, redis::RedisError>(())
            };
            if let Err(err) = deleted.await {
                eprintln!("qtask-bench: could not delete the Redis lists: {err}");
            }
        }
        self.client.close().await;
    }

    fn row(&self, what: String, tasks: u64, elapsed: Duration, baseline: Option<f64>) -> Row {
        let row = Row {
            db: self.db_label,
            queue: self.queue_label,
            what,
            tasks,
            secs: elapsed.as_secs_f64(),
            baseline,
        };
        println!(
            "{:<14} {:<5} {:<48} {:>6} tasks {:>7.2} s {:>8.0}/s  x{} raw",
            row.db,
            row.queue,
            row.what,
            row.tasks,
            row.secs,
            row.rate(),
            row.ratio()
        );
        row
    }

    async fn measure(&self, args: &Args, rows: &mut Vec<Row>) -> Result<(), String> {
        if !args.drain_only {
            self.measure_small(args, rows).await?;
        }
        if args.drain > 0 {
            // The ceiling: the SQL one task needs, 500 tasks per transaction, 3 statements.
            let ceiling = self.raw_batched(args.drain, 500).await?;
            let drain = self.worker_drain(args.drain, args.drain_concurrency).await?;
            let ceiling = ceiling.min(self.raw_batched(args.drain, 500).await?);
            let base = Some(args.drain as f64 / ceiling.as_secs_f64());
            rows.push(self.row(
                "ceiling: INSERT+UPDATE+DELETE, 500 tasks per transaction".into(),
                args.drain,
                ceiling,
                None,
            ));
            rows.push(self.row(
                format!(
                    "Worker(concurrency {}) drains queued tasks",
                    args.drain_concurrency
                ),
                args.drain,
                drain,
                base,
            ));
        }
        Ok(())
    }

    /// The rows of `n` tasks: creates, full lives, the small drain.
    async fn measure_small(&self, args: &Args, rows: &mut Vec<Row>) -> Result<(), String> {
        let n = args.n;
        let p = args.parallel;
        // The baseline of each group runs before and after qtask's rows and the faster
        // run counts: the floor, not a figure lowered by a noisy neighbour.
        let before = self.raw(n, 1).await?;
        let one_by_one = timed(self.create_one_by_one(n)).await?;
        let eight = timed(self.create_from_producers(n, 8)).await?;
        let many = timed(self.create_many(n)).await?;
        let cycle = timed(cycles(self.client.clone(), Q_CYCLE, n)).await?;
        let raw = before.min(self.raw(n, 1).await?);
        let base = Some(n as f64 / raw.as_secs_f64());
        rows.push(self.row(
            "raw INSERT+UPDATE+DELETE (sqlx), 1 at a time".into(),
            n,
            raw,
            None,
        ));
        rows.push(self.row("create, one by one".into(), n, one_by_one, base));
        rows.push(self.row("create, one by one from 8 producers".into(), n, eight, base));
        rows.push(self.row(format!("create_many, batches of {BATCH}"), n, many, base));
        rows.push(self.row("create→pop→processing→finish, 1 at a time".into(), n, cycle, base));

        let before = self.raw(n, p).await?;
        let start = Instant::now();
        let mut loops = tokio::task::JoinSet::new();
        for share in split(n, p) {
            loops.spawn(cycles(self.client.clone(), Q_PARALLEL, share));
        }
        while let Some(joined) = loops.join_next().await {
            joined.map_err(|e| e.to_string())??;
        }
        let parallel = start.elapsed();
        let drain = self.worker_drain(n, p).await?;
        let raw = before.min(self.raw(n, p).await?);
        let base = Some(n as f64 / raw.as_secs_f64());
        rows.push(self.row(
            format!("raw INSERT+UPDATE+DELETE (sqlx), {p} in parallel"),
            n,
            raw,
            None,
        ));
        rows.push(self.row(
            format!("create→pop→processing→finish, {p} in parallel"),
            n,
            parallel,
            base,
        ));
        rows.push(self.row(
            format!("Worker(concurrency {p}) drains n queued tasks"),
            n,
            drain,
            base,
        ));
        Ok(())
    }

    /// The ceiling of the same database: each task's INSERT, UPDATE and DELETE, batched
    /// `batch` tasks per transaction with one multi-row statement each.
    async fn raw_batched(&self, n: u64, batch: u64) -> Result<Duration, String> {
        let t = &self.raw_table;
        let d = self.dialect();
        let start = Instant::now();
        let mut left = n;
        while left > 0 {
            let size = left.min(batch);
            left -= size;
            let values: Vec<String> = (0..size).map(|i| format!("('{{\"n\": {i}}}', 20)")).collect();
            let mut tx = self.pool().begin().await.map_err(|e| e.to_string())?;
            let insert = format!("INSERT INTO {t} (payload, status) VALUES {}", values.join(","));
            let ids: Vec<i64> = if d == Dialect::MySql {
                let done = (&mut *tx)
                    .execute(AssertSqlSafe(insert))
                    .await
                    .map_err(|e| e.to_string())?;
                // InnoDB gives one multi-row insert consecutive ids (lock mode 1 and 2 alike
                // for a single statement of known size).
                let first = done.last_insert_id().unwrap_or_default();
                (first..first + size as i64).collect()
            } else {
                use sqlx::Row;
                let rows = (&mut *tx)
                    .fetch_all(AssertSqlSafe(format!("{insert} RETURNING id")))
                    .await
                    .map_err(|e| e.to_string())?;
                rows.iter().map(|r| r.get::<i64, _>(0)).collect()
            };
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            (&mut *tx)
                .execute(AssertSqlSafe(format!(
                    "UPDATE {t} SET status = 30 WHERE id IN ({list})"
                )))
                .await
                .map_err(|e| e.to_string())?;
            (&mut *tx)
                .execute(AssertSqlSafe(format!("DELETE FROM {t} WHERE id IN ({list})")))
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
        }
        Ok(start.elapsed())
    }

    /// The floor: a task's smallest life in the same database through the same driver,
    /// one statement each (INSERT, UPDATE, DELETE), `loops` loops at once.
    async fn raw(&self, n: u64, loops: usize) -> Result<Duration, String> {
        let t = &self.raw_table;
        let d = self.dialect();
        let insert = match d {
            Dialect::MySql => format!("INSERT INTO {t} (payload, status) VALUES (?, 20)"),
            _ => format!("INSERT INTO {t} (payload, status) VALUES (?, 20) RETURNING id"),
        };
        let sql: [Arc<str>; 3] = [
            insert,
            format!("UPDATE {t} SET status = 30 WHERE id = ?"),
            format!("DELETE FROM {t} WHERE id = ?"),
        ]
        .map(|s| Arc::from(d.placeholders(s)));
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for share in split(n, loops) {
            let pool = self.pool().clone();
            let sql = sql.clone();
            set.spawn(async move {
                for i in 0..share {
                    let payload = json!({ "n": i }).to_string();
                    let insert = sqlx::query(AssertSqlSafe(sql[0].clone())).bind(payload);
                    let id: i64 = if d == Dialect::MySql {
                        insert.execute(&pool).await?.last_insert_id().unwrap_or_default()
                    } else {
                        use sqlx::Row;
                        insert.fetch_one(&pool).await?.try_get(0)?
                    };
                    sqlx::query(AssertSqlSafe(sql[1].clone()))
                        .bind(id)
                        .execute(&pool)
                        .await?;
                    sqlx::query(AssertSqlSafe(sql[2].clone()))
                        .bind(id)
                        .execute(&pool)
                        .await?;
                }
                Ok::<_, sqlx::Error>(())
            });
        }
        while let Some(joined) = set.join_next().await {
            joined
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("raw baseline: {e}"))?;
        }
        Ok(start.elapsed())
    }

    /// `producers` loops at once, each creating its share one by one.
    async fn create_from_producers(&self, n: u64, producers: usize) -> Result<(), String> {
        let mut set = tokio::task::JoinSet::new();
        for share in split(n, producers) {
            let client = self.client.clone();
            set.spawn(async move {
                for i in 0..share {
                    client
                        .create(task(Q_CREATE, i))
                        .await
                        .map_err(|e| format!("create: {e}"))?;
                }
                Ok::<_, String>(())
            });
        }
        while let Some(joined) = set.join_next().await {
            joined.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    async fn create_one_by_one(&self, n: u64) -> Result<(), String> {
        for i in 0..n {
            self.client
                .create(task(Q_CREATE, i))
                .await
                .map_err(|e| format!("create: {e}"))?;
        }
        Ok(())
    }

    async fn create_many(&self, n: u64) -> Result<(), String> {
        let all: Vec<u64> = (0..n).collect();
        for chunk in all.chunks(BATCH) {
            let tasks = chunk.iter().map(|&i| task(Q_MANY, i)).collect();
            self.client
                .create_many(tasks)
                .await
                .map_err(|e| format!("create_many: {e}"))?;
        }
        Ok(())
    }

    /// Queues n tasks (not timed), then times a `Worker` with a no-op handler until
    /// the last of them is finished in the table.
    async fn worker_drain(&self, n: u64, concurrency: usize) -> Result<Duration, String> {
        let all: Vec<u64> = (0..n).collect();
        for chunk in all.chunks(BATCH) {
            let tasks = chunk.iter().map(|&i| task(Q_WORKER, i)).collect();
            self.client
                .create_many(tasks)
                .await
                .map_err(|e| format!("create_many: {e}"))?;
        }
        let handled = Arc::new(AtomicU64::new(0));
        let counter = handled.clone();
        let handler = move |_: Message| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(self.client.clone(), Q_WORKER).concurrency(concurrency);
        cpu::perf_control("enable");
        let cpu_before = cpu::CpuUse::now();
        let start = Instant::now();
        let running = tokio::spawn(worker.run(handler, async {
            let _ = stopped.await;
        }));
        let sql = self.client.store().dialect().placeholders(format!(
            "SELECT COUNT(*) FROM {} WHERE queue = ? AND status = 0",
            self.client.config().task_table()
        ));
        let sql: Arc<str> = Arc::from(sql);
        let limit = Duration::from_secs(120);
        let elapsed = loop {
            // The handler count is free to read; only near the end ask the table.
            if handled.load(Ordering::Relaxed) >= n {
                let finished: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                    .bind(Q_WORKER)
                    .fetch_one(self.pool())
                    .await
                    .map_err(|e| format!("count: {e}"))?;
                if finished as u64 >= n {
                    break start.elapsed();
                }
            }
            if start.elapsed() > limit {
                let _ = stop.send(());
                return Err(format!("worker drain: not done after {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let cpu = cpu::CpuUse::now().per_task_since(&cpu_before, n);
        cpu::perf_control("disable");
        let _ = stop.send(());
        running
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("worker: {e}"))?;
        println!(
            "{:<14} {:<5} drain at concurrency {concurrency}: CPU per task: {cpu}",
            self.db_label, self.queue_label
        );
        Ok(elapsed)
    }
}

fn task(queue: &str, i: u64) -> NewTask {
    NewTask::new("bench task", json!({ "n": i }), queue).timeout(Duration::from_secs(60))
}

/// `n` full lives of a task, one after the other: create, pop, processing, finish.
async fn cycles(client: Client, queue: &'static str, n: u64) -> Result<(), String> {
    for i in 0..n {
        client
            .create(task(queue, i))
            .await
            .map_err(|e| format!("create: {e}"))?;
        let message = client
            .pop(queue, POP_WAIT)
            .await
            .map_err(|e| format!("pop: {e}"))?
            .ok_or_else(|| format!("pop: nothing on {queue} after {POP_WAIT:?}"))?;
        if !client
            .processing(message.task_id)
            .await
            .map_err(|e| format!("processing: {e}"))?
        {
            return Err(format!("processing refused task {}", message.task_id));
        }
        client
            .finish(message.task_id)
            .await
            .map_err(|e| format!("finish: {e}"))?;
    }
    Ok(())
}

async fn timed<F: std::future::Future<Output = Result<(), String>>>(work: F) -> Result<Duration, String> {
    let start = Instant::now();
    work.await?;
    Ok(start.elapsed())
}

/// `n` split into `parts` shares that add up to `n`.
fn split(n: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| n / parts + u64::from(i < n % parts))
        .filter(|&share| share > 0)
        .collect()
}
