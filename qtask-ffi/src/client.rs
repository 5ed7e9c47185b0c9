//! The client functions: each checks and converts its arguments, calls
//! `qtask_core::blocking::Client`, and converts the result.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use qtask_core::blocking::{Client, Invoke};
use std::time::Duration;

use qtask_core::{Config, Error, NewTask, ParamStyle, TaskArgs};

use crate::error::qtask_result;
use crate::ffi::{json_out, opt_str_arg, seconds_arg, str_arg, try_ref};
use crate::handle::{Registry, Space};
use crate::panic::ffi_boundary;

/// A client: a connection pool to one namespace of a task table, its queue, and
/// (unless the config turns it off) a background sweeper. Opaque; corresponds
/// to an `Arc<qtask_core::blocking::Client>` held in qtask's registry of live
/// handles. Thread-safe: one handle may be used from many threads at once.
/// Created by `qtask_open`, released by `qtask_close`.
#[allow(non_camel_case_types)]
pub struct qtask_client {
    _private: [u8; 0],
}

/// The dispatch of a task written by `qtask_create_deferred`, to run after the
/// caller's own transaction commits (the seed's `invoke`). Opaque; corresponds
/// to a `Box<qtask_core::blocking::Invoke>` in qtask's registry. Single use:
/// `qtask_invoke_run` or `qtask_invoke_free` releases it. May be passed to
/// another thread, but not used from two threads at once.
#[allow(non_camel_case_types)]
pub struct qtask_invoke {
    _private: [u8; 0],
}

static CLIENT_SPACE: Space = Space::new();
static CLIENTS: Registry<Arc<Client>> = Registry::new("client", &CLIENT_SPACE);
static INVOKE_SPACE: Space = Space::new();
static INVOKES: Registry<Invoke> = Registry::new("invoke", &INVOKE_SPACE);

pub(crate) fn client(handle: *const qtask_client) -> Result<Arc<Client>, Error> {
    CLIENTS.get(handle)
}

/// Converts the arguments of a create or delay into a `NewTask` through the one
/// description of a task, `qtask_core::TaskArgs`. The input text is measured against
/// the client's `max_payload_bytes` before it is parsed.
unsafe fn new_task(
    client: &Client,
    name: *const c_char,
    input_json: *const c_char,
    timeout_s: f64,
    queue: *const c_char,
    options_json: *const c_char,
) -> Result<NewTask, Error> {
    let name = unsafe { str_arg(name, "name") }?;
    let input_json = unsafe { str_arg(input_json, "input_json") }?;
    let input = qtask_core::input::parse_input(input_json, client.config().max_payload_bytes)?;
    let queue = unsafe { str_arg(queue, "queue") }?;
    let options = unsafe { opt_str_arg(options_json, "options_json") }?;
    let args = TaskArgs::from_parts(name, input, queue, Some(timeout_s), options)?;
    Ok(args.into_task()?.0)
}

/// Parses a whole task (`qtask_core::TaskArgs` as JSON): the task and its delay.
unsafe fn task_from_json(client: &Client, task_json: *const c_char) -> Result<(NewTask, Duration), Error> {
    let text = unsafe { str_arg(task_json, "task_json") }?;
    TaskArgs::from_json(text, client.config().max_payload_bytes)?.into_task()
}

/// Writes 0 / NULL to an out-parameter first, so it is defined when the call fails.
pub(crate) fn reset<T>(out: *mut T, value: T) {
    if let Some(out) = unsafe { out.as_mut() } {
        *out = value;
    }
}

/// The library's version ("0.1.0"). Static: never NULL, never to be freed. Thread-safe.
#[no_mangle]
pub extern "C" fn qtask_version() -> *const c_char {
    ffi_boundary!({ concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast() })
}

