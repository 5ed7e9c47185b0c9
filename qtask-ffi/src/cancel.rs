//! Cancel tokens: another thread ends a blocked `qtask_pop_cancellable` or
//! `qtask_task_result_cancellable` at once (Go's `context.Context` stands on them).

use std::ffi::c_char;

use qtask_core::CancellationToken;

use crate::client::{client, qtask_client, reset};
use crate::error::qtask_result;
use crate::ffi::{json_out, seconds_arg, str_arg, try_ref};
use crate::handle::{Registry, Space};
use crate::panic::ffi_boundary;

/// A cancel token: cancelling it ends the waits it was given to, now and later.
/// Opaque; corresponds to a `qtask_core::CancellationToken` (an `Arc`) in qtask's
/// registry. Thread-safe: cancel it from any thread while another waits with it.
/// Created by `qtask_cancel_token_new`, released by `qtask_cancel_token_free`.
#[allow(non_camel_case_types)]
pub struct qtask_cancel_token {
    _private: [u8; 0],
}

static TOKEN_SPACE: Space = Space::new();
static TOKENS: Registry<CancellationToken> = Registry::new("cancel token", &TOKEN_SPACE);

/// Makes a cancel token, not yet cancelled. `*out` (not NULL) receives a new handle
/// the caller owns and must release with `qtask_cancel_token_free` once no call uses
/// it any more; NULL on failure.
#[no_mangle]
pub extern "C" fn qtask_cancel_token_new(out: *mut *mut qtask_cancel_token) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out, "out");
        *out = std::ptr::null_mut();
        *out = TOKENS.insert(CancellationToken::new())?;
        Ok(())
    })
}

/// Cancels `token`: every wait given it ends now, and every later one at once.
/// Cancelling twice is fine. Does not block; safe from any thread, while another
/// thread waits with the token. A handle already freed gives `QTASK_RESULT_CLOSED`.
#[no_mangle]
pub extern "C" fn qtask_cancel_token_cancel(token: *mut qtask_cancel_token) -> qtask_result {
    ffi_boundary!(result: {
        TOKENS.get(token)?.cancel();
        Ok(())
    })
}

/// Releases `token`. Free it once the calls given it have returned: a call still
/// waiting holds its own reference (freeing is safe), but can no longer be cancelled.
/// NULL is a no-op; so is a handle already freed.
#[no_mangle]
pub extern "C" fn qtask_cancel_token_free(token: *mut qtask_cancel_token) {
    ffi_boundary!({
        if !token.is_null() {
            if let Err(err) = TOKENS.take(token) {
                crate::error::set_last_error(&err);
            }
        }
    })
}

/// The token a call was given; NULL is one never cancelled.
fn token_arg(token: *mut qtask_cancel_token) -> Result<CancellationToken, qtask_core::Error> {
    if token.is_null() {
        return Ok(CancellationToken::new());
    }
    TOKENS.get(token)
}

/// `qtask_pop` whose wait also ends when `token` is cancelled (from another thread),
/// as if it ran out: `QTASK_RESULT_OK` with `*out_message_json` NULL, and nothing
/// claimed or taken off the queue, so a task that arrives later is left for the next
/// pop. A claim already running when the token is cancelled completes, and its
/// message is returned (an attempt is never begun and dropped). `token` is borrowed
/// for the call (NULL: never cancelled); an already cancelled token returns at once
/// without claiming.
#[no_mangle]
pub extern "C" fn qtask_pop_cancellable(
    client: *mut qtask_client,
    queue: *const c_char,
    wait_s: f64,
    token: *mut qtask_cancel_token,
    out_message_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        let out = try_ref!(mut out_message_json, "out_message_json");
        *out = std::ptr::null_mut();
        let client = self::client(client)?;
        let token = token_arg(token)?;
        let queue = unsafe { str_arg(queue, "queue") }?;
        let wait = seconds_arg(wait_s, "wait_s")?;
        if let Some(message) = client.pop_cancellable(queue, wait, &token)? {
            *out = json_out(&message.to_json())?;
        }
        Ok(())
    })
}

/// `qtask_task_result` whose wait also ends when `token` is cancelled, as if it ran
/// out: `QTASK_RESULT_TIMEOUT` while the task is live. `token` is borrowed for the
/// call (NULL: never cancelled).
#[no_mangle]
pub extern "C" fn qtask_task_result_cancellable(
    client: *mut qtask_client,
    task_id: i64,
    wait_seconds: f64,
    token: *mut qtask_cancel_token,
    out_result_json: *mut *mut c_char,
) -> qtask_result {
    ffi_boundary!(result: {
        reset(out_result_json, std::ptr::null_mut());
        let out = try_ref!(mut out_result_json, "out_result_json");
        let client = self::client(client)?;
        let token = token_arg(token)?;
        let wait = seconds_arg(wait_seconds, "wait_seconds")?;
        let value = client.result_cancellable(task_id, wait, &token)?;
        *out = json_out(&value)?;
        Ok(())
    })
}
