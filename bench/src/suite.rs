//! `qtask-bench --suite SYSTEM --params JSON`: one system's rows for bench/run.py, printed
//! as JSON lines (`{"row": …, "value": …}`, `{"note": …}`), so that the orchestrator can
//! show progress and keep the rows already measured if the system later hangs.
//!
//! Systems: `qtask` (the Rust client on `db` + `queue`), `ceiling-sql` (the bare-SQL
//! floor of `db`), `ceiling-redis` (pipelined LPUSH + BRPOP on `queue`), `sweeper`
//! (the sweeper's dispatch of due rows among many). See bench/README.md for the rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qtask_core::sqlx::{self, AnyPool, AssertSqlSafe, Column, Row};
use qtask_core::store::Dialect;
use qtask_core::{Client, Config, Message, NewTask, Worker};
use serde_json::{json, Value};

/// The sizes of one run; run.py sends them as one JSON object.
struct Params {
    db: String,
    queue: String,
    prefix: String,
    n_enqueue: u64,
    n_drain: u64,
    concurrency: Vec<usize>,
    batch: usize,
    rate: f64,
    latency_secs: f64,
    delayed: u64,
    sweep_rows: u64,
    sweep_due: u64,
    /// Only the drain rows (optional `"drain_only": true`): for comparing workers
    /// back to back.
    drain_only: bool,
    /// Only the two enqueue-one-by-one rows, each with its CPU split and, on
    /// PostgreSQL, its commits and WAL flushes (optional `"enqueue_only": true`): for
    /// profiling group commit.
    enqueue_only: bool,
}

impl Params {
    fn parse(text: &str) -> Result<Params, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("--params: {e}"))?;
        let s = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .ok_or(format!("--params: {k} missing"))
        };
        let n = |k: &str| v[k].as_u64().ok_or(format!("--params: {k} missing"));
        Ok(Params {
            db: s("db")?,
            queue: s("queue")?,
            prefix: s("prefix")?,
            n_enqueue: n("n_enqueue")?,
            n_drain: n("n_drain")?,
            concurrency: v["concurrency"]
                .as_array()
                .ok_or("--params: concurrency missing")?
                .iter()
                .filter_map(|c| c.as_u64().map(|c| c as usize))
                .collect(),
            batch: n("batch")? as usize,
            rate: v["rate"].as_f64().ok_or("--params: rate missing")?,
            latency_secs: v["latency_secs"]
                .as_f64()
                .ok_or("--params: latency_secs missing")?,
            delayed: n("delayed")?,
            sweep_rows: n("sweep_rows")?,
            sweep_due: n("sweep_due")?,
            drain_only: v["drain_only"].as_bool().unwrap_or(false),
            enqueue_only: v["enqueue_only"].as_bool().unwrap_or(false),
        })
    }
}

fn emit(row: &str, value: f64) {
    println!("{}", json!({ "row": row, "value": value }));
}