/// Opens a client. `config_json` is NULL, "" or "{}" for the defaults (SQLite
/// `qtask.db` in the working directory and the `db` queue, overridden by
/// `QTASK_DB_URL`, `QTASK_QUEUE_URL`, `QTASK_NAMESPACE`), or a JSON object with
/// the Python client's keyword names: `db`, `queue`, `namespace`,
/// `table_prefix`, `redis_prefix`, `sweeper` (bool), `sweep_interval`,
/// `batch_size`, `max_payload_bytes`, `retry_backoff`, `retry_backoff_max`,
/// `max_connections`; durations in seconds. An unknown key is
/// `QTASK_RESULT_INVALID_ARGUMENT`; an unreachable database is
/// `QTASK_RESULT_DATABASE`.
///
/// `config_json` is borrowed for the call. On success `*out` is a new handle
/// that the caller owns and must release with `qtask_close`; on failure `*out`
/// is NULL. Does not create tables: call `qtask_install` once.
#[no_mangle]
pub extern "C" fn qtask_open(config_json: *const c_char, out: *mut *mut qtask_client) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out, "out");
        *out = std::ptr::null_mut();
        let text = unsafe { opt_str_arg(config_json, "config_json") }?.unwrap_or("");
        let config = Config::from_json(text)?;
        let client = Client::open(config)?;
        *out = CLIENTS.insert(Arc::new(client))?;
        Ok(())
    })
}

/// Stops the client's sweeper, closes its pool, and releases the handle. Calls
/// running on other threads at that moment finish or fail with
/// `QTASK_RESULT_CLOSED`; later calls with this handle return
/// `QTASK_RESULT_CLOSED`. NULL is a no-op, and so is closing twice (the second
/// call only sets the last error). Blocks until the sweeper has stopped.
#[no_mangle]
pub extern "C" fn qtask_close(client: *mut qtask_client) {
    ffi_boundary!({
        if client.is_null() {
            return;
        }
        match CLIENTS.take(client) {
            Ok(client) => client.close(),
            Err(err) => crate::error::set_last_error(&err),
        }
    })
}

/// Creates or migrates qtask's tables. Idempotent; never drops data.
#[no_mangle]
pub extern "C" fn qtask_install(client: *mut qtask_client) -> qtask_result {
    ffi_boundary!(result: {
        self::client(client)?.install()
    })
}

/// Writes a task and dispatches it now (the seed's `Create` followed by its `invoke`).
///
/// `name` (UTF-8, not empty), `input_json` (a JSON object: the message a worker
/// pops is this object plus `task_id` and `attempt`), `queue` and
/// `options_json` are borrowed for the call and copied. `timeout_s` is the lease
/// of one dispatch in seconds (fractions allowed, at least 0.001). `options_json`
/// may be NULL, or a JSON object with `deadline` and `delete_deadline` (seconds),
/// `max_count`, `priority` (claims take higher priority first, then the earliest
/// due; default 0, from -1000 to 1000), `time_limit` (seconds one attempt may run,
/// instead of the worker's limit) and `order_no` (any other key is
/// `QTASK_RESULT_INVALID_ARGUMENT`); if a live task of this queue already has this
/// `order_no`, its id is returned and nothing is written. `out_id` may be NULL; otherwise it
/// receives the task id (0 on failure). Bad input writes nothing. If the queue
/// is down the task is still saved and the sweeper dispatches it later.
#[no_mangle]
pub extern "C" fn qtask_create(
    client: *mut qtask_client,
    name: *const c_char,
    input_json: *const c_char,
    timeout_s: f64,
    queue: *const c_char,
    options_json: *const c_char,
    out_id: *mut i64,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_id, 0);
        let client = self::client(client)?;
        let task = unsafe { new_task(&client, name, input_json, timeout_s, queue, options_json) }?;
        let created = client.create(task)?;
        reset(out_id, created.id);
        Ok(())
    })
}

