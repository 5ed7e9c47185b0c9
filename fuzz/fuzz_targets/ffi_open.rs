//! `qtask_open`'s config text through the C ABI: NUL-terminated bytes that may be
//! invalid UTF-8 or JSON. Configs that parse are not opened (they would reach
//! servers or create files); every other text must give INVALID_ARGUMENT, a NULL
//! handle and a last error, never a panic.
#![no_main]

use std::ffi::{CStr, CString};

use libfuzzer_sys::fuzz_target;
use qtask::{qtask_last_error, qtask_open, qtask_result};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = CString::new(data) else { return };
    if let Ok(utf8) = text.to_str() {
        if qtask_core::Config::from_json(utf8).is_ok() {
            return;
        }
    }
    let mut client = std::ptr::NonNull::dangling().as_ptr();
    let result = qtask_open(text.as_ptr(), &mut client);
    assert_eq!(result, qtask_result::InvalidArgument);
    assert!(client.is_null());
    let message = unsafe { CStr::from_ptr(qtask_last_error()) };
    assert!(!message.to_bytes().is_empty());
});
