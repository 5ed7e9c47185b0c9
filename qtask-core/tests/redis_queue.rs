//! The Redis queue against real servers on loopback: the shared Redis (a database
//! number per flushing test, a key prefix per test), the shared three-node cluster,
//! and private `redis-server` processes for outages. Every scenario runs on SQLite,
//! PostgreSQL and MariaDB. Time is driven with the shared test clock and
//! `sweep_once`, so timeouts of minutes take milliseconds.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qtask_core::{Client, Config, Error, Message, NewTask, Status, Worker};
use serde_json::json;

use common::{cluster_url, redis_url, DbKind, RedisServer, Setup};

/// The shared Redis database of tests that do not flush.
const SHARED_DB: u8 = 12;
const SWEEP: Duration = Duration::from_secs(1);

macro_rules! on_each_db {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(DbKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(DbKind::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$scenario(DbKind::MariaDb).await
            }
        }
    )*};
}

on_each_db!(
    full_cycle,
    flush_recovery,
    worker_killed,
    connections_killed,
    redis_down_at_create,
    blocked_fetch_takes_the_batch,
    two_sweepers,
    cluster_full_cycle,
    cluster_flush_recovery,
);

fn task(i: usize, queue: &str) -> NewTask {
    // Finished rows stay an hour, so that `stats().finished` counts them.
    NewTask::new("redis test", json!({"i": i, "名": "任务"}), queue)
        .timeout(Duration::from_secs(30))
        .delete_deadline(Duration::from_secs(3600))
}

/// Pops, runs `processing` and `finish` until `queue` stays empty for `wait`;
/// returns the messages taken.
async fn drain(client: &Client, queue: &str, wait: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = client.pop(queue, wait).await.expect("pop") {
        assert!(
            client.processing(m.task_id).await.expect("processing"),
            "task {} refused",
            m.task_id
        );
        client.finish(m.task_id).await.expect("finish");
        out.push(m);
    }
    out
}