/// Writes a task without dispatching it, for a caller that dispatches after its
/// own transaction commits (the seed's `Create` returning `invoke`). Arguments
/// as for `qtask_create`; `out_invoke` must not be NULL.
///
/// On success `*out_invoke` is a new handle that the caller owns and must
/// release with exactly one of `qtask_invoke_run` (dispatch now) or
/// `qtask_invoke_free` (drop it; the sweeper dispatches the task once its
/// timeout has passed). On failure `*out_invoke` is NULL and `*out_id` 0.
#[no_mangle]
pub extern "C" fn qtask_create_deferred(
    client: *mut qtask_client,
    name: *const c_char,
    input_json: *const c_char,
    timeout_s: f64,
    queue: *const c_char,
    options_json: *const c_char,
    out_id: *mut i64,
    out_invoke: *mut *mut qtask_invoke,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_id, 0);
        let out_invoke = try_ref!(mut out_invoke, "out_invoke");
        *out_invoke = std::ptr::null_mut();
        let client = self::client(client)?;
        let task = unsafe { new_task(&client, name, input_json, timeout_s, queue, options_json) }?;
        let (created, invoke) = client.create_deferred(task)?;
        *out_invoke = INVOKES.insert(invoke)?;
        reset(out_id, created.id);
        Ok(())
    })
}

/// Dispatches the task of a `qtask_create_deferred` and releases `invoke`
/// (also when it fails: never call it twice or free it afterwards; a second call
/// returns `QTASK_RESULT_CLOSED`). `*out_dispatched` (may be NULL) is true when
/// the message is on the queue now, false when the queue was down and the
/// sweeper will dispatch it.
#[no_mangle]
pub extern "C" fn qtask_invoke_run(invoke: *mut qtask_invoke, out_dispatched: *mut bool) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_dispatched, false);
        let invoke = INVOKES.take(invoke)?;
        let dispatched = invoke.invoke()?;
        reset(out_dispatched, dispatched);
        Ok(())
    })
}

/// Releases `invoke` without dispatching (the sweeper dispatches the task once
/// its timeout has passed). NULL is a no-op; so is a handle already run or freed.
#[no_mangle]
pub extern "C" fn qtask_invoke_free(invoke: *mut qtask_invoke) {
    ffi_boundary!({
        if !invoke.is_null() {
            if let Err(err) = INVOKES.take(invoke) {
                crate::error::set_last_error(&err);
            }
        }
    })
}

/// Writes a task that the sweeper dispatches `delay_s` seconds from now (the
/// seed's `Delay`). `delay_s` must be non-negative (fractions allowed); the other arguments are as
/// for `qtask_create`.
#[no_mangle]
pub extern "C" fn qtask_delay(
    client: *mut qtask_client,
    name: *const c_char,
    input_json: *const c_char,
    delay_s: f64,
    timeout_s: f64,
    queue: *const c_char,
    options_json: *const c_char,
    out_id: *mut i64,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_id, 0);
        let client = self::client(client)?;
        let delay = seconds_arg(delay_s, "delay")?;
        let task = unsafe { new_task(&client, name, input_json, timeout_s, queue, options_json) }?;
        let created = client.delay(task, delay)?;
        reset(out_id, created.id);
        Ok(())
    })
}

/// Writes a task described by `task_json` (borrowed): a JSON object with `name`,
/// `input` (a JSON object), `queue`, and optionally `timeout`, `deadline`,
/// `delete_deadline`, `delay` (seconds, fractions allowed), `max_count`,
/// `priority`, `order_no` and `time_limit` (seconds one attempt may run, instead of
/// the worker's limit); any other key is `QTASK_RESULT_INVALID_ARGUMENT`. Without a delay
/// the task is dispatched now, with one the sweeper dispatches it when due.
/// `*out_created_json` (not NULL) receives a new string the caller owns and must
/// free with `qtask_string_free`: `{"id": …, "existing": bool, "dispatched":
/// bool}` (`existing`: a live task of the queue held the `order_no`, its id is
/// returned; `dispatched` false: delayed, existing, or the queue was down and the
/// sweeper dispatches it). NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_create_task(
    client: *mut qtask_client,
    task_json: *const c_char,
    out_created_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_created_json, "out_created_json");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let (task, delay) = unsafe { task_from_json(&client, task_json) }?;
        let created = if delay.is_zero() {
            client.create(task)?
        } else {
            client.delay(task, delay)?
        };
        *out = json_out(&created)?;
        Ok(())
    })
}

