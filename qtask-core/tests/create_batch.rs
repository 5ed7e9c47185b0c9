//! Issue 8, creates in batches: `create_many` as multi-row inserts (ids mapped to their
//! rows, order numbers deduplicated per row, chunks, all or nothing) and concurrent
//! `create`s sharing a commit, each with its own id.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{drop_table, fresh_pair, pairs};
use futures_util::future::join_all;
use qtask_core::sqlx::{self, AssertSqlSafe, Executor, Row};
use qtask_core::store::Dialect;
use qtask_core::{Client, Error, NewTask};
use serde_json::{json, Value};

const NO_WAIT: Duration = Duration::ZERO;

fn task(queue: &str, n: usize) -> NewTask {
    NewTask::new(format!("batch-{n}"), json!({ "n": n }), queue).timeout(Duration::from_secs(60))
}

/// Every row of the client's table: id → (queue, input n).
async fn rows(client: &Client) -> HashMap<i64, (String, i64)> {
    let sql = format!("SELECT id, queue, payload FROM {}", client.store().table());
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(client.store().pool())
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get(2).unwrap();
            let input: Value = serde_json::from_str(&payload).unwrap();
            (
                row.try_get(0).unwrap(),
                (row.try_get(1).unwrap(), input["n"].as_i64().unwrap()),
            )
        })
        .collect()
}

/// Every column a create writes, relative to the row's creation time where it is a
/// time, for the row of `queue` with `order_no`.
async fn columns(client: &Client, queue: &str, order_no: &str) -> Vec<Option<String>> {
    let sql = client.store().dialect().placeholders(format!(
        "SELECT name, payload, order_no, live_key, status, timeout_ms, next_at - created_at, \
         deadline_at - created_at, delete_at - created_at, delete_after_ms, max_count, \
         trace_context, priority, dispatch_count, last_error, updated_at - created_at, namespace \
         FROM {} WHERE queue = ? AND order_no = ?",
        client.store().table()
    ));
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(queue)
        .bind(order_no)
        .fetch_one(client.store().pool())
        .await
        .unwrap();
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|n| n.map(|n| n.to_string())))
                .unwrap()
        })
        .collect()
}

/// Makes the database refuse tasks named `poison` (a CHECK, or a trigger on SQLite).
async fn refuse_poison(client: &Client) {
    let t = client.store().table();
    let sql = match client.store().dialect() {
        Dialect::Sqlite => format!(
            "CREATE TRIGGER {t}_poison BEFORE INSERT ON {t} WHEN NEW.name = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
        ),
        _ => format!("ALTER TABLE {t} ADD CONSTRAINT {t}_poison CHECK (name <> 'poison')"),
    };
    client.store().pool().execute(AssertSqlSafe(sql)).await.unwrap();
}

/// Each returned id is the row of its own task, whether the order numbers it carries
/// are new, held by live tasks from before, repeated within the batch, or freed.
#[tokio::test]
async fn create_many_maps_each_id_to_its_own_row() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let q = "BATCH:MAP";
        let held = c.create(task(q, 100).order_no("held")).await.unwrap();
        let ended = c.create(task(q, 101).order_no("ended")).await.unwrap();
        c.finish(ended.id).await.unwrap();
        let batch = vec![
            task(q, 0),
            task(q, 1).order_no("held"),
            task(q, 2).order_no("new"),
            task(q, 3),
            task(q, 4).order_no("new"),
            task(q, 5).order_no("ended"),
            task("BATCH:OTHER", 6).order_no("held"),
            task(q, 7),
        ];
        let created = c.create_many(batch).await.unwrap();
        let name = pair.name();
        assert_eq!((created[1].id, created[1].existing), (held.id, true), "{name}");
        assert_eq!(
            (created[4].id, created[4].existing),
            (created[2].id, true),
            "{name}"
        );
        assert!(!created[5].existing && created[5].id != ended.id, "{name}");
        let table = rows(&c).await;
        for (n, made) in created.iter().enumerate() {
            assert_eq!(made.dispatched, !made.existing, "{name}: row {n}");
            if !made.existing {
                let queue = if n == 6 { "BATCH:OTHER" } else { q };
                assert_eq!(table[&made.id], (queue.to_string(), n as i64), "{name}: row {n}");
            }
        }
        // 2 from before, 6 new rows.
        assert_eq!(table.len(), 8, "{name}");
        drop_table(&c).await;
    }
}

