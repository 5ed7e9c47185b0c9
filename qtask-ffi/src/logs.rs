//! The C log callback, over `qtask_core::logs`.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use qtask_core::logs::{forward_to, stop_forwarding, LogLevel};
use qtask_core::Error;

use crate::error::qtask_result;
use crate::panic::ffi_boundary;

/// Receives one of the engine's log lines. `level` is 40 (error), 30 (warning)
/// or 20 (info), the numbers of Python's `logging`. `message` is one line with
/// URL passwords hidden, borrowed until the callback returns. Called on qtask's
/// threads (the runtime's, a worker's, or the caller's of any `qtask_*`
/// function), possibly from several at once: keep it short, and do not call
/// `qtask_set_log_callback` from it. A `qtask_*` call that waits for the engine
/// returns `QTASK_RESULT_INVALID_STATE` there when the line came from the
/// engine's own thread.
#[allow(non_camel_case_types)]
pub type qtask_log_callback =
    Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

#[derive(Clone, Copy)]
struct Sink {
    function: unsafe extern "C" fn(i32, *const c_char, *mut c_void),
    user_data: *mut c_void,
}

// The header makes the caller promise the callback and user_data are usable from any thread.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

/// Sends qtask's log lines (info and above) to `callback` from now on, replacing
/// an earlier callback; NULL stops them (they are dropped, the default).
/// `user_data` is passed through untouched and must stay valid until the
/// callback is replaced. Process-wide; thread-safe.
#[no_mangle]
pub extern "C" fn qtask_set_log_callback(
    callback: qtask_log_callback,
    user_data: *mut c_void,
) -> qtask_result {
    ffi_boundary!(result: {
        let Some(function) = callback else {
            stop_forwarding();
            return Ok(());
        };
        let sink = Sink { function, user_data };
        let forwarding = forward_to(Arc::new(move |level: LogLevel, line: &str| {
            let sink = sink;
            let line = CString::new(line.replace('\0', "")).unwrap_or_default();
            unsafe { (sink.function)(level as i32, line.as_ptr(), sink.user_data) }
        }));
        if !forwarding {
            return Err(Error::InvalidState(
                "another tracing subscriber was installed in this process first; it receives qtask's logs".into(),
            ));
        }
        Ok(())
    })
}
