//! The operators' functions: list, retry, cancel by filter, pause, counts. Filters are
//! JSON objects read by `qtask_core::admin::TaskFilter::from_json`.

use std::ffi::c_char;

use qtask_core::admin::TaskFilter;
use qtask_core::Error;

use crate::client::{client, qtask_client};
use crate::error::qtask_result;
use crate::ffi::{json_out, opt_str_arg, str_arg, try_ref};
use crate::panic::ffi_boundary;

/// A filter argument: NULL or "" matches every task of the namespace.
unsafe fn filter_arg(filter_json: *const c_char) -> Result<TaskFilter, Error> {
    let text = unsafe { opt_str_arg(filter_json, "filter_json") }?;
    TaskFilter::from_json(text.unwrap_or(""))
}

/// Tasks matching `filter_json` (borrowed, may be NULL: every task; keys `status`
/// as "waiting"/"processing"/"finished"/"failed"/"cancelled", `queue`, `name`,
/// `created_from`, `created_until` in Unix milliseconds), newest first, at most
/// `limit` (1 to 1000), with ids below `before_id` (0: from the newest). As a JSON
/// object `{"tasks": [task…], "next_before_id": id or null}` (tasks as `qtask_get`
/// gives them). `*out_page_json` (not NULL) receives a new string the caller owns
/// and must free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_list_tasks(
    client: *mut qtask_client,
    filter_json: *const c_char,
    before_id: i64,
    limit: u32,
    out_page_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_page_json, "out_page_json");
        *out = std::ptr::null_mut();
        let filter = unsafe { filter_arg(filter_json) }?;
        let before = (before_id > 0).then_some(before_id);
        let page = self::client(client)?.list_tasks(&filter, before, limit)?;
        *out = json_out(&page)?;
        Ok(())
    })
}

/// Makes a failed or cancelled task wait again, due now, with a fresh attempt
/// budget; its last error is kept. A live or finished task is
/// `QTASK_RESULT_INVALID_STATE`.
#[no_mangle]
pub extern "C" fn qtask_retry(client: *mut qtask_client, task_id: i64) -> qtask_result {
    ffi_boundary!(result: {
        self::client(client)?.retry(task_id)
    })
}

/// Retries every failed or cancelled task matching `filter_json` (borrowed, may be
/// NULL); `*out_count` (not NULL) receives how many.
#[no_mangle]
pub extern "C" fn qtask_retry_matching(
    client: *mut qtask_client,
    filter_json: *const c_char,
    out_count: *mut u64,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_count, "out_count");
        *out = 0;
        let filter = unsafe { filter_arg(filter_json) }?;
        *out = self::client(client)?.retry_matching(&filter)?;
        Ok(())
    })
}

/// Cancels every waiting or processing task matching `filter_json` (borrowed, may
/// be NULL); `*out_count` (not NULL) receives how many.
#[no_mangle]
pub extern "C" fn qtask_cancel_matching(
    client: *mut qtask_client,
    filter_json: *const c_char,
    out_count: *mut u64,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_count, "out_count");
        *out = 0;
        let filter = unsafe { filter_arg(filter_json) }?;
        *out = self::client(client)?.cancel_matching(&filter)?;
        Ok(())
    })
}

/// Stops dispatching `queue` (borrowed, copied, not NULL) in the client's namespace
/// until `qtask_resume_queue`; every worker notices within one sweep interval.
#[no_mangle]
pub extern "C" fn qtask_pause_queue(client: *mut qtask_client, queue: *const c_char) -> qtask_result {
    ffi_boundary!(result: {
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        client.pause_queue(queue)
    })
}

/// Dispatches a paused `queue` (borrowed, copied, not NULL) again.
#[no_mangle]
pub extern "C" fn qtask_resume_queue(client: *mut qtask_client, queue: *const c_char) -> qtask_result {
    ffi_boundary!(result: {
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        client.resume_queue(queue)
    })
}

/// Every queue of the namespace as a JSON array of objects (`queue`, `paused`,
/// `limits` as `{"max_processing": n|null, "max_per_second": x|null}`, `waiting`,
/// `processing`, `finished`, `failed`, `cancelled`). `*out_queues_json`
/// (not NULL) receives a new string the caller owns and must free with
/// `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_queues(client: *mut qtask_client, out_queues_json: *mut *mut c_char) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_queues_json, "out_queues_json");
        *out = std::ptr::null_mut();
        let queues = self::client(client)?.queues()?;
        *out = json_out(&queues)?;
        Ok(())
    })
}

/// Tasks finished and failed per minute over the last `minutes` (1 to 1440),
/// oldest first, as a JSON array of objects (`minute_at` in Unix milliseconds,
/// `finished`, `failed`). `*out_rates_json` (not NULL) receives a new string the
/// caller owns and must free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_rates(
    client: *mut qtask_client,
    minutes: u32,
    out_rates_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_rates_json, "out_rates_json");
        *out = std::ptr::null_mut();
        let rates = self::client(client)?.rates(minutes)?;
        *out = json_out(&rates)?;
        Ok(())
    })
}

/// Sets the limits of `queue` (borrowed, copied, not NULL) across every worker of every
/// process: `limits_json` (borrowed; NULL or `{}` removes them) is a JSON object with
/// `max_processing` (tasks processing at once, at least 1) and `max_per_second`
/// (claims per second, above 0; fractions allowed), each optional. Enforced when tasks
/// are claimed; other processes notice within one sweep interval.
#[no_mangle]
pub extern "C" fn qtask_set_queue_limits(
    client: *mut qtask_client,
    queue: *const c_char,
    limits_json: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let client = self::client(client)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        let limits = unsafe { opt_str_arg(limits_json, "limits_json") }?;
        let limits = qtask_core::QueueLimits::from_json(limits.unwrap_or(""))?;
        client.set_queue_limits(queue, limits)
    })
}
