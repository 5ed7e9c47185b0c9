//! The hot statements, whole, per dialect: rendered once (per clock offset) instead of
//! patched at every call. Where a dialect needs two statements in a transaction
//! (MariaDB has no UPDATE … RETURNING), the pair is spelled out here too.
//!
//! Task states (`status`): 20 waiting, 21 offered (on a Redis queue, waiting for a
//! worker to claim it), 30 processing (an attempt holds a lease), 0 finished,
//! 90 failed, 91 cancelled. Live rows (20, 21, 30) have `next_at`; ended rows do not.

use super::insert::{insert_json_template, insert_template};
use super::Dialect;

/// Live states.
pub(crate) const LIVE: &str = "(20, 21, 30)";
/// Status of an offered task: waiting, and on a queue that carries offers.
pub(crate) const OFFERED: i64 = 21;

/// Columns a claim returns, in this order: then how long ago the task was created
/// (for the create-to-start histogram), the name (a worker routes by it) and the
/// deadline, then the attempt whose lease ran out (below), then the task's own time
/// limit.
pub(crate) const CLAIMED: &str =
    "id, queue, payload, dispatch_count, timeout_ms, trace_context, {now} - created_at, name, deadline_at";

/// How many columns a claim returns: [`CLAIMED`], then `rescued_attempt` and
/// `time_limit_ms`.
pub(crate) const CLAIMED_COLUMNS: usize = 11;

/// `rescued_attempt` as a claim or an offer leaves it: a processing row that is
/// dispatched again lost the lease of its current attempt. Read before the change (in
/// a SET, and in MariaDB's locking select); first in a SET, as MySQL applies
/// assignments in order. A claim whose previous attempt is this one rescued the task.
const LEASE_LOST: &str = "CASE WHEN status = 30 THEN dispatch_count ELSE rescued_attempt END";

/// Rows a claim may take now. Served by the `due` / `queue_due` indexes.
pub(crate) const DUE: &str = "namespace = ? {queue} AND next_at <= {now} \
                              AND dispatch_count < max_count AND deadline_at > {now}";
/// The order in which the `db` queue claims due rows of one queue (index `queue_priority_due`).
pub(crate) const CLAIM_ORDER: &str = "priority DESC, next_at";
/// The next priority level down among one queue's live rows (SQLite's claim walks
/// levels with it). `next_at IS NOT NULL` lets it seek the partial index of live rows.
pub(crate) const NEXT_LEVEL: &str = "namespace = ? AND queue = ? AND priority < ? AND next_at IS NOT NULL";
/// Due rows that may not be attempted again.
pub(crate) const SPENT: &str = "namespace = ? AND next_at <= {now} \
                                AND (deadline_at <= {now} OR dispatch_count >= max_count)";
/// Ended rows whose delete time has passed.
pub(crate) const EXPIRED: &str = "namespace = ? AND delete_at <= {now} AND next_at IS NULL";

/// A claim: one UPDATE … RETURNING, or (MariaDB) a locking SELECT then an UPDATE by id.
#[derive(Clone, Debug)]
pub(crate) enum TwoStep {
    /// One statement that changes the rows and returns them.
    Returning(String),
    /// `select` locks and returns the rows; `update` (with `{ids}`) changes them.
    Locking { select: String, update: String },
}