/// Create, create_many, delay, FIFO pops, order numbers, stale duplicates, pops with
/// zero and sub-second waits, and a blocked pop not holding up anything else.
async fn full_cycle(kind: DbKind) {
    let Some(mut t) = Setup::new(kind, &redis_url(SHARED_DB)).await else {
        return;
    };
    let c = t.client.clone();
    let q = t.queue.clone();

    let mut ids = Vec::new();
    for i in 0..5 {
        let created = c.create(task(i, &q)).await.unwrap();
        assert!(created.dispatched && !created.existing);
        ids.push(created.id);
    }
    let many = c
        .create_many((5..10).map(|i| task(i, &q)).collect())
        .await
        .unwrap();
    assert!(many.iter().all(|cr| cr.dispatched));
    ids.extend(many.iter().map(|cr| cr.id));
    assert_eq!(t.queued(&q).await, 10);

    // The row is claimed by the create itself: a sweep pushes nothing more.
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 0);
    assert_eq!(t.queued(&q).await, 10);

    for (i, id) in ids.iter().enumerate() {
        let m = c.pop(&q, Duration::from_secs(1)).await.unwrap().expect("message");
        assert_eq!((m.task_id, m.attempt), (*id, 1), "first in, first out");
        assert_eq!(m.input["i"], json!(i));
        assert_eq!(m.input["名"], json!("任务"));
        assert_eq!(m.queue, q);
        assert!(c.processing(m.task_id).await.unwrap());
        c.finish(m.task_id).await.unwrap();
    }

    // Empty queue: wait 0 does not block; a sub-second wait ends on time.
    let started = Instant::now();
    assert!(c.pop(&q, Duration::ZERO).await.unwrap().is_none());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(c.pop(&q, Duration::from_millis(300)).await.unwrap().is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    // A message already there is taken by a zero wait.
    let quick = c.create(task(100, &q)).await.unwrap();
    let m = c
        .pop(&q, Duration::ZERO)
        .await
        .unwrap()
        .expect("message with wait 0");
    assert_eq!(m.task_id, quick.id);
    assert!(c.processing(m.task_id).await.unwrap());
    c.finish(m.task_id).await.unwrap();

    // A stale copy of a finished task's offer: taken, refused by the claim, never handed out.
    assert!(c.processing(m.task_id).await.is_ok());
    t.offer_raw(&q, &format!("{:019}", m.task_id)).await;
    assert!(c.pop(&q, Duration::from_millis(200)).await.unwrap().is_none());
    assert_eq!(t.queued(&q).await, 0);

    // Something that is not a task id is dropped, not handed out and not fatal.
    t.offer_raw(&q, "not json").await;
    assert!(c.pop(&q, Duration::from_millis(200)).await.unwrap().is_none());
    assert_eq!(t.queued(&q).await, 0);

    // Order numbers: the second create returns the live task and pushes nothing.
    let first = c.create(task(200, &q).order_no("ORD-1")).await.unwrap();
    let again = c.create(task(200, &q).order_no("ORD-1")).await.unwrap();
    assert_eq!(again.id, first.id);
    assert!(again.existing && !again.dispatched);
    assert_eq!(t.queued(&q).await, 1);
    drain(&c, &q, Duration::from_millis(100)).await;

    // Delayed: not before its time, then pushed by one sweep.
    let delayed = c.delay(task(300, &q), Duration::from_secs(10)).await.unwrap();
    assert!(!delayed.dispatched);
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 0);
    assert!(c.pop(&q, Duration::ZERO).await.unwrap().is_none());
    t.clock.advance(Duration::from_secs(11));
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 1);
    let m = c
        .pop(&q, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("delayed message");
    assert_eq!((m.task_id, m.attempt), (delayed.id, 1));
    assert!(c.processing(m.task_id).await.unwrap());
    c.finish(m.task_id).await.unwrap();

    // A pop blocked on an empty queue does not hold up pushes or other pops.
    let blocked = {
        let c = c.clone();
        tokio::spawn(async move { c.pop("RQ:IDLE", Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let created = c.create(task(400, &q)).await.unwrap();
    let m = c
        .pop(&q, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("message beside a blocked pop");
    assert_eq!(m.task_id, created.id);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    c.finish(m.task_id).await.unwrap();
    assert!(blocked.await.unwrap().unwrap().is_none());

    let stats = c.stats().await.unwrap();
    assert_eq!(stats.finished, 14, "{stats:?}");
    assert_eq!((stats.waiting, stats.processing), (0, 0));
    t.cleanup().await;
}

/// Redis loses everything before any pop: every task still runs, after its timeout
/// plus one sweep interval.
async fn flush_recovery(kind: DbKind) {
    let Some(mut t) = Setup::new(kind, &redis_url(kind.flush_db())).await else {
        return;
    };
    let queues = [t.queue.clone()];
    flush_and_recover(&mut t, &queues).await;
    t.cleanup().await;
}

async fn flush_and_recover(t: &mut Setup, queues: &[String]) {
    const N: usize = 40;
    let c = t.client.clone();
    let tasks: Vec<NewTask> = (0..N).map(|i| task(i, &queues[i % queues.len()])).collect();
    let created = c.create_many(tasks).await.unwrap();
    assert!(created.iter().all(|cr| cr.dispatched));
    let mut on_lists = 0;
    for q in queues {
        on_lists += t.queued(q).await;
    }
    assert_eq!(on_lists, N as i64);

    t.flush().await;
    for q in queues {
        assert!(c.pop(q, Duration::ZERO).await.unwrap().is_none(), "flushed");
    }
    // Not before the timeout: the leases still hold.
    t.clock.advance(Duration::from_secs(29));
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 0);
    // Timeout plus one sweep interval: one sweep re-sends all of them.
    t.clock.advance(Duration::from_secs(1) + SWEEP);
    assert_eq!(c.sweep_once().await.unwrap().dispatched, N as u64);

    let mut seen = HashSet::new();
    for q in queues {
        for m in drain(&c, q, Duration::from_millis(200)).await {
            // The lost offers used no attempt: this is the first.
            assert_eq!(m.attempt, 1);
            assert!(seen.insert(m.task_id), "task {} twice", m.task_id);
        }
    }
    let expected: HashSet<i64> = created.iter().map(|cr| cr.id).collect();
    assert_eq!(seen, expected);
    assert_eq!(c.stats().await.unwrap().finished, N as i64);
}

/// The child side of `worker_killed`: pops one message, marks it processing, says so
/// on stdout, then hangs until killed.
#[tokio::test]
#[ignore = "run by worker_killed in a child process"]
async fn child_worker() {
    let Ok(config) = std::env::var("QTASK_CHILD_CONFIG") else {
        return;
    };
    let queue = std::env::var("QTASK_CHILD_QUEUE").unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let config = Config {
        db: config["db"].as_str().unwrap().into(),
        queue: config["queue"].as_str().unwrap().into(),
        table_prefix: config["table_prefix"].as_str().unwrap().into(),
        redis_prefix: config["redis_prefix"].as_str().unwrap().into(),
        sweeper: false,
        ..Config::default()
    };
    let client = Client::open(config).await.unwrap();
    let m = client
        .pop(&queue, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("a message");
    assert!(client.processing(m.task_id).await.unwrap());
    println!("QTASK-CHILD POPPED {} {}", m.task_id, m.attempt);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// A worker process killed with SIGKILL after popping: its task runs again.
async fn worker_killed(kind: DbKind) {
    let Some(mut t) = Setup::new(kind, &redis_url(SHARED_DB)).await else {
        return;
    };
    let c = t.client.clone();
    let q = t.queue.clone();
    let created = c.create(task(1, &q)).await.unwrap();
    assert!(created.dispatched);

    let config = json!({
        "db": t.config.db, "queue": t.config.queue,
        "table_prefix": t.config.table_prefix, "redis_prefix": t.config.redis_prefix,
    });
    let mut child = common::spawn_child(
        "child_worker",
        &[
            ("QTASK_CHILD_CONFIG", config.to_string()),
            ("QTASK_CHILD_QUEUE", q.clone()),
        ],
    );
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may print "test child_worker ... " before the child's line.
            .find_map(|l| l.find("QTASK-CHILD POPPED").map(|at| l[at..].to_string()))
    })
    .await
    .unwrap()
    .expect("child popped the task");
    assert_eq!(line, format!("QTASK-CHILD POPPED {} 1", created.id));
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());

    assert_eq!(t.queued(&q).await, 0, "the message left with the killed worker");
    let row = c.get(created.id).await.unwrap();
    assert_eq!((row.status, row.count), (Status::Processing, 1));

    // The lease runs out; one sweep sends it again.
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 0);
    t.clock.advance(Duration::from_secs(30) + SWEEP);
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 1);
    let again = drain(&c, &q, Duration::from_millis(200)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].task_id, again[0].attempt), (created.id, 2));
    assert_eq!(c.get(created.id).await.unwrap().status, Status::Finished);
    t.cleanup().await;
}