/// Renders the insert of the task `task_json` (as for `qtask_create_task`) for the
/// caller to run on its own database connection, inside its own transaction: the
/// task exists, and workers see it, only once that transaction commits; a
/// rollback leaves nothing. Nothing is written by this call. `param_style` is
/// NULL for the database's usual placeholders (`$1…` for PostgreSQL as libpq
/// takes them, `?` for SQLite and MySQL), or "qmark", "dollar", "format" (`%s`)
/// or "numeric" (`:1`).
///
/// `*out_statement_json` (not NULL) receives a new string the caller owns and
/// must free with `qtask_string_free` (NULL on failure):
/// `{"insert": {"sql": "…", "params": […]}, "returns_id": bool,
///   "existing": {"sql": "…", "params": […]} or null}`. Params are JSON strings,
/// integers and nulls, in placeholder order. Run `insert`: when `returns_id`, it
/// returns one row holding the new id, or no row when a live task of the queue
/// already holds the `order_no`; otherwise (MySQL) one affected row means inserted
/// (the id is `LAST_INSERT_ID()`), none means held. When held, run `existing` in
/// the same transaction: its one row is the live task's id. No row: that task just
/// ended; run both again. The task is written waiting and due after its delay: a
/// `db`-queue worker claims it after the commit, and the sweeper offers it to a
/// Redis queue within a sweep interval, or at once with `qtask_dispatch`.
#[no_mangle]
pub extern "C" fn qtask_create_statement(
    client: *mut qtask_client,
    task_json: *const c_char,
    param_style: *const c_char,
    out_statement_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_statement_json, "out_statement_json");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let style = unsafe { opt_str_arg(param_style, "param_style") }?
            .map(ParamStyle::from_name)
            .transpose()?;
        let (task, delay) = unsafe { task_from_json(&client, task_json) }?;
        let statement = client.caller_insert(&task, delay, style)?;
        *out = json_out(&statement)?;
        Ok(())
    })
}

/// After the caller's transaction with a `qtask_create_statement` insert committed:
/// offers the task to its Redis queue now instead of at the next sweep.
/// `*out_dispatched` (may be NULL) is true when the message is on the queue now or
/// the queue is `db`; false when the task was not waiting and due (already
/// offered or claimed, ended, delayed, not committed) or Redis was down.
#[no_mangle]
pub extern "C" fn qtask_dispatch(
    client: *mut qtask_client,
    task_id: i64,
    out_dispatched: *mut bool,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_dispatched, false);
        let dispatched = self::client(client)?.dispatch(task_id)?;
        reset(out_dispatched, dispatched);
        Ok(())
    })
}

/// Waits up to `wait_s` seconds (0: do not wait; fractions allowed) for a message of `queue`
/// (borrowed). On success `*out_message_json` is NULL when there was none, or a
/// new string the caller owns and must free with `qtask_string_free`: the
/// task's input object plus `task_id` and `attempt` (the dispatch number).
/// Call `qtask_processing` before working on it.
#[no_mangle]
pub extern "C" fn qtask_pop(
    client: *mut qtask_client,
    queue: *const c_char,
    wait_s: f64,
    out_message_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_message_json, "out_message_json");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        let wait = seconds_arg(wait_s, "wait_s")?;
        if let Some(message) = client.pop(queue, wait)? {
            *out = json_out(&message.to_json())?;
        }
        Ok(())
    })
}

/// Marks the task running and extends its lease by its timeout (call it again
/// during a long job). `*out_may_run` (not NULL) is false when the caller must
/// skip the task: finished, failed, cancelled, past its deadline, or gone.
#[no_mangle]
pub extern "C" fn qtask_processing(
    client: *mut qtask_client,
    task_id: i64,
    out_may_run: *mut bool,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_may_run, "out_may_run");
        *out = false;
        *out = self::client(client)?.processing(task_id)?;
        Ok(())
    })
}

