//! Periodic tasks: declare, remove and list schedules. Options are a JSON object read
//! by `qtask_core::Schedule::from_json`.

use std::ffi::c_char;

use qtask_core::Schedule;

use crate::client::{client, qtask_client, reset};
use crate::error::qtask_result;
use crate::ffi::{json_out, str_arg, try_ref};
use crate::panic::ffi_boundary;

/// Declares a periodic task, or replaces the one with the same `name` (its next
/// tick is kept while its timing is unchanged). Each tick makes one task named
/// `name` with `input_json` (a JSON object) as its input, however many processes
/// sweep. `options_json` is a JSON object with `queue` and exactly one of `cron`
/// (5 fields, 6 with seconds first, or "@hourly"…, read in `time_zone`, an IANA
/// name, default "UTC") and `every` (seconds, at least 1); optional `missed`
/// ("run_once": one task for ticks missed while nothing ran, the default; "skip":
/// none), `timeout`, `deadline`, `delete_deadline` (seconds), `max_count` and
/// `priority` (of each task it makes: claims take higher priority first; default 0,
/// from -1000 to 1000).
/// A bad expression, zone or interval is `QTASK_RESULT_INVALID_ARGUMENT` and
/// writes nothing. All strings are borrowed and must be valid UTF-8.
///
/// `out_schedule_json` may be NULL; otherwise it receives the stored schedule
/// as a JSON object (as in `qtask_schedules`), a new string the caller owns and
/// must free with `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_schedule(
    client: *mut qtask_client,
    name: *const c_char,
    input_json: *const c_char,
    options_json: *const c_char,
    out_schedule_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_schedule_json, std::ptr::null_mut());
        let name = unsafe { str_arg(name, "name") }?;
        let input = unsafe { str_arg(input_json, "input_json") }?;
        let options = unsafe { str_arg(options_json, "options_json") }?;
        let client = self::client(client)?;
        let schedule = Schedule::from_json(name, input, options, client.config().max_payload_bytes)?;
        let info = client.schedule(schedule)?;
        if !out_schedule_json.is_null() {
            reset(out_schedule_json, json_out(&info)?);
        }
        Ok(())
    })
}

/// Removes the schedule `name` (borrowed); tasks it already made stay.
/// `out_existed` may be NULL; otherwise it receives whether the schedule existed.
#[no_mangle]
pub extern "C" fn qtask_unschedule(
    client: *mut qtask_client,
    name: *const c_char,
    out_existed: *mut bool,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_existed, false);
        let name = unsafe { str_arg(name, "name") }?;
        let existed = self::client(client)?.unschedule(name)?;
        reset(out_existed, existed);
        Ok(())
    })
}

/// Every schedule of the client's namespace, by name, as a JSON array of objects:
/// `name`, `queue`, `input`, `cron` and `time_zone` (null for intervals),
/// `every_ms` (null for cron), `missed`, `timeout_ms`, `deadline_ms`,
/// `delete_after_ms`, `max_count`, `priority`, `next_at`, `last_tick_at`, `last_task_id`,
/// `created_at`, `updated_at` (times in Unix milliseconds). `*out_schedules_json`
/// (not NULL) receives a new string the caller owns and must free with
/// `qtask_string_free`, or NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_schedules(
    client: *mut qtask_client,
    out_schedules_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_schedules_json, "out_schedules_json");
        *out = std::ptr::null_mut();
        let schedules = self::client(client)?.schedules()?;
        *out = json_out(&schedules)?;
        Ok(())
    })
}
