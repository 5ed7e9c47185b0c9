//! Result codes: the one mapping from `qtask_core::Error` to C, and the
//! thread-local last error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use qtask_core::Error;

use crate::panic::ffi_boundary;

/// What every fallible `qtask_*` function returns: `QTASK_RESULT_OK` (0) or a
/// negative code. The numbers are fixed: a retired code is never reused.
/// `qtask_last_error()` gives the message of the failure.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum qtask_result {
    /// Success.
    Ok = 0,
    /// An argument was refused: NULL pointer, invalid UTF-8, malformed JSON,
    /// negative or zero duration, oversized payload, unknown config key, or a
    /// handle that qtask never issued. Nothing was written.
    InvalidArgument = -1,
    /// No task with this id (it may have been cleaned up already).
    NotFound = -2,
    /// The task exists but its state forbids the operation (finishing a cancelled task...).
    InvalidState = -3,
    /// The database refused or could not be reached.
    Database = -4,
    /// The queue (Redis) refused or could not be reached.
    Queue = -5,
    /// An operation did not complete in time.
    Timeout = -6,
    /// The client handle was closed by `qtask_close` (or the client is closing).
    Closed = -7,
    /// A bug in qtask (a caught panic) or an environment it cannot work in
    /// (used in a forked child...).
    Internal = -8,
}

/// The one translation of engine errors into C codes.
pub(crate) fn map_error(err: &Error) -> qtask_result {
    match err {
        Error::InvalidArgument(_) => qtask_result::InvalidArgument,
        Error::NotFound(_) => qtask_result::NotFound,
        Error::InvalidState(_) => qtask_result::InvalidState,
        Error::Database(_) => qtask_result::Database,
        Error::Queue(_) => qtask_result::Queue,
        Error::Timeout(_) => qtask_result::Timeout,
        Error::Closed => qtask_result::Closed,
        Error::Internal(_) => qtask_result::Internal,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(crate) fn set_last_error(err: &Error) {
    // An interior NUL (from a database message, say) would cut the text; drop it.
    let text = err.to_string().replace('\0', "");
    let text = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(text));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = None);
}

/// The message of this thread's most recent failed call, or "" when the most
/// recent call returning a `qtask_result` on this thread succeeded. (The void
/// functions `qtask_close` and `qtask_invoke_free` set it when given a closed
/// or foreign handle, and otherwise leave it alone.)
///
/// Borrowed: the string belongs to qtask and stays valid until this thread's
/// next `qtask_*` call (other than `qtask_last_error`). Do not free it; copy it
/// to keep it. Never NULL. Thread-local, so it is safe from every thread, but
/// read it on the same thread as the failed call (Go: with the goroutine
/// locked to its thread, as the Go package does).
#[no_mangle]
pub extern "C" fn qtask_last_error() -> *const c_char {
    ffi_boundary!({
        LAST_ERROR.with(|slot| match &*slot.borrow() {
            Some(text) => text.as_ptr(),
            None => c"".as_ptr(),
        })
    })
}

/// The constant name of a result code, e.g. "QTASK_RESULT_NOT_FOUND", or
/// "QTASK_RESULT_UNKNOWN" for a number that is not a code.
///
/// Borrowed: a static string; never NULL, never to be freed. Thread-safe.
#[no_mangle]
pub extern "C" fn qtask_result_name(code: i32) -> *const c_char {
    ffi_boundary!({
        let name = match code {
            0 => c"QTASK_RESULT_OK",
            -1 => c"QTASK_RESULT_INVALID_ARGUMENT",
            -2 => c"QTASK_RESULT_NOT_FOUND",
            -3 => c"QTASK_RESULT_INVALID_STATE",
            -4 => c"QTASK_RESULT_DATABASE",
            -5 => c"QTASK_RESULT_QUEUE",
            -6 => c"QTASK_RESULT_TIMEOUT",
            -7 => c"QTASK_RESULT_CLOSED",
            -8 => c"QTASK_RESULT_INTERNAL",
            _ => c"QTASK_RESULT_UNKNOWN",
        };
        name.as_ptr()
    })
}
