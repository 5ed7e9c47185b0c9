//! A huge input from C is refused before it is parsed: the call allocates memory in
//! proportion to the limit, not to the input (issue 10: a 256 MiB input used to
//! allocate over 512 MiB before its refusal).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use qtask::{qtask_close, qtask_create, qtask_open, qtask_result};

/// Counts live heap bytes and the peak since the last reset, for the whole process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_huge_input_is_refused_before_it_is_parsed() {
    let db = std::env::temp_dir().join(format!("qtask-ffi-oversized-{}.db", std::process::id()));
    let config = CString::new(format!(
        r#"{{"db": "sqlite://{}", "sweeper": false}}"#,
        db.display()
    ))
    .unwrap();
    let mut client = std::ptr::null_mut();
    assert_eq!(qtask_open(config.as_ptr(), &mut client), qtask_result::Ok);

    // 256 MiB of valid JSON against the default 1 MiB limit.
    let mut text = String::with_capacity(256 << 20);
    text.push_str(r#"{"blob":""#);
    text.push_str(&"x".repeat((256 << 20) - 12));
    text.push_str(r#""}"#);
    let input = CString::new(text).unwrap();
    let name = CString::new("big").unwrap();
    let queue = CString::new("BIG").unwrap();

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let mut id = -1;
    let result = qtask_create(
        client,
        name.as_ptr(),
        input.as_ptr(),
        60.0,
        queue.as_ptr(),
        std::ptr::null::<c_char>(),
        &mut id,
    );
    let grown = PEAK.load(Ordering::SeqCst) - before;

    assert_eq!(result, qtask_result::InvalidArgument);
    assert_eq!(id, 0);
    assert!(grown < 8 << 20, "the refusal allocated {} MiB", grown >> 20);
    qtask_close(client);
    let _ = std::fs::remove_file(db);
}