#[derive(Clone, Debug)]
pub(crate) struct Statements {
    /// Insert one task unless a live one holds its order number; returns the id.
    /// Binds: the task's values (insert.rs).
    pub insert: String,
    /// PostgreSQL: [`Statements::insert`] that also wakes the `db` queue's fetchers
    /// (NOTIFY, sent when the inserting transaction commits). Extra bind: channel.
    pub insert_and_wake: Option<String>,
    /// PostgreSQL: insert many tasks from one JSON array (insert.rs), and the same
    /// that also wakes the fetchers. SQLite and MariaDB render a multi-row `VALUES`
    /// per row count instead.
    pub insert_json: Option<String>,
    pub insert_json_and_wake: Option<String>,
    /// `db` queue: claim up to N due rows of one queue. Binds: namespace, queue, limit.
    pub claim_due: TwoStep,
    /// SQLite: [`Statements::claim_due`] one priority at a time, so that each claim is a
    /// range on `queue_priority_due` (SQLite's planner would otherwise walk the queue's
    /// rows that are not due yet): the highest level below a bound among the queue's
    /// live rows, found in a subquery. Binds: namespace, queue, namespace, queue, bound,
    /// limit.
    pub claim_level: Option<TwoStep>,
    /// SQLite: the highest priority below a bound among the queue's live rows (one
    /// index seek), asked only after a level gave fewer rows than wanted. Binds:
    /// namespace, queue, bound.
    pub next_level: Option<String>,
    /// Redis: mark up to N due rows offered. Binds: namespace, limit. Returns id, queue,
    /// priority and how long each has been due (ms).
    pub offer_due: TwoStep,
    /// Claim offered rows by id (`{ids}`), for this namespace (`{ns}`).
    pub claim_offered: TwoStep,
    /// Renew the lease of attempts (`{ids}`, `{fence}`; bound on SQLite and
    /// PostgreSQL, see below); returns id, timeout_ms.
    pub renew: TwoStep,
    /// Finish attempts (`{ids}`, `{fence}`; bound on SQLite and PostgreSQL, see
    /// below); returns id.
    pub finish: TwoStep,
    /// How `claim_offered`, `renew` and `finish` get their ids and fences.
    pub keys: KeyBinds,
    /// Unfenced renew of whatever attempt runs now (the seed's `processing`). Binds: id, namespace.
    pub processing: String,
    /// PostgreSQL: the claims that carry finishes (carried.rs).
    pub carrying: Option<Carrying>,
}

/// PostgreSQL: a finish and a claim in one statement (two data-modifying CTEs). Its
/// rows are the claimed ones ([`CLAIMED_COLUMNS`] columns), or one row of NULLs when
/// none was, each followed by the finished ids as text (`7,9`). Binds first the
/// finish's three arrays ([`fence_arrays`]), then the claim's.
#[derive(Clone, Debug)]
pub(crate) struct Carrying {
    /// With [`Statements::claim_due`]: then namespace, queue, the finished ids again
    /// (a row whose lease ran out may be due, and one statement may not change a row
    /// twice), limit.
    pub due: String,
    /// With [`Statements::claim_offered`]: then the offered ids. An offered row is
    /// never a processing one, so the two never meet.
    pub offered: String,
}

/// How the statements keyed by task ids (the claim of Redis offers, fenced renew and
/// finish) get their ids and fences: bound, so that the text never changes and each is
/// prepared once, or inlined as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyBinds {
    /// MariaDB: `{ids}` and `{fence}` in the text ([`fill_fences`]).
    Inline,
    /// SQLite: one JSON array bound to the one `?`: ids `[7,9]`, fences
    /// `[[7,2],[9,1]]` ([`fences_json`]), read with `json_each`.
    Json,
    /// PostgreSQL: array literals: ids `{7,9}`; fences as ids, attempts, ids
    /// ([`fence_arrays`]).
    Arrays,
}