/// A batch writes every column as a lone create does.
#[tokio::test]
async fn create_many_writes_every_column_as_create_does() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let shapes = |queue: &str| {
            vec![
                task(queue, 0).order_no("plain"),
                task(queue, 1)
                    .order_no("options")
                    .priority(-7)
                    .max_count(3)
                    .deadline(Duration::from_secs(90))
                    .delete_deadline(Duration::from_secs(30))
                    .timeout(Duration::from_millis(2500)),
                NewTask::new("任务 ünïcode", json!({"s": "it's \"quoted\" \\ \u{1}"}), queue)
                    .order_no("text"),
            ]
        };
        for t in shapes("ONE") {
            c.create(t).await.unwrap();
        }
        c.create_many(shapes("MANY")).await.unwrap();
        for order_no in ["plain", "options", "text"] {
            let one = columns(&c, "ONE", order_no).await;
            let many = columns(&c, "MANY", order_no).await;
            assert_eq!(one, many, "{}: {order_no}", pair.name());
        }
        drop_table(&c).await;
    }
}

/// More rows than one statement takes, with an order number repeated across chunks
/// and rows over the byte limit of a statement.
#[tokio::test]
async fn create_many_crosses_chunk_boundaries() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let q = "BATCH:CHUNKS";
        let held = c.create(task(q, 9999).order_no("held")).await.unwrap();
        let mut batch: Vec<NewTask> = (0..2600).map(|n| task(q, n)).collect();
        batch[999] = task(q, 999).order_no("twice");
        batch[1000] = task(q, 1000).order_no("held");
        batch[2400] = task(q, 2400).order_no("twice");
        let created = c.create_many(batch).await.unwrap();
        let name = pair.name();
        assert_eq!(
            (created[1000].id, created[1000].existing),
            (held.id, true),
            "{name}"
        );
        assert_eq!(
            (created[2400].id, created[2400].existing),
            (created[999].id, true),
            "{name}"
        );
        let table = rows(&c).await;
        assert_eq!(table.len(), 2600 - 2 + 1, "{name}");
        for (n, made) in created.iter().enumerate() {
            if !made.existing {
                assert_eq!(table[&made.id].1, n as i64, "{name}: row {n}");
            }
        }
        let ids: HashSet<i64> = created.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 2600 - 1, "{name}");
        drop_table(&c).await;

        // 20 rows of 300 kB: more bytes than one statement carries.
        let (c, _) = fresh_pair(&pair).await;
        let big = "x".repeat(300_000);
        let batch: Vec<NewTask> = (0..20)
            .map(|n| NewTask::new("big", json!({ "n": n, "big": big }), q))
            .collect();
        let created = c.create_many(batch).await.unwrap();
        let table = rows(&c).await;
        for (n, made) in created.iter().enumerate() {
            assert_eq!(table[&made.id].1, n as i64, "{name}: big row {n}");
        }
        drop_table(&c).await;
    }
}

/// A row the database refuses, in the last chunk of a batch: the batch fails and
/// writes nothing.
#[tokio::test]
async fn create_many_with_a_refused_row_writes_nothing() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        refuse_poison(&c).await;
        let q = "BATCH:POISON";
        let mut batch: Vec<NewTask> = (0..2100).map(|n| task(q, n)).collect();
        batch[2050] = NewTask::new("poison", json!({}), q);
        let result = c.create_many(batch).await;
        assert!(
            matches!(result, Err(Error::Database(_) | Error::Internal(_))),
            "{}: {result:?}",
            pair.name()
        );
        assert!(rows(&c).await.is_empty(), "{}", pair.name());
        if pair.carries_offers() {
            assert!(c.pop(q, NO_WAIT).await.unwrap().is_none(), "{}", pair.name());
        }
        drop_table(&c).await;
    }
}