fn note(text: String) {
    println!("{}", json!({ "note": text }));
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// `VmRSS` or `VmHWM` (peak) of this process, in MB.
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

pub async fn run(system: &str, params: &str) -> Result<(), String> {
    let p = Params::parse(params)?;
    note(format!("qtask-core {}", env!("CARGO_PKG_VERSION")));
    match system {
        "qtask" => qtask_rows(&p).await,
        "ceiling-sql" => ceiling_sql(&p).await,
        "ceiling-redis" => ceiling_redis(&p).await,
        "sweeper" => sweeper(&p).await,
        other => Err(format!("unknown suite system {other:?}")),
    }
}

async fn open(p: &Params, sweeper: bool, pool: u32) -> Result<Client, String> {
    let config = Config {
        db: p.db.clone(),
        queue: p.queue.clone(),
        table_prefix: p.prefix.clone(),
        redis_prefix: format!("qtask-bench-{}", p.prefix),
        sweeper,
        max_connections: pool,
        ..Config::default()
    };
    let client = Client::open(config).await.map_err(|e| format!("open: {e}"))?;
    client.install().await.map_err(|e| format!("install: {e}"))?;
    Ok(client)
}

async fn drop_table(pool: &AnyPool, table: &str) {
    if let Err(err) = sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
        .execute(pool)
        .await
    {
        eprintln!("qtask-bench: could not drop {table}: {err}");
    }
}

fn task(queue: &str, input: Value) -> NewTask {
    NewTask::new("bench", input, queue).timeout(Duration::from_secs(300))
}

/// What the handler of a measured worker records: when each call started, and the
/// lag of each call behind the time in its input (`t`: created, `due`: due).
#[derive(Default)]
struct Recorder {
    calls: AtomicU64,
    first: Mutex<Option<Instant>>,
    nth: Mutex<Option<Instant>>,
    lags: Mutex<Vec<f64>>,
    target: AtomicU64,
}

impl Recorder {
    fn reset(&self, target: u64) {
        self.calls.store(0, Ordering::SeqCst);
        *self.first.lock().unwrap() = None;
        *self.nth.lock().unwrap() = None;
        self.lags.lock().unwrap().clear();
        self.target.store(target, Ordering::SeqCst);
    }

    fn hit(&self, message: &Message) {
        let now = Instant::now();
        let lag = ["t", "due"]
            .iter()
            .find_map(|k| message.input.get(*k).and_then(Value::as_f64))
            .map(|t| now_ms() - t);
        self.first.lock().unwrap().get_or_insert(now);
        if let Some(lag) = lag {
            self.lags.lock().unwrap().push(lag);
        }
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.target.load(Ordering::SeqCst) {
            *self.nth.lock().unwrap() = Some(now);
        }
    }

    async fn wait(&self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while self.nth.lock().unwrap().is_none() {
            if start.elapsed() > limit {
                return Err(format!(
                    "{} of {} handled after {limit:?}",
                    self.calls.load(Ordering::SeqCst),
                    self.target.load(Ordering::SeqCst)
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// First handler start to the n-th handler call.
    fn span(&self) -> Duration {
        let first = self.first.lock().unwrap().expect("a call");
        let nth = self.nth.lock().unwrap().expect("the n-th call");
        nth.saturating_duration_since(first)
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut lags = self.lags.lock().unwrap().clone();
        lags.sort_by(|a, b| a.total_cmp(b));
        (percentile(&lags, 0.5), percentile(&lags, 0.99))
    }
}

/// A worker of `concurrency` slots on `queue`, running until the returned sender fires.
fn start_worker(
    client: &Client,
    queue: &str,
    concurrency: usize,
    recorder: Arc<Recorder>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<qtask_core::Result<qtask_core::WorkerReport>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(client.clone(), queue).concurrency(concurrency);
    let handler = move |message: Message| {
        recorder.hit(&message);
        async { Ok(()) }
    };
    let running = tokio::spawn(worker.run(handler, async {
        let _ = stopped.await;
    }));
    (stop, running)
}

async fn stop_worker(
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<qtask_core::Result<qtask_core::WorkerReport>>,
) -> Result<(), String> {
    let _ = stop.send(());
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("worker: {e}"))?;
    Ok(())
}

async fn create_batches(client: &Client, queue: &str, n: u64, batch: usize) -> Result<(), String> {
    let all: Vec<u64> = (0..n).collect();
    for chunk in all.chunks(batch) {
        let tasks = chunk.iter().map(|&i| task(queue, json!({ "i": i }))).collect();
        client
            .create_many(tasks)
            .await
            .map_err(|e| format!("create_many: {e}"))?;
    }
    Ok(())
}

async fn qtask_rows(p: &Params) -> Result<(), String> {
    let max_c = p.concurrency.iter().copied().max().unwrap_or(1) as u32;
    let client = open(p, !p.enqueue_only, (max_c + 8).max(10)).await?;
    note(format!(
        "table {}task, pool of {} connections, sweeper every 1 s",
        p.prefix,
        (max_c + 8).max(10)
    ));
    let result = qtask_measure(&client, p).await;
    for table in client.store().table_names() {
        drop_table(client.store().pool(), &table).await;
    }
    client.close().await;
    result
}

async fn qtask_measure(client: &Client, p: &Params) -> Result<(), String> {
    if p.enqueue_only {
        return enqueue_profile(client, p).await;
    }
    let recorder = Arc::new(Recorder::default());
    if !p.drain_only {
        qtask_enqueue_rows(client, p, &recorder).await?;
    }
    for &c in &p.concurrency {
        let queue = format!("drain{c}");
        create_batches(client, &queue, p.n_drain, p.batch).await?;
        recorder.reset(p.n_drain);
        crate::cpu::perf_control("enable");
        let cpu = crate::cpu::own_cpu_seconds();
        let (stop, running) = start_worker(client, &queue, c, recorder.clone());
        let waited = recorder.wait(Duration::from_secs(600)).await;
        let cpu = crate::cpu::own_cpu_seconds() - cpu;
        crate::cpu::perf_control("disable");
        stop_worker(stop, running).await?;
        waited?;
        emit(
            &format!("drain_c{c}"),
            p.n_drain as f64 / recorder.span().as_secs_f64(),
        );
        if p.drain_only {
            emit(&format!("drain_c{c}_cpu_us"), cpu * 1e6 / p.n_drain as f64);
        }
    }
    emit("rss_busy", rss_mb("VmHWM:"));
    if !p.drain_only {
        qtask_latency_rows(client, p, &recorder).await?;
    }
    Ok(())
}

/// The idle RSS and the enqueue rows.
async fn qtask_enqueue_rows(client: &Client, p: &Params, recorder: &Arc<Recorder>) -> Result<(), String> {
    // Idle: a worker waiting on an empty queue, before anything else grew the heap.
    let (stop, running) = start_worker(client, "idle", 8, recorder.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    emit("rss_idle", rss_mb("VmRSS:"));
    stop_worker(stop, running).await?;

    let start = Instant::now();
    for i in 0..p.n_enqueue {
        client
            .create(task("enq1", json!({ "i": i })))
            .await
            .map_err(|e| format!("create: {e}"))?;
    }
    emit("enqueue_1", p.n_enqueue as f64 / start.elapsed().as_secs_f64());

    let start = Instant::now();
    let n = create_from_producers(client, "enq8", p.n_enqueue, 8).await?;
    emit("enqueue_8", n as f64 / start.elapsed().as_secs_f64());

    let start = Instant::now();
    create_batches(client, "enqb", p.n_enqueue, p.batch).await?;
    emit(
        "enqueue_batch",
        p.n_enqueue as f64 / start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// `producers` loops at once, each creating its share of `n` one by one on `queue`;
/// returns how many were created (`n` rounded down to a multiple of `producers`).
async fn create_from_producers(client: &Client, queue: &str, n: u64, producers: u64) -> Result<u64, String> {
    let share = n / producers;
    let mut running = tokio::task::JoinSet::new();
    for k in 0..producers {
        let (client, queue) = (client.clone(), queue.to_string());
        running.spawn(async move {
            for i in 0..share {
                client.create(task(&queue, json!({ "i": i, "k": k }))).await?;
            }
            Ok::<_, qtask_core::Error>(())
        });
    }
    while let Some(joined) = running.join_next().await {
        joined
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("create: {e}"))?;
    }
    Ok(share * producers)
}

/// `"enqueue_only": true`: `enqueue_1` and `enqueue_8` alone, each followed by the CPU
/// per task of the driver and of each server process and, on PostgreSQL, the tasks per
/// commit and per WAL flush. Those counters are the whole server's (other clients count
/// too), and backends report them up to 10 s late, hence the wait before reading them.
async fn enqueue_profile(client: &Client, p: &Params) -> Result<(), String> {
    let postgres = client.store().dialect() == Dialect::Postgres;
    for producers in [1u64, 8] {
        let n = p.n_enqueue / producers * producers;
        let counters = if postgres {
            Some(pg_counters(client).await?)
        } else {
            None
        };
        let cpu = crate::cpu::CpuUse::now();
        crate::cpu::perf_control("enable");
        let start = Instant::now();
        create_from_producers(client, "enqp", n, producers).await?;
        let elapsed = start.elapsed();
        crate::cpu::perf_control("disable");
        let cpu = crate::cpu::CpuUse::now().per_task_since(&cpu, n);
        emit(&format!("enqueue_{producers}"), n as f64 / elapsed.as_secs_f64());
        note(format!("enqueue_{producers}: {cpu}"));
        if let Some((commits, syncs)) = counters {
            tokio::time::sleep(Duration::from_secs(11)).await;
            let (commits_after, syncs_after) = pg_counters(client).await?;
            let per = |count: i64| n as f64 / count.max(1) as f64;
            emit(
                &format!("enqueue_{producers}_per_commit"),
                per(commits_after - commits),
            );
            emit(
                &format!("enqueue_{producers}_per_wal_sync"),
                per(syncs_after - syncs),
            );
        }
    }
    Ok(())
}

/// PostgreSQL's committed transactions in this database and WAL flushes, server-wide.
async fn pg_counters(client: &Client) -> Result<(i64, i64), String> {
    let row = sqlx::query(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
         (SELECT wal_sync FROM pg_stat_wal)",
    )
    .fetch_one(client.store().pool())
    .await
    .map_err(|e| format!("counters: {e}"))?;
    Ok((
        row.try_get(0).map_err(|e| e.to_string())?,
        row.try_get(1).map_err(|e| e.to_string())?,
    ))
}

/// The latency and delayed-lateness rows.
async fn qtask_latency_rows(client: &Client, p: &Params, recorder: &Arc<Recorder>) -> Result<(), String> {
    // Latency: 8 producers sharing a steady rate (one alone cannot offer 1,000/s to
    // every system), a worker of 8 slots.
    let n = (p.rate * p.latency_secs) as u64;
    recorder.reset(n);
    let (stop, running) = start_worker(client, "latency", 8, recorder.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for k in 0..8 {
        let (client, rate) = (client.clone(), p.rate);
        producers.spawn(async move {
            for i in (k..n).step_by(8) {
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                client.create(task("latency", json!({ "t": now_ms() }))).await?;
            }
            Ok::<_, qtask_core::Error>(())
        });
    }
    while let Some(joined) = producers.join_next().await {
        joined
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("create: {e}"))?;
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    let waited = recorder.wait(Duration::from_secs(120)).await;
    stop_worker(stop, running).await?;
    waited?;
    let (p50, p99) = recorder.percentiles();
    emit("latency_p50", p50);
    emit("latency_p99", p99);
    note(format!("latency: {n} tasks offered at {achieved:.0}/s"));

    // Delayed: due 1 or 2 s after creation; lateness is handler start minus due time.
    recorder.reset(p.delayed);
    let (stop, running) = start_worker(client, "delayed", 8, recorder.clone());
    for i in 0..p.delayed {
        let delay = Duration::from_secs(1 + i % 2);
        let due = now_ms() + delay.as_secs_f64() * 1000.0;
        client
            .delay(task("delayed", json!({ "due": due })), delay)
            .await
            .map_err(|e| format!("delay: {e}"))?;
    }
    let waited = recorder.wait(Duration::from_secs(60)).await;
    stop_worker(stop, running).await?;
    waited?;
    let (p50, p99) = recorder.percentiles();
    emit("delayed_p50", p50);
    emit("delayed_p99", p99);
    Ok(())
}

/// The bare-SQL ceiling: per task an INSERT, an UPDATE and a DELETE, as multi-row
/// statements of `batch` tasks, one transaction per batch, `c` loops at once.
async fn ceiling_sql(p: &Params) -> Result<(), String> {
    let max_c = p.concurrency.iter().copied().max().unwrap_or(1) as u32;
    let client = Client::open(Config {
        db: p.db.clone(),
        table_prefix: p.prefix.clone(),
        sweeper: false,
        max_connections: max_c + 2,
        ..Config::default()
    })
    .await
    .map_err(|e| format!("open: {e}"))?;
    let pool = client.store().pool().clone();
    let dialect = client.store().dialect();
    let table = format!("{}ceiling", p.prefix);
    let result = async {
        let create = match dialect {
            Dialect::Sqlite => format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, batch BIGINT NOT NULL, payload TEXT NOT NULL, status BIGINT NOT NULL)"
            ),
            Dialect::Postgres => format!(
                "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, batch BIGINT NOT NULL, payload TEXT NOT NULL, status BIGINT NOT NULL)"
            ),
            Dialect::MySql => format!(
                "CREATE TABLE {table} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, batch BIGINT NOT NULL, payload LONGTEXT NOT NULL, status BIGINT NOT NULL) ENGINE=InnoDB"
            ),
        };
        for sql in [create, format!("CREATE INDEX {table}_batch ON {table} (batch)")] {
            sqlx::query(AssertSqlSafe(sql)).execute(&pool).await.map_err(|e| e.to_string())?;
        }
        note(format!("table {table}: id, batch (indexed), payload, status; {} tasks per transaction", p.batch));
        for &c in &p.concurrency {
            let batches = (p.n_drain as usize).div_ceil(p.batch);
            let next = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut loops = tokio::task::JoinSet::new();
            for _ in 0..c {
                let (pool, table, next, size) = (pool.clone(), table.clone(), next.clone(), p.batch);
                loops.spawn(async move {
                    loop {
                        let b = next.fetch_add(1, Ordering::SeqCst);
                        if b as usize >= batches {
                            return Ok::<_, sqlx::Error>(());
                        }
                        // InnoDB can pick one of two concurrent batches as a deadlock
                        // victim (gap locks on the batch index): retry it, as an
                        // application would.
                        loop {
                            match ceiling_batch(&pool, dialect, &table, b as i64, size).await {
                                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40001") => continue,
                                other => break other?,
                            }
                        }
                    }
                });
            }
            while let Some(joined) = loops.join_next().await {
                joined.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            }
            let tasks = (batches * p.batch) as f64;
            emit(&format!("drain_c{c}"), tasks / start.elapsed().as_secs_f64());
        }
        Ok::<_, String>(())
    }
    .await;
    drop_table(&pool, &table).await;
    client.close().await;
    result
}

async fn ceiling_batch(
    pool: &AnyPool,
    dialect: Dialect,
    table: &str,
    b: i64,
    size: usize,
) -> Result<(), sqlx::Error> {
    let values = vec!["(?, ?, 20)"; size].join(", ");
    let insert = dialect.placeholders(format!(
        "INSERT INTO {table} (batch, payload, status) VALUES {values}"
    ));
    let mut tx = pool.begin().await?;
    let mut q = sqlx::query(AssertSqlSafe(insert));
    for i in 0..size {
        q = q.bind(b).bind(format!("{{\"i\":{i}}}"));
    }
    q.execute(&mut *tx).await?;
    let update = dialect.placeholders(format!("UPDATE {table} SET status = 30 WHERE batch = ?"));
    sqlx::query(AssertSqlSafe(update))
        .bind(b)
        .execute(&mut *tx)
        .await?;
    let delete = dialect.placeholders(format!("DELETE FROM {table} WHERE batch = ?"));
    sqlx::query(AssertSqlSafe(delete))
        .bind(b)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Redis's ceiling: `batch` LPUSHes in one pipeline, then `batch` BRPOPs in one, `c`
/// loops at once on keys of their own.
async fn ceiling_redis(p: &Params) -> Result<(), String> {
    let redis_client = redis::Client::open(p.queue.as_str()).map_err(|e| e.to_string())?;
    note(format!(
        "{} LPUSH then {} BRPOP per pipeline, one connection per loop",
        p.batch, p.batch
    ));
    for &c in &p.concurrency {
        let batches = (p.n_drain as usize).div_ceil(p.batch);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut loops = tokio::task::JoinSet::new();
        for k in 0..c {
            let (redis_client, next, size) = (redis_client.clone(), next.clone(), p.batch);
            let key = format!("{}ceiling:{k}", p.prefix);
            loops.spawn(async move {
                let mut conn = redis_client.get_multiplexed_async_connection().await?;
                loop {
                    if next.fetch_add(1, Ordering::SeqCst) as usize >= batches {
                        redis::cmd("DEL").arg(&key).exec_async(&mut conn).await?;
                        return Ok::<_, redis::RedisError>(());
                    }
                    let mut push = redis::pipe();
                    for i in 0..size {
                        push.cmd("LPUSH").arg(&key).arg(format!("{{\"i\":{i}}}")).ignore();
                    }
                    push.exec_async(&mut conn).await?;
                    let mut pop = redis::pipe();
                    for _ in 0..size {
                        pop.cmd("BRPOP").arg(&key).arg(1).ignore();
                    }
                    pop.exec_async(&mut conn).await?;
                }
            });
        }
        while let Some(joined) = loops.join_next().await {
            joined.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
        let tasks = (batches * p.batch) as f64;
        emit(&format!("drain_c{c}"), tasks / start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The sweeper with `sweep_rows` waiting rows of which `sweep_due` are due: the rows are
/// copies of two tasks made through the API (one due now, one due in a day), so the
/// table holds whatever columns the installed schema has.
async fn sweeper(p: &Params) -> Result<(), String> {
    let client = open(p, false, 10).await?;
    let result = sweeper_measure(&client, p).await;
    for table in client.store().table_names() {
        drop_table(client.store().pool(), &table).await;
    }
    client.close().await;
    result
}

async fn sweeper_measure(client: &Client, p: &Params) -> Result<(), String> {
    let pool = client.store().pool();
    let dialect = client.store().dialect();
    let table = client.config().task_table();
    let later = client
        .delay(
            task("sweep", json!({ "due": false })),
            Duration::from_secs(86_400),
        )
        .await
        .map_err(|e| format!("delay: {e}"))?;
    let soon = client
        .delay(task("sweep", json!({ "due": true })), Duration::from_millis(1))
        .await
        .map_err(|e| format!("delay: {e}"))?;
    let select = dialect.placeholders(format!("SELECT * FROM {table} WHERE id = ?"));
    let row = sqlx::query(AssertSqlSafe(select))
        .bind(later.id)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    let columns: Vec<String> = row
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .filter(|c| c != "id")
        .collect();
    let cols = columns.join(", ");
    let src_cols = columns
        .iter()
        .map(|c| format!("src.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let start = Instant::now();
    for (id, copies) in [
        (later.id, p.sweep_rows - p.sweep_due - 1),
        (soon.id, p.sweep_due - 1),
    ] {
        let mut left = copies;
        while left > 0 {
            let chunk = left.min(100_000);
            let sql = match dialect {
                Dialect::Postgres => format!(
                    "INSERT INTO {table} ({cols}) SELECT {src_cols} FROM {table} src CROSS JOIN generate_series(1, {chunk}) s WHERE src.id = ?"
                ),
                Dialect::Sqlite => format!(
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {chunk}) \
                     INSERT INTO {table} ({cols}) SELECT {src_cols} FROM {table} src CROSS JOIN s WHERE src.id = ?"
                ),
                Dialect::MySql => format!(
                    "INSERT INTO {table} ({cols}) SELECT {src_cols} FROM {table} src CROSS JOIN seq_1_to_{chunk} s WHERE src.id = ?"
                ),
            };
            sqlx::query(AssertSqlSafe(dialect.placeholders(sql)))
                .bind(id)
                .execute(pool)
                .await
                .map_err(|e| format!("fill: {e}"))?;
            left -= chunk;
        }
    }
    note(format!(
        "{} rows ({} due) copied in {:.1} s; batch_size {}",
        p.sweep_rows,
        p.sweep_due,
        start.elapsed().as_secs_f64(),
        client.config().batch_size
    ));
    let mut passes = Vec::new();
    let mut dispatched = 0;
    let start = Instant::now();
    while dispatched < p.sweep_due {
        let pass = Instant::now();
        let report = client.sweep_once().await.map_err(|e| format!("sweep: {e}"))?;
        passes.push(pass.elapsed().as_secs_f64() * 1000.0);
        dispatched += report.dispatched;
        if report.dispatched == 0 || start.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "sweep stalled at {dispatched} of {} dispatched",
                p.sweep_due
            ));
        }
    }
    emit("sweep_rate", dispatched as f64 / start.elapsed().as_secs_f64());
    passes.sort_by(|a, b| a.total_cmp(b));
    emit("sweep_pass_ms", percentile(&passes, 0.5));
    note(format!("{} sweep passes, {dispatched} dispatched", passes.len()));
    // What every client pays each second once nothing is due: a pass over the
    // same table.
    let mut idle = Vec::new();
    for _ in 0..5 {
        let pass = Instant::now();
        client.sweep_once().await.map_err(|e| format!("sweep: {e}"))?;
        idle.push(pass.elapsed().as_secs_f64() * 1000.0);
    }
    idle.sort_by(|a, b| a.total_cmp(b));
    emit("sweep_idle_ms", percentile(&idle, 0.5));
    Ok(())
}