impl Statements {
    /// Renders every statement for one dialect, table and clock expression.
    /// `namespace` is already a quoted SQL literal.
    pub fn render(dialect: Dialect, table: &str, now: &str, namespace: &str) -> Statements {
        let fill = |sql: &str| {
            // The namespace goes in last: a `?` inside it is text, not a placeholder.
            let sql = dialect.placeholders(sql.replace("{t}", table).replace("{now}", now));
            sql.replace("{ns}", namespace)
        };
        let claim_set = &format!(
            "rescued_attempt = {LEASE_LOST}, status = 30, dispatch_count = dispatch_count + 1, \
             next_at = {{now}} + timeout_ms, updated_at = {{now}}"
        );
        // What a claim returns: after the change (RETURNING), or before it (locking select).
        let claimed_after = format!("{CLAIMED}, rescued_attempt, time_limit_ms");
        let claimed_before = format!("{CLAIMED}, {LEASE_LOST}, time_limit_ms");
        let due_select = |columns: &str, queue: &str, order: &str| {
            format!(
                "SELECT {columns} FROM {{t}} WHERE {} ORDER BY {order} {} {}",
                DUE.replace("{queue}", queue),
                dialect.limit_bound(),
                dialect.skip_locked()
            )
        };
        let two_step = |set: &str, filter: &str, returning: &str, lock_select: String| {
            if dialect.update_returning() {
                TwoStep::Returning(fill(&format!(
                    "UPDATE {{t}} SET {set} WHERE {filter} RETURNING {returning}"
                )))
            } else {
                TwoStep::Locking {
                    select: fill(&lock_select),
                    update: fill(&format!("UPDATE {{t}} SET {set} WHERE id IN ({{ids}})")),
                }
            }
        };
        // The rows a claim takes, selected (and locked) by a subquery. PostgreSQL: as an
        // array computed once, so that the generic plan of the prepared claim reads them
        // by primary key. As `id IN (…)` its generic plan (the LIMIT a bound value) was a
        // hash join over a scan of the whole table, so PostgreSQL planned every execution
        // afresh instead (about as long as running it).
        let claimed_ids = |select: String| match dialect {
            Dialect::Postgres => format!("id = ANY(ARRAY({select}))"),
            _ => format!("id IN ({select})"),
        };
        let queue_filter = "AND queue = ?";
        let claim_due = two_step(
            claim_set,
            &claimed_ids(due_select("id", queue_filter, CLAIM_ORDER)),
            &claimed_after,
            due_select(&claimed_before, queue_filter, CLAIM_ORDER),
        );
        let (claim_level, next_level) = match dialect {
            Dialect::Sqlite => {
                // The level is found inside the claim (one index seek, run once), so a
                // claim is one trip to SQLite's thread, not two.
                let level_filter = format!(
                    "AND queue = ? AND priority = (SELECT MAX(priority) FROM {{t}} WHERE {NEXT_LEVEL})"
                );
                let level_filter = level_filter.as_str();
                let level = two_step(
                    claim_set,
                    &format!("id IN ({})", due_select("id", level_filter, "next_at")),
                    &claimed_after,
                    due_select(&claimed_before, level_filter, "next_at"),
                );
                (
                    Some(level),
                    Some(fill(&format!(
                        "SELECT MAX(priority) FROM {{t}} WHERE {NEXT_LEVEL}"
                    ))),
                )
            }
            _ => (None, None),
        };
        let offer_set = &format!(
            "rescued_attempt = {LEASE_LOST}, status = 21, next_at = {{now}} + timeout_ms, \
             updated_at = {{now}}"
        );
        // The select reads next_at before the update moves it (the Redis queue scores
        // offers by how long they have been due): two steps in a transaction, or on
        // PostgreSQL one statement whose update (a data-modifying CTE) changes the rows
        // its select locked, one trip and one prepared plan instead of four trips and an
        // update parsed afresh per batch.
        let offer_due = match dialect {
            Dialect::Postgres => TwoStep::Returning(fill(&format!(
                "WITH offered AS ({}), moved AS (UPDATE {{t}} SET {offer_set} \
                 WHERE {}) SELECT id, queue, priority, overdue FROM offered",
                due_select("id, queue, priority, {now} - next_at AS overdue", "", "next_at"),
                claimed_ids("SELECT id FROM offered".to_string())
            ))),
            _ => TwoStep::Locking {
                select: fill(&due_select("id, queue, priority, {now} - next_at", "", "next_at")),
                update: fill(&format!("UPDATE {{t}} SET {offer_set} WHERE id IN ({{ids}})")),
            },
        };
        // Offered rows of this namespace that may still be attempted. Locks taken by id.
        // Statements keyed by ids test the namespace inside a CASE, where no index can
        // serve it: as a plain `namespace = …` it drew PostgreSQL, whose statistics lag a
        // burst of new rows (20,000 rows estimated at 43), to an index that starts with
        // the namespace, and finishing 32 tasks read every row of it: 3 to 12 ms, not 0.3.
        // SQLite takes ids and fences as one bound JSON array, so that the statement's
        // text never changes and it is prepared once; PostgreSQL binds arrays (the
        // fences below); MariaDB inlines them (integers).
        let keys = match dialect {
            Dialect::Sqlite => KeyBinds::Json,
            Dialect::Postgres => KeyBinds::Arrays,
            Dialect::MySql => KeyBinds::Inline,
        };
        let ids_in = match dialect {
            Dialect::Sqlite => "id IN (SELECT value FROM json_each(?))",
            Dialect::Postgres => "id = ANY((SELECT CAST(? AS BIGINT[]))::BIGINT[])",
            Dialect::MySql => "id IN ({ids})",
        };
        let offered = format!(
            "{ids_in} AND status = CASE WHEN namespace = {{ns}} THEN 21 END \
             AND dispatch_count < max_count AND deadline_at > {{now}}"
        );
        let offered = offered.as_str();
        let claim_offered = two_step(
            claim_set,
            offered,
            &claimed_after,
            format!("SELECT {claimed_before} FROM {{t}} WHERE {offered} ORDER BY id FOR UPDATE"),
        );
        // The attempt named by the fence is the latest claimed one and the task is live.
        // PostgreSQL binds the fences as two arrays ([`fence_arrays`]), so that finish and
        // renew are prepared once per connection instead of parsed and planned per batch.
        // Each array is cast in a subquery, which runs once per execution: a bare cast
        // of a bound text would be parsed again for every row once the plan is generic.
        let fenced: &str = if dialect == Dialect::Postgres {
            "id = ANY((SELECT CAST(? AS BIGINT[]))::BIGINT[]) AND status IN (20, 21, 30) \
             AND dispatch_count = CASE WHEN namespace = {ns} THEN \
             (SELECT CAST(? AS BIGINT[]))[array_position((SELECT CAST(? AS BIGINT[])), id)] END"
        } else {
            "id IN ({ids}) AND status IN (20, 21, 30) \
             AND dispatch_count = CASE WHEN namespace = {ns} THEN {fence} END"
        };
        let renew_set = "status = 30, next_at = {now} + timeout_ms, updated_at = {now}";
        let renew = two_step(
            renew_set,
            &fenced.replace("(20, 21, 30)", "(21, 30)"),
            "id, timeout_ms",
            format!(
                "SELECT id, timeout_ms FROM {{t}} WHERE {} ORDER BY id FOR UPDATE",
                fenced.replace("(20, 21, 30)", "(21, 30)")
            ),
        );
        let finish_set = "status = 0, live_key = NULL, next_at = NULL, \
                          delete_at = {now} + delete_after_ms, updated_at = {now}";
        let finish = two_step(
            finish_set,
            fenced,
            "id",
            format!("SELECT id FROM {{t}} WHERE {fenced} ORDER BY id FOR UPDATE"),
        );
        let (renew, finish) = match keys == KeyBinds::Json {
            true => (
                json_fenced(&fill, renew_set, "(21, 30)", "id, timeout_ms"),
                json_fenced(&fill, finish_set, "(20, 21, 30)", "id"),
            ),
            false => (renew, finish),
        };
        let processing = fill(
            "UPDATE {t} SET next_at = {now} + timeout_ms, updated_at = {now} \
             WHERE id = ? AND namespace = ? AND status = 30 AND deadline_at > {now}",
        );
        let carrying = (dialect == Dialect::Postgres).then(|| {
            let finished = format!("finished AS (UPDATE {{t}} SET {finish_set} WHERE {fenced} RETURNING id)");
            let not_finished = "AND queue = ? AND id <> ALL((SELECT CAST(? AS BIGINT[]))::BIGINT[])";
            let due = due_select("id", not_finished, CLAIM_ORDER);
            let claimed = |filter: &str| {
                format!(
                    "WITH {finished}, claimed AS (UPDATE {{t}} SET {claim_set} WHERE {filter} \
                     RETURNING {claimed_after}) \
                     SELECT claimed.*, (SELECT string_agg(CAST(id AS TEXT), ',') FROM finished) \
                     FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
                )
            };
            Carrying {
                due: fill(&claimed(&claimed_ids(due))),
                offered: fill(&claimed(offered)),
            }
        });
        let insert = fill(&insert_template(dialect, false));
        let postgres = dialect == Dialect::Postgres;
        let insert_and_wake = postgres.then(|| fill(&insert_template(dialect, true)));
        let insert_json = postgres.then(|| fill(&insert_json_template(false)));
        let insert_json_and_wake = postgres.then(|| fill(&insert_json_template(true)));
        Statements {
            insert,
            insert_and_wake,
            insert_json,
            insert_json_and_wake,
            claim_due,
            claim_level,
            next_level,
            offer_due,
            claim_offered,
            renew,
            finish,
            keys,
            processing,
            carrying,
        }
    }
}

