//! The panic boundary: no unwind ever crosses an `extern "C"` function.

use std::panic::{catch_unwind, AssertUnwindSafe};

use qtask_core::Error;

use crate::error::{self, qtask_result};

/// Wraps the body of every `extern "C"` function in `catch_unwind`.
///
/// - `ffi_boundary!(result: { ... })`: the block evaluates to `Result<(), Error>`;
///   the function returns `QTASK_RESULT_OK` or the error's code, and sets this
///   thread's last error. A panic gives `QTASK_RESULT_INTERNAL`.
/// - `ffi_boundary!({ ... })`: any other return type; a panic gives its
///   [`PanicDefault`] (NULL, nothing, 0).
macro_rules! ffi_boundary {
    (result: $body:block) => {
        $crate::panic::result(|| -> ::std::result::Result<(), ::qtask_core::Error> { $body })
    };
    ($body:block) => {
        $crate::panic::guard(|| $body)
    };
}
pub(crate) use ffi_boundary;

/// What a function returns when its body panicked.
pub(crate) trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

impl PanicDefault for qtask_result {
    fn panic_default() -> Self {
        qtask_result::Internal
    }
}

pub(crate) fn guard<T: PanicDefault>(body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            error::set_last_error(&panic_error(payload));
            T::panic_default()
        }
    }
}

pub(crate) fn result(body: impl FnOnce() -> Result<(), Error>) -> qtask_result {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panic_error(payload)));
    match outcome {
        Ok(()) => {
            error::clear_last_error();
            qtask_result::Ok
        }
        Err(err) => {
            error::set_last_error(&err);
            error::map_error(&err)
        }
    }
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = qtask_core::panic_text(&*payload).unwrap_or("unknown panic");
    Error::Internal(format!("panic inside qtask: {what}"))
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(error::qtask_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_the_internal_code() {
        let code = ffi_boundary!(result: {
            if true {
                panic!("boom");
            }
            Ok(())
        });
        assert_eq!(code, qtask_result::Internal);
        assert_eq!(last_error(), "internal error: panic inside qtask: boom");

        let pointer: *const u8 = ffi_boundary!({ panic!("again {}", 2) });
        assert!(pointer.is_null());
        assert!(last_error().ends_with("again 2"), "{}", last_error());
    }

    #[test]
    fn errors_map_to_codes_and_success_clears_the_message() {
        let code = ffi_boundary!(result: { Err(Error::NotFound(7)) });
        assert_eq!(code, qtask_result::NotFound);
        assert_eq!(last_error(), "task 7 not found");
        assert_eq!(ffi_boundary!(result: { Ok(()) }), qtask_result::Ok);
        assert_eq!(last_error(), "");
    }
}
