//! Claims that carry the finishes waiting for a write (waiting_finishes.rs), on
//! PostgreSQL: the finish and the claim in one statement, as two data-modifying CTEs.
//! A busy worker's database then does one statement and one commit per round of claims
//! and finishes instead of two (20,000 tasks, c=32: commits 1.8–2.2k → 1.3–1.4k, CPU
//! per task 40–48 → 24–27 µs in the client and 130–150 → 85–96 µs in PostgreSQL).
//! Elsewhere the finishes stay with the completer: MariaDB's claim locks rows in a
//! select first, and on SQLite one transaction holding both cost more client CPU per
//! task (40–42 µs against 35–39) than two statements on its one connection.

use std::collections::HashSet;

use sqlx::Row;

use super::claims::{Bind, Changed, Keyed};
use super::durability::Commit;
use super::statements::fence_arrays;
use super::waiting_finishes::{answer_finishes, WaitingFinish};
use super::{retry_conflicts, Dialect, Store, MAX_BATCH};
use crate::error::{Error, Result};
use crate::task::{Fence, Message};

/// What a claim takes.
#[derive(Clone, Copy)]
pub(super) enum ClaimOf<'a> {
    /// The `db` queue: up to `limit` due rows of `queue`.
    Due { queue: &'a str, limit: i64 },
    /// A Redis queue: these offered ids.
    Offered(&'a Keyed),
}

impl Store {
    /// Whether claims carry waiting finishes here: on PostgreSQL only.
    pub(crate) fn claims_carry_finishes(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Finishes waiting for a write that a claim may carry.
    pub(super) fn take_carried(&self) -> Vec<WaitingFinish> {
        match self.claims_carry_finishes() {
            true => self.waiting_finishes.take(MAX_BATCH),
            false => Vec::new(),
        }
    }

    /// Writes `carried` and makes the claim, committed together; then tells each
    /// finish's caller its result (or the error) and turns the claimed rows into
    /// messages.
    pub(super) async fn claim_carrying(
        &self,
        claim: ClaimOf<'_>,
        carried: Vec<WaitingFinish>,
    ) -> Result<Vec<Message>> {
        let fences: Vec<Fence> = carried.iter().map(|f| f.fence).collect();
        let written = retry_conflicts(|| self.finish_and_claim(claim, &fences)).await;
        answer_finishes(carried, written.as_ref().map(|(done, _)| done));
        let (_, changed) = written?;
        self.claimed(changed).await
    }

    /// One statement: its rows are the claimed ones (or one row of NULLs when none was
    /// claimed), each with the finished ids as text in the last column. Returns the ids
    /// finished (attempts that were current) and the rows claimed.
    async fn finish_and_claim(
        &self,
        claim: ClaimOf<'_>,
        fences: &[Fence],
    ) -> Result<(HashSet<i64>, Changed)> {
        let statements = self.statements();
        let Some(carrying) = &statements.carrying else {
            return Err(Error::Internal("no carrying claims on this database".into()));
        };
        let [ids, attempts, ids_again] = fence_arrays(&sorted_pairs(fences));
        let mut binds = vec![Bind::Text(&ids), Bind::Text(&attempts), Bind::Text(&ids_again)];
        let offered;
        let sql = match claim {
            ClaimOf::Due { queue, limit } => {
                binds.extend([
                    Bind::Text(self.namespace()),
                    Bind::Text(queue),
                    Bind::Text(&ids),
                    Bind::Int(limit),
                ]);
                &carrying.due
            }
            ClaimOf::Offered(keyed) => {
                offered = keyed.binds();
                binds.extend(offered.iter().copied());
                &carrying.offered
            }
        };
        let mut conn = self.conn_for(Commit::Relaxed).await?;
        let rows = self.fetch(&mut *conn, sql, &binds).await?;
        conn.ran();
        let finished_column = super::statements::CLAIMED_COLUMNS;
        let mut done = HashSet::with_capacity(fences.len());
        if let Some(first) = rows.first() {
            let finished: Option<String> = first.try_get(finished_column)?;
            for id in finished.iter().flat_map(|text| text.split(',')) {
                done.insert(
                    id.parse()
                        .map_err(|_| Error::Internal(format!("finished id {id:?}")))?,
                );
            }
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            if row.try_get::<Option<i64>, _>(0)?.is_some() {
                claimed.push(row);
            }
        }
        Ok((
            done,
            Changed {
                rows: claimed,
                before: false,
            },
        ))
    }
}

/// (task id, attempt), sorted by id, one per id: batches lock rows in id order.
pub(super) fn sorted_pairs(fences: &[Fence]) -> Vec<(i64, i64)> {
    let mut pairs: Vec<(i64, i64)> = fences.iter().map(|f| (f.task_id, f.attempt)).collect();
    pairs.sort_unstable();
    pairs.dedup_by_key(|p| p.0);
    pairs
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::oneshot;

    use crate::task::{Fence, Fenced, Status};
    use crate::{Client, Clock, Config, NewTask};

    const Q: &str = "carried";

    fn env_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    }

    /// A client on `db` with `queue`, or None (said loudly) when its server is not there
    /// outside CI; in CI a missing server fails the test.
    async fn open(db: &str, queue: &str, clock: &Clock) -> Option<Client> {
        let config = Config {
            db: db.to_string(),
            queue: queue.to_string(),
            table_prefix: format!("carried{}_{}_", std::process::id(), fastrand::u32(..)),
            redis_prefix: format!("qtask-carried-{}-{}", std::process::id(), fastrand::u32(..)),
            sweeper: false,
            clock: clock.clone(),
            ..Config::default()
        };
        match Client::open(config).await {
            Ok(client) => {
                client.install().await.expect("install");
                Some(client)
            }
            Err(err) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("SKIP: carried finishes on {db} with queue {queue}: {err}");
                None
            }
            Err(err) => panic!("{db} with queue {queue}: {err}"),
        }
    }

    /// A claim that starts while finishes wait for the completer's next write commits
    /// them with itself: a current attempt ends finished and is not claimed again even
    /// though its lease ran out (it was due), a stale one changes nothing, and each
    /// caller hears its own result.
    async fn claim_carries_waiting_finishes(db: &str, queue: &str) {
        let clock = Clock::database();
        let Some(client) = open(db, queue, &clock).await else {
            return;
        };
        let mut ids = Vec::new();
        for i in 0..3 {
            let task = NewTask::new("carried", json!({ "i": i }), Q).timeout(Duration::from_secs(10));
            ids.push(client.create(task).await.expect("create").id);
        }
        client.sweep_once().await.expect("sweep");
        let first = client.fetch(Q, 2, Duration::from_secs(5)).await.expect("fetch");
        assert_eq!(first.len(), 2, "{db} {queue}");
        let (a, b) = (&first[0], &first[1]);
        // Both leases run out: both tasks are due (offered again) at once.
        clock.advance(Duration::from_secs(11));
        client.sweep_once().await.expect("sweep");

        let waiting = client.store().waiting_finishes();
        let (current, current_result) = oneshot::channel();
        waiting.push(a.fence(), current);
        let (stale, stale_result) = oneshot::channel();
        let newer = Fence {
            task_id: b.task_id,
            attempt: b.attempt + 1,
        };
        waiting.push(newer, stale);

        let mut claimed: Vec<i64> = Vec::new();
        while claimed.len() < 2 {
            let batch = client.fetch(Q, 10, Duration::from_secs(5)).await.expect("fetch");
            assert!(!batch.is_empty(), "{db} {queue}: claimed only {claimed:?}");
            claimed.extend(batch.iter().map(|m| m.task_id));
        }
        claimed.sort_unstable();
        let mut expected = vec![b.task_id, ids[2]];
        expected.sort_unstable();
        assert_eq!(
            claimed, expected,
            "{db} {queue}: the finished task is not claimed"
        );
        assert!(
            waiting.take(10).is_empty(),
            "{db} {queue}: the claim took them all"
        );
        assert_eq!(
            current_result.await.expect("answered").expect("written"),
            Fenced::Current(())
        );
        assert_eq!(
            stale_result.await.expect("answered").expect("written"),
            Fenced::Stale
        );
        assert_eq!(client.get(a.task_id).await.expect("get").status, Status::Finished);
        let row = client.get(b.task_id).await.expect("get");
        assert_eq!((row.status, row.count), (Status::Processing, 2), "{db} {queue}");
        drop_everything(&client).await;
    }

    async fn drop_everything(client: &Client) {
        client.store().drop_tables().await.expect("drop");
        client.close().await;
        let config = client.config();
        if config.queue != "db" {
            let redis = redis::Client::open(config.queue.as_str()).expect("redis url");
            let mut conn = redis.get_multiplexed_async_connection().await.expect("redis");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", config.redis_prefix))
                .query_async(&mut conn)
                .await
                .expect("keys");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .expect("del");
            }
        }
    }

    #[tokio::test]
    async fn a_claim_carries_waiting_finishes_on_postgres() {
        let pg = env_or("QTASK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test");
        claim_carries_waiting_finishes(&pg, "db").await;
        let redis = env_or("QTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/");
        claim_carries_waiting_finishes(&pg, &redis).await;
    }
}