/// SQLite: a fenced update whose fences come as one bound JSON array of
/// `[task id, attempt]` pairs, joined to the rows by primary key.
fn json_fenced(fill: &dyn Fn(&str) -> String, set: &str, live: &str, returning: &str) -> TwoStep {
    TwoStep::Returning(fill(&format!(
        "UPDATE {{t}} SET {set} FROM (SELECT json_extract(value, '$[0]') AS fence_id, \
         json_extract(value, '$[1]') AS fence_attempt FROM json_each(?)) \
         WHERE id = fence_id AND status IN {live} \
         AND dispatch_count = CASE WHEN namespace = {{ns}} THEN fence_attempt END \
         RETURNING {returning}"
    )))
}

/// `[[id, attempt], …]`: the fences of a batch as [`KeyBinds::Json`] binds them.
pub(crate) fn fences_json(fences: &[(i64, i64)]) -> String {
    let pairs: Vec<String> = fences
        .iter()
        .map(|(id, attempt)| format!("[{id},{attempt}]"))
        .collect();
    format!("[{}]", pairs.join(","))
}

/// `{ids}` and `{fence}` for a batch of (task id, attempt): an id list and a CASE that
/// maps each id to its attempt. Integers only, so the text is safe to inline.
pub(crate) fn fill_fences(sql: &str, fences: &[(i64, i64)]) -> String {
    let ids = id_list(fences.iter().map(|f| f.0));
    let mut case = String::from("CASE id");
    for (id, attempt) in fences {
        case.push_str(&format!(" WHEN {id} THEN {attempt}"));
    }
    case.push_str(" END");
    sql.replace("{ids}", &ids).replace("{fence}", &case)
}

