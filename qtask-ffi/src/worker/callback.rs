//! The callback API of a worker (`qtask_worker_new`): the callback's type, the
//! `qtask_outcome` it fills in, and the calls it makes on it.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use qtask_core::{Message, Outcome, TimeUp};

use super::convert::{message_text, outcome_of};
use crate::error::qtask_result;
use crate::ffi::{invalid, str_arg, try_ref};
use crate::panic::ffi_boundary;

/// What a callback adds to the code it returns: a text (`qtask_outcome_set_error`),
/// a delay (`qtask_outcome_set_delay`), a result (`qtask_outcome_set_result`); and
/// whether its time limit passed (`qtask_outcome_time_up`). Opaque; owned by qtask
/// and valid only during the callback that received it.
#[allow(non_camel_case_types)]
pub struct qtask_outcome {
    error: Option<String>,
    delay: Option<Duration>,
    result: Option<serde_json::Value>,
    time_up: TimeUp,
}

/// The handler of a worker. `message_json` is the task's input object plus
/// `task_id` and `attempt` (borrowed: valid until the callback returns; copy it
/// to keep it). It returns a `qtask_outcome_code` (0 finishes the task) and may
/// set a text, delay or result on `outcome` first.
///
/// Called on threads the worker starts for its callbacks (up to the worker's
/// `concurrency`, started as needed and kept until `qtask_worker_run` returns),
/// never on the thread inside `qtask_worker_run`; so it and `user_data` must be
/// safe to use from several threads at once. It may call any `qtask_*` function
/// on other handles (a client, even the worker's own, another worker) and
/// `qtask_worker_stop` on its own worker, but not `qtask_worker_free` on its own
/// worker. It must return normally: no longjmp or C++ exception out of it.
///
/// With a time limit (`qtask_worker_set_time_limit`), a long callback should poll
/// `qtask_outcome_time_up(outcome)` and return soon once it is true: the attempt has
/// then already failed, and what the callback returns is ignored. A callback that
/// never looks keeps its slot (one of `concurrency`) until it returns.
#[allow(non_camel_case_types)]
pub type qtask_worker_callback = Option<
    unsafe extern "C" fn(
        message_json: *const c_char,
        outcome: *mut qtask_outcome,
        user_data: *mut c_void,
    ) -> i32,
>;

/// The callback and its `user_data`, which the header makes the caller promise
/// are usable from the engine's threads.
#[derive(Clone, Copy)]
pub(crate) struct Callback {
    pub(super) function: unsafe extern "C" fn(*const c_char, *mut qtask_outcome, *mut c_void) -> i32,
    pub(super) user_data: *mut c_void,
}

unsafe impl Send for Callback {}
unsafe impl Sync for Callback {}

impl Callback {
    pub(crate) fn call(&self, message: Message, time_up: &TimeUp) -> Result<Outcome, String> {
        let json = message_text(&message).map_err(|e| format!("message: {e}"))?;
        let mut outcome = qtask_outcome {
            error: None,
            delay: None,
            result: None,
            time_up: time_up.clone(),
        };
        let code = unsafe { (self.function)(json.as_ptr(), &mut outcome, self.user_data) };
        Ok(outcome_of(
            code,
            outcome.error,
            outcome.delay,
            outcome.result,
            "callback",
        ))
    }
}

/// Called from a worker callback: true once the worker's time limit for this
/// attempt has passed (then return soon; the attempt has already failed). False
/// without a time limit, and for NULL.
#[no_mangle]
pub extern "C" fn qtask_outcome_time_up(outcome: *const qtask_outcome) -> bool {
    ffi_boundary!({
        match unsafe { outcome.as_ref() } {
            Some(outcome) => outcome.time_up.is_up(),
            None => false,
        }
    })
}

/// Called from a worker callback that returns `QTASK_OUTCOME_CODE_RETRY_AFTER`: the
/// task comes back after `seconds` (>= 0). A second call replaces the delay.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_delay(outcome: *mut qtask_outcome, seconds: f64) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        outcome.delay = Some(qtask_core::seconds("delay", seconds)?);
        Ok(())
    })
}

/// Called from a worker callback that returns `QTASK_OUTCOME_CODE_FINISH`: keeps
/// `result_json` (borrowed, copied; any JSON value) as the task's result, readable
/// with `qtask_task_result` while the finished row is kept (its delete_deadline).
/// Malformed JSON is `QTASK_RESULT_INVALID_ARGUMENT` and sets nothing.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_result(
    outcome: *mut qtask_outcome,
    result_json: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        let text = unsafe { str_arg(result_json, "result_json") }?;
        let value = serde_json::from_str(text).map_err(|e| invalid(format!("result_json: {e}")))?;
        outcome.result = Some(value);
        Ok(())
    })
}

/// Called from a worker callback: the text kept as the task's `last_error` when the
/// callback returns `QTASK_OUTCOME_CODE_RETRY` (or any other non-zero code), and as
/// the reason of `QTASK_OUTCOME_CODE_CANCEL` and `QTASK_OUTCOME_CODE_FAIL_NOW`.
/// `message` is borrowed and copied (UTF-8; invalid bytes are replaced). A second
/// call replaces the text. `outcome` is the pointer the callback received, and only
/// during that call.
#[no_mangle]
pub extern "C" fn qtask_outcome_set_error(
    outcome: *mut qtask_outcome,
    message: *const c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let outcome = try_ref!(mut outcome, "outcome");
        if message.is_null() {
            return Err(invalid("message is NULL"));
        }
        let text = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned();
        outcome.error = Some(text);
        Ok(())
    })
}
