//! `qtask_create` and `qtask_pop` through the C ABI on one SQLite client: name,
//! input JSON, queue and options JSON as NUL-separated bytes (any of them invalid
//! UTF-8 or JSON), and a timeout. Each call succeeds or returns
//! INVALID_ARGUMENT; never a panic, never another error.
#![no_main]

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qtask::{
    qtask_client, qtask_create, qtask_install, qtask_open, qtask_pop, qtask_result, qtask_string_free,
};

struct Handle(*mut qtask_client);
// The handle is a registry key; qtask's functions are thread-safe.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn client() -> *mut qtask_client {
    static CLIENT: OnceLock<Handle> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let db = std::env::temp_dir().join(format!("qtask-fuzz-{}.db", std::process::id()));
            let config = format!(
                r#"{{"db": "sqlite://{}", "sweeper": false, "max_payload_bytes": 4096}}"#,
                db.display()
            );
            let config = CString::new(config).unwrap();
            let mut client = std::ptr::null_mut();
            assert_eq!(qtask_open(config.as_ptr(), &mut client), qtask_result::Ok);
            assert_eq!(qtask_install(client), qtask_result::Ok);
            Handle(client)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let [timeout, rest @ ..] = data else { return };
    let mut parts = rest.split(|b| *b == 0).map(|p| CString::new(p).unwrap());
    let (Some(name), Some(input), Some(queue)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let options = parts.next();
    let options_ptr = options.as_ref().map_or(std::ptr::null(), |o| o.as_ptr());
    let mut id = -1;
    let result = qtask_create(
        client(),
        name.as_ptr(),
        input.as_ptr(),
        f64::from(*timeout as i8),
        queue.as_ptr(),
        options_ptr,
        &mut id,
    );
    match result {
        qtask_result::Ok => assert!(id > 0),
        qtask_result::InvalidArgument => assert_eq!(id, 0),
        other => panic!("qtask_create returned {other:?}"),
    }
    let mut message: *mut c_char = std::ptr::null_mut();
    let result = qtask_pop(client(), queue.as_ptr(), 0.0, &mut message);
    assert!(
        matches!(result, qtask_result::Ok | qtask_result::InvalidArgument),
        "qtask_pop returned {result:?}"
    );
    qtask_string_free(message);
});