/// Many concurrent creates on one client: each gets its own row, order numbers shared
/// between callers give one task, a row the database refuses fails only its caller,
/// every row is committed when its create returns, and each new task is offered once.
#[tokio::test]
async fn concurrent_creates_each_get_their_own_row() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        refuse_poison(&c).await;
        let q = "BATCH:CONCURRENT";
        let name = pair.name();
        // Polled together on this thread: they reach the client at once and share commits.
        let creates = (0..120).map(|n| {
            let c = c.clone();
            async move {
                let t = match n {
                    60 => NewTask::new("poison", json!({ "n": n }), q),
                    n if n % 10 == 0 => task(q, n).order_no(format!("shared-{}", n % 30)),
                    n => task(q, n),
                };
                (n, c.create(t).await)
            }
        });
        let results = join_all(creates).await;
        let mut by_order: HashMap<usize, Vec<(i64, bool)>> = HashMap::new();
        let mut new_ids = HashSet::new();
        let mut mine = HashMap::new();
        for (n, result) in results {
            if n == 60 {
                assert!(result.is_err(), "{name}: the refused row: {result:?}");
                continue;
            }
            let made = result.unwrap_or_else(|e| panic!("{name}: create {n}: {e}"));
            assert_eq!(made.dispatched, !made.existing, "{name}: {n}");
            if !made.existing {
                assert!(new_ids.insert(made.id), "{name}: id {} given twice", made.id);
                mine.insert(made.id, n as i64);
            }
            if n % 10 == 0 {
                by_order.entry(n % 30).or_default().push((made.id, made.existing));
            }
        }
        for (key, made) in &by_order {
            let news = made.iter().filter(|(_, existing)| !existing).count();
            let ids: HashSet<i64> = made.iter().map(|(id, _)| *id).collect();
            assert_eq!((news, ids.len()), (1, 1), "{name}: shared-{key}: {made:?}");
        }
        // Committed: a client of its own reads every row with its own input.
        let other = Client::open(c.config().clone()).await.unwrap();
        let table = rows(&other).await;
        other.close().await;
        assert_eq!(table.len(), new_ids.len(), "{name}");
        for (id, n) in &mine {
            assert_eq!(table[id].1, *n, "{name}: task {id}");
        }
        if pair.carries_offers() {
            let mut popped = HashSet::new();
            while let Some(m) = c.pop(q, NO_WAIT).await.unwrap() {
                assert!(popped.insert(m.task_id), "{name}: {} offered twice", m.task_id);
            }
            assert_eq!(popped, new_ids, "{name}");
        }
        drop_table(&c).await;
    }
}

/// Many threads of a multi-threaded runtime creating at once, one by one: every id
/// is distinct and reads back as its own task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_from_many_tasks_are_durable_and_distinct() {
    for pair in pairs().await {
        let (c, _) = fresh_pair(&pair).await;
        let q = "BATCH:THREADS";
        let mut producers = tokio::task::JoinSet::new();
        for p in 0..8 {
            let c = c.clone();
            producers.spawn(async move {
                let mut made = Vec::new();
                for i in 0..40 {
                    let n = p * 1000 + i;
                    made.push((c.create(task(q, n)).await.unwrap().id, n as i64));
                }
                made
            });
        }
        let mut mine = HashMap::new();
        while let Some(made) = producers.join_next().await {
            for (id, n) in made.unwrap() {
                assert!(
                    mine.insert(id, n).is_none(),
                    "{}: id {id} given twice",
                    pair.name()
                );
            }
        }
        let table = rows(&c).await;
        assert_eq!(table.len(), 320, "{}", pair.name());
        for (id, n) in &mine {
            assert_eq!(table[id].1, *n, "{}: task {id}", pair.name());
        }
        drop_table(&c).await;
    }
}