/// Marks the task finished: never dispatched again. Finishing twice is fine;
/// finishing a cancelled task is `QTASK_RESULT_INVALID_STATE`.
#[no_mangle]
pub extern "C" fn qtask_finish(client: *mut qtask_client, task_id: i64) -> qtask_result {
    ffi_boundary!(result: {
        self::client(client)?.finish(task_id)
    })
}

/// Records a failed attempt with the reason `error` (borrowed, copied, not NULL):
/// the task is retried after a backoff, or marked failed when its attempts or
/// deadline are spent.
#[no_mangle]
pub extern "C" fn qtask_fail(client: *mut qtask_client, task_id: i64, error: *const c_char) -> qtask_result {
    ffi_boundary!(result: {
        let client = self::client(client)?;
        let error = unsafe { str_arg(error, "error") }?;
        client.fail(task_id, error).map(drop)
    })
}

/// Stops a live task. Cancelling twice is fine; cancelling a finished task is
/// `QTASK_RESULT_INVALID_STATE`.
#[no_mangle]
pub extern "C" fn qtask_cancel(client: *mut qtask_client, task_id: i64) -> qtask_result {
    ffi_boundary!(result: {
        self::client(client)?.cancel(task_id)
    })
}

/// The task's row as a JSON object (`id`, `name`, `queue`, `input`, `order_no`,
/// `status` as "waiting"/"processing"/"finished"/"failed"/"cancelled",
/// `count`, `max_count`, `priority`, `last_error`, and times in Unix milliseconds).
/// `*out_task_json` (not NULL) receives a new string the caller owns and must
/// free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_get(
    client: *mut qtask_client,
    task_id: i64,
    out_task_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_task_json, "out_task_json");
        *out = std::ptr::null_mut();
        let task = self::client(client)?.get(task_id)?;
        *out = json_out(&task)?;
        Ok(())
    })
}

/// The result a finished task kept (the JSON its worker's callback or handler gave;
/// `null` when none), waiting up to `wait_seconds` (>= 0; polled: 10 ms, doubling to
/// 0.5 s) while the task is live. The finished row, and so its result, is kept only
/// until its delete_deadline: create the task with one longer than zero.
/// `QTASK_RESULT_NOT_FOUND` when there is no such task (or it was cleaned up),
/// `QTASK_RESULT_INVALID_STATE` when it failed or was cancelled (the last error says
/// why), `QTASK_RESULT_TIMEOUT` when it is still live after the wait.
/// `*out_result_json` (not NULL) receives a new string the caller owns and must
/// free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_task_result(
    client: *mut qtask_client,
    task_id: i64,
    wait_seconds: f64,
    out_result_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_result_json, "out_result_json");
        *out = std::ptr::null_mut();
        let wait = qtask_core::seconds("wait", wait_seconds)?;
        let value = self::client(client)?.result(task_id, wait)?;
        *out = json_out(&value)?;
        Ok(())
    })
}

/// Task counts of the client's namespace (`waiting`, `processing`, `finished`,
/// `failed`, `cancelled`, `due`, `redispatched_live`) and this client's
/// counters (`dispatched`, `redispatched`, `gave_up`, `deleted`), as a JSON
/// object. `*out_stats_json` (not NULL) receives a new string the caller owns
/// and must free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_stats(client: *mut qtask_client, out_stats_json: *mut *mut c_char) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_stats_json, "out_stats_json");
        *out = std::ptr::null_mut();
        let stats = self::client(client)?.stats()?;
        *out = json_out(&stats)?;
        Ok(())
    })
}

/// Frees a string that qtask handed out (`qtask_pop`, `qtask_get`,
/// `qtask_stats`). NULL is a no-op. Passing any other pointer, or freeing twice,
/// is undefined behaviour. Thread-safe.
#[no_mangle]
pub extern "C" fn qtask_string_free(s: *mut c_char) {
    ffi_boundary!({
        if !s.is_null() {
            drop(unsafe { CString::from_raw(s) });
        }
    })
}