/// The binds of a fenced batch on PostgreSQL, in order: the ids, the attempts, the ids
/// again, each an array literal (`{7,9}`) that the statement casts to `BIGINT[]`.
/// The attempt of a row is the one at its id's position.
pub(crate) fn fence_arrays(fences: &[(i64, i64)]) -> [String; 3] {
    let ids = format!("{{{}}}", id_list(fences.iter().map(|f| f.0)));
    let attempts = format!("{{{}}}", id_list(fences.iter().map(|f| f.1)));
    [ids.clone(), attempts, ids]
}

/// A comma-separated list of integers.
pub(crate) fn id_list(ids: impl IntoIterator<Item = i64>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_render_as_integers_only() {
        let sql = fill_fences("id IN ({ids}) AND dispatch_count = {fence}", &[(7, 2), (9, 1)]);
        assert_eq!(
            sql,
            "id IN (7,9) AND dispatch_count = CASE id WHEN 7 THEN 2 WHEN 9 THEN 1 END"
        );
    }

    #[test]
    fn postgres_binds_fences_as_arrays() {
        assert_eq!(fence_arrays(&[(7, 2), (9, 1)]), ["{7,9}", "{2,1}", "{7,9}"]);
        let pg = Statements::render(Dialect::Postgres, "t", "NOW_MS", "'default'");
        match pg.finish {
            TwoStep::Returning(sql) => {
                assert!(
                    sql.contains("(SELECT CAST($1 AS BIGINT[]))") && sql.contains("$3"),
                    "{sql}"
                );
                assert!(!sql.contains("{ids}") && !sql.contains("{fence}"), "{sql}");
            }
            other => panic!("{other:?}"),
        }
        match pg.claim_offered {
            TwoStep::Returning(sql) => {
                assert!(
                    sql.contains("(SELECT CAST($1 AS BIGINT[]))") && !sql.contains("$2"),
                    "{sql}"
                );
                assert!(!sql.contains("{ids}"), "{sql}");
            }
            other => panic!("{other:?}"),
        }
        let lite = Statements::render(Dialect::Sqlite, "t", "NOW_MS", "'default'");
        assert_eq!(lite.keys, KeyBinds::Json);
    }

    #[test]
    fn every_dialect_renders_its_own_claim() {
        let pg = Statements::render(Dialect::Postgres, "t", "NOW_MS", "'default'");
        match pg.claim_due {
            TwoStep::Returning(sql) => {
                assert!(
                    sql.contains("FOR UPDATE SKIP LOCKED") && sql.contains("$3"),
                    "{sql}"
                )
            }
            other => panic!("{other:?}"),
        }
        let my = Statements::render(Dialect::MySql, "t", "NOW_MS", "'default'");
        assert!(matches!(my.claim_due, TwoStep::Locking { .. }));
        assert!(!my.insert.contains("RETURNING"));
    }
}
