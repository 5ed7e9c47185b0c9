//! Argument plumbing: NULL checks, C strings, JSON, durations, strings handed out.

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use qtask_core::Error;

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// `try_ref!(ptr, "name")`: `&T` (or `&mut T` with `mut`) from a pointer the
/// caller passed, or return the invalid-argument error when it is NULL.
macro_rules! try_ref {
    ($ptr:expr, $what:expr) => {
        match unsafe { $ptr.as_ref() } {
            Some(value) => value,
            None => return Err($crate::ffi::invalid(format!("{} is NULL", $what))),
        }
    };
    (mut $ptr:expr, $what:expr) => {
        match unsafe { $ptr.as_mut() } {
            Some(value) => value,
            None => return Err($crate::ffi::invalid(format!("{} is NULL", $what))),
        }
    };
}
pub(crate) use try_ref;

/// A borrowed, NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Like [`str_arg`], but NULL gives `None`.
///
/// # Safety
/// As for [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    unsafe { str_arg(ptr, what) }.map(Some)
}

/// Seconds from C (fractions allowed): negative, NaN and infinite values are
/// refused (zero is left to the engine, which refuses it where a duration must be
/// positive).
pub(crate) fn seconds_arg(secs: f64, what: &str) -> Result<Duration, Error> {
    qtask_core::seconds(what, secs)
}

/// Serializes `value` into a string the caller frees with `qtask_string_free`.
pub(crate) fn json_out<T: serde::Serialize>(value: &T) -> Result<*mut c_char, Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::Internal(format!("serializing: {e}")))?;
    // serde_json escapes NUL as \u0000, so this cannot fail.
    let text = CString::new(text).map_err(|e| Error::Internal(format!("serializing: {e}")))?;
    Ok(text.into_raw())
}