/// Producers and a worker run while every Redis client connection is killed again and
/// again (`CLIENT KILL TYPE normal`, on a private redis-server) and Redis is stopped and
/// started once: nothing is lost, everything finishes, no loop exits.
async fn connections_killed(kind: DbKind) {
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: usize = 60;
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let Some(t) = Setup::with(kind, &server.url(), |config| {
        config.sweeper = true;
        config.sweep_interval = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let c = t.client.clone();
    let q = t.queue.clone();

    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let runs = runs.clone();
        let worker = Worker::new(c.clone(), q.clone()).concurrency(4);
        tokio::spawn(worker.run(
            move |m: Message| {
                let runs = runs.clone();
                async move {
                    *runs.lock().unwrap().entry(m.task_id).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(())
                }
            },
            async move {
                let _ = stopped.await;
            },
        ))
    };
    // Kill every client connection now and then; halfway, stop Redis (losing every
    // key) and start it again a second later.
    let killer = tokio::spawn(async move {
        let mut server = server;
        let mut conn = server.conn().await;
        let mut kills = 0;
        for round in 0..24 {
            if round == 12 {
                server.stop();
                tokio::time::sleep(Duration::from_secs(1)).await;
                server.restart().await;
                conn = server.conn().await;
            }
            tokio::time::sleep(Duration::from_millis(120)).await;
            // SKIPME yes (the default): the killer's own connection stays.
            let killed: redis::RedisResult<i64> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query_async(&mut conn)
                .await;
            kills += killed.unwrap_or(0);
        }
        (kills, server)
    });
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let c = c.clone();
        let q = q.clone();
        producers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..PER_PRODUCER {
                // The database is up: a create never fails, whatever Redis does.
                let created = c
                    .create(task(p * 1000 + i, &q).timeout(Duration::from_secs(2)))
                    .await;
                ids.push(created.expect("create while connections are killed").id);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for p in producers {
        ids.extend(p.await.unwrap());
    }
    let (kills, server) = killer.await.unwrap();
    assert!(kills > 0, "CLIENT KILL killed nothing");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = c.stats().await.unwrap();
        if stats.finished == ids.len() as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "not all finished: {stats:?}");
        assert!(!worker.is_finished(), "the worker loop exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    let report = worker.await.unwrap().unwrap();
    let runs = runs.lock().unwrap().clone();
    for id in &ids {
        assert!(runs.contains_key(id), "task {id} never ran");
    }
    eprintln!(
        "connections_killed/{}: {} tasks, {kills} connections killed, {} runs, {report:?}",
        kind.name(),
        ids.len(),
        runs.values().sum::<u32>()
    );
    t.cleanup().await;
    drop(server);
}

/// Redis down at create: the row is committed, `dispatched` is false, and the sweeper
/// sends it once Redis is back. Database down: a typed error and nothing pushed.
async fn redis_down_at_create(kind: DbKind) {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let Some(mut t) = Setup::new(kind, &server.url()).await else {
        return;
    };
    let c = t.client.clone();
    let q = t.queue.clone();
    assert!(c.create(task(0, &q)).await.unwrap().dispatched);
    assert_eq!(drain(&c, &q, Duration::from_millis(100)).await.len(), 1);

    // Redis dies with the client open.
    server.stop();
    let started = Instant::now();
    let mut down = Vec::new();
    for i in 1..=5 {
        let created = c.create(task(i, &q)).await.expect("create with Redis down");
        assert!(!created.dispatched && !created.existing);
        down.push(created.id);
    }
    let many = c
        .create_many((6..9).map(|i| task(i, &q)).collect())
        .await
        .unwrap();
    assert!(many.iter().all(|cr| !cr.dispatched));
    down.extend(many.iter().map(|cr| cr.id));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "creates hung: {:?}",
        started.elapsed()
    );
    for id in &down {
        let row = c.get(*id).await.unwrap();
        assert_eq!((row.status, row.count), (Status::Waiting, 0), "row safe and due");
    }
    assert!(
        c.pop(&q, Duration::from_millis(100)).await.is_err(),
        "pop reports the outage"
    );
    assert!(c.sweep_once().await.is_err(), "sweep reports the outage");
    assert_eq!(c.get(down[0]).await.unwrap().count, 0, "failed push taken back");

    // Redis is back, empty, on the same address: the same client resumes.
    server.restart().await;
    t.redis = common::Inspect::Single(server.conn().await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut dispatched = 0;
    while dispatched < down.len() as u64 {
        match c.sweep_once().await {
            Ok(report) => dispatched += report.dispatched,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        assert!(Instant::now() < deadline, "sweeper did not resume");
    }
    let done: HashSet<i64> = drain(&c, &q, Duration::from_millis(200))
        .await
        .iter()
        .map(|m| m.task_id)
        .collect();
    assert_eq!(done, down.iter().copied().collect());

    // A client opened while nothing listens at its Redis address opens, creates, warns.
    let nowhere = Client::open(Config {
        queue: "redis://127.0.0.1:1/".into(),
        ..t.config.clone()
    })
    .await
    .expect("open with Redis down");
    let created = nowhere.create(task(50, &q)).await.unwrap();
    assert!(!created.dispatched);
    assert!(nowhere.pop(&q, Duration::from_millis(50)).await.is_err());
    nowhere.close().await;
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 1);
    assert_eq!(
        drain(&c, &q, Duration::from_millis(200)).await[0].task_id,
        created.id
    );

    // The database gone (its pool closed): a typed error (a closed pool is reported as
    // Closed, as a call racing `close` is), nothing pushed.
    let broken = Client::open(t.config.clone()).await.unwrap();
    broken.store().pool().close().await;
    match broken.create(task(60, &q)).await {
        Err(Error::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        broken.create_many(vec![task(61, &q)]).await,
        Err(Error::Closed)
    ));
    assert_eq!(t.queued(&q).await, 0, "nothing pushed without a row");
    t.cleanup().await;
}

/// Two sweepers on one database and one Redis: no task pushed twice in a round.
async fn two_sweepers(kind: DbKind) {
    const N: usize = 300;
    let Some(mut t) = Setup::with(kind, &redis_url(SHARED_DB), |config| config.batch_size = 50).await else {
        return;
    };
    let a = t.client.clone();
    let b = t.another_client().await;
    let q = t.queue.clone();
    let mut ids = HashSet::new();
    for i in 0..N {
        ids.insert(a.delay(task(i, &q), Duration::from_secs(5)).await.unwrap().id);
    }
    for round in 1..=2 {
        // Round 1: the delays are over. Round 2: every lease ran out unfinished.
        t.clock
            .advance(Duration::from_secs(if round == 1 { 6 } else { 31 }));
        let (ra, rb) = tokio::join!(sweep_rounds(&a, 3), sweep_rounds(&b, 3));
        // Deadlock victims (InnoDB) are retried inside the claim, so both sweepers'
        // reports add up to every task, each pushed once.
        assert_eq!(
            ra + rb,
            N as u64,
            "{}: round {round}: a {ra} + b {rb}",
            kind.name()
        );
        // One offer per task: ZADD NX keeps one copy even if a row were offered twice.
        let members: HashSet<i64> = t.offered(&q).await.iter().map(|m| m.parse().unwrap()).collect();
        assert_eq!(members, ids, "round {round}");
        eprintln!(
            "two_sweepers/{} round {round}: a reported {ra}, b reported {rb}",
            kind.name()
        );
        // Workers claim every task but never finish: the next round offers all again,
        // and each claim is the next attempt.
        let mut claimed = 0;
        while let Some(m) = a.pop(&q, Duration::ZERO).await.unwrap() {
            assert_eq!(m.attempt, round);
            claimed += 1;
        }
        assert_eq!(claimed, N, "round {round}");
    }
    b.close().await;
    t.cleanup().await;
}

/// `rounds` sweeps; the number of tasks they pushed.
async fn sweep_rounds(client: &Client, rounds: usize) -> u64 {
    let mut dispatched = 0;
    for _ in 0..rounds {
        dispatched += client.sweep_once().await.expect("sweep").dispatched;
    }
    dispatched
}

fn cluster_queues() -> Vec<String> {
    // Different hash tags: spread over the cluster's nodes.
    (0..6).map(|i| format!("RQ:CLUSTER:{i}")).collect()
}

/// The full cycle on the three-node cluster, with queues on every node.
async fn cluster_full_cycle(kind: DbKind) {
    let Some(mut t) = Setup::new(kind, &cluster_url()).await else {
        return;
    };
    let c = t.client.clone();
    let queues = cluster_queues();
    let mut expected: HashMap<String, Vec<i64>> = HashMap::new();
    for (i, q) in queues.iter().enumerate() {
        let created = c.create(task(i, q)).await.unwrap();
        assert!(created.dispatched);
        expected.entry(q.clone()).or_default().push(created.id);
    }
    let many = c
        .create_many(
            (0..24)
                .map(|i| task(100 + i, &queues[i % queues.len()]))
                .collect(),
        )
        .await
        .unwrap();
    for (i, cr) in many.iter().enumerate() {
        assert!(cr.dispatched);
        expected
            .entry(queues[i % queues.len()].clone())
            .or_default()
            .push(cr.id);
    }
    for q in &queues {
        assert_eq!(t.queued(q).await, 5, "{q}");
        let got: Vec<i64> = drain(&c, q, Duration::from_millis(200))
            .await
            .iter()
            .map(|m| m.task_id)
            .collect();
        assert_eq!(got, expected[q], "{q}: first in, first out");
    }
    assert!(c.pop(&queues[0], Duration::ZERO).await.unwrap().is_none());

    // Delayed, through the sweeper, on the cluster.
    let delayed = c
        .delay(task(999, &queues[1]), Duration::from_secs(10))
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(11));
    assert_eq!(c.sweep_once().await.unwrap().dispatched, 1);
    let m = c
        .pop(&queues[1], Duration::from_secs(1))
        .await
        .unwrap()
        .expect("delayed");
    assert_eq!(m.task_id, delayed.id);
    c.finish(m.task_id).await.unwrap();
    assert_eq!(c.stats().await.unwrap().finished, 31);
    t.cleanup().await;
}

/// The cluster loses every key of qtask's, on every node: all tasks still run.
async fn cluster_flush_recovery(kind: DbKind) {
    let Some(mut t) = Setup::new(kind, &cluster_url()).await else {
        return;
    };
    flush_and_recover(&mut t, &cluster_queues()).await;
    t.cleanup().await;
}

#[test]
fn cluster_url_forms_are_accepted() {
    for queue in [
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
    ] {
        let config = Config {
            queue: queue.into(),
            ..Config::default()
        };
        config.validate().unwrap();
    }
}

/// CPU seconds this process has used (Linux: utime + stime of /proc/self/stat).
#[cfg(target_os = "linux")]
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The child side of `redis_unreachable_does_not_spin`: a worker (4 slots) and a fast
/// sweeper against a Redis address where nothing listens, with tasks due; prints the
/// CPU share they used.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by redis_unreachable_does_not_spin in a child process"]
async fn child_outage_worker() {
    let Ok(db) = std::env::var("QTASK_CHILD_DB") else {
        return;
    };
    let config = Config {
        db,
        queue: "redis://127.0.0.1:1/".into(),
        table_prefix: std::env::var("QTASK_CHILD_TABLE_PREFIX").unwrap(),
        sweep_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let client = Client::open(config).await.unwrap();
    client.install().await.unwrap();
    for i in 0..20 {
        assert!(!client.create(task(i, "RQ:OUTAGE")).await.unwrap().dispatched);
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let worker = Worker::new(client.clone(), "RQ:OUTAGE").concurrency(4);
    let run = tokio::spawn(worker.run(
        |_m: Message| async { Ok(()) },
        tokio::time::sleep(Duration::from_secs(4)),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!run.is_finished(), "the worker loop exited");
    let share = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
    println!("QTASK-CHILD CPU {share:.3}");
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.finished, 0);
    client.close().await;
}

/// A fetch blocked on an empty queue takes, when a batch is offered, the whole batch
/// in one call: with BZMPOP on Redis 7, and where Redis refuses it (before 7, here
/// renamed away; or an ACL user not allowed it) with BZPOPMIN and then ZPOPMIN, twice,
/// and a worker there handles each task once.
async fn blocked_fetch_takes_the_batch(kind: DbKind) {
    for (variant, extra) in [
        ("BZMPOP", &[][..]),
        ("renamed away", &["--rename-command", "BZMPOP", ""][..]),
        (
            "not allowed to the ACL user",
            &["--user", "qtask", "on", ">pw", "~*", "&*", "+@all", "-bzmpop"][..],
        ),
    ] {
        let redis_7 = variant == "BZMPOP";
        let Some(server) = RedisServer::start_with(extra).await else {
            return;
        };
        let url = match variant {
            "not allowed to the ACL user" => format!("redis://qtask:pw@127.0.0.1:{}/0", server.port),
            _ => server.url(),
        };
        let Some(t) = Setup::new(kind, &url).await else {
            return;
        };
        let mut conn = ::redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("the private redis-server, as the test's user");
        let known: Result<(), ::redis::RedisError> = ::redis::cmd("BZMPOP")
            .arg(0.01)
            .arg(1)
            .arg("k")
            .arg("MIN")
            .query_async(&mut conn)
            .await;
        assert_eq!(known.is_ok(), redis_7, "{variant}: BZMPOP here: {known:?}");
        let (c, q) = (t.client.clone(), t.queue.clone());
        for round in 0..2 {
            let fetch = tokio::spawn({
                let (c, q) = (c.clone(), q.clone());
                async move { c.fetch(&q, 50, Duration::from_secs(10)).await }
            });
            // The fetch is waiting in its blocking pop when the batch arrives.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let created = c
                .create_many((0..20).map(|i| task(round * 20 + i, &q)).collect())
                .await
                .unwrap();
            let fetched = fetch.await.unwrap().expect("blocked fetch");
            let mut got: Vec<i64> = fetched.iter().map(|m| m.task_id).collect();
            let mut want: Vec<i64> = created.iter().map(|cr| cr.id).collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{variant}, round {round}: the whole batch at once");
            for m in &fetched {
                c.finish_attempt(m.fence()).await.unwrap();
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(Worker::new(c.clone(), &q).concurrency(8).run(
            {
                let seen = seen.clone();
                move |m: Message| {
                    seen.lock().unwrap().push(m.task_id);
                    async { Ok(()) }
                }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut want: Vec<i64> = c
            .create_many((40..60).map(|i| task(i, &q)).collect())
            .await
            .unwrap()
            .iter()
            .map(|cr| cr.id)
            .collect();
        common::eventually(format!("{variant}: the worker handles 20 tasks"), || {
            let handled = seen.lock().unwrap().len();
            async move { handled >= 20 }
        })
        .await;
        let _ = stop.send(());
        assert_eq!(run.await.unwrap().unwrap().finished, 20);
        let mut handled = seen.lock().unwrap().clone();
        handled.sort_unstable();
        want.sort_unstable();
        assert_eq!(handled, want, "{variant}: each task handled once");
    }
}

/// A worker and a sweeper that cannot reach Redis keep retrying with a back-off: they
/// neither exit nor spin (measured in a child process of their own).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn redis_unreachable_does_not_spin() {
    let name = common::unique_prefix();
    let file = std::env::temp_dir().join(format!("qtask-{name}spin.db"));
    let output = tokio::task::spawn_blocking({
        let file = file.clone();
        move || {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_outage_worker", "--ignored", "--nocapture"])
                .env("QTASK_CHILD_DB", format!("sqlite://{}", file.display()))
                .env("QTASK_CHILD_TABLE_PREFIX", &name)
                .stderr(Stdio::inherit())
                .output()
                .expect("run child")
        }
    })
    .await
    .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}");
    let share: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("QTASK-CHILD CPU "))
        .expect("child reported its CPU use")
        .parse()
        .unwrap();
    eprintln!(
        "redis_unreachable_does_not_spin: {:.1} % of one core",
        share * 100.0
    );
    assert!(share < 0.25, "spinning: {:.0} % of a core", share * 100.0);
}
