//! The task a binding builds from text: input JSON (bounded before parsing), name,
//! queue, order number and durations, through the checks `create` and `delay` run.
//! Input layout: 2 bytes of durations, then name, input, queue and order_no
//! separated by NUL bytes.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use qtask_core::input::parse_input;
use qtask_core::{check_new_task, Error, NewTask};

/// A small limit, so that the size checks are reached often.
const LIMIT: usize = 256;

fuzz_target!(|data: &[u8]| {
    let [timeout, delay, rest @ ..] = data else { return };
    let mut parts = rest.split(|b| *b == 0).map(String::from_utf8_lossy);
    let (Some(name), Some(input), Some(queue)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let order_no = parts.next();
    let input = match parse_input(&input, LIMIT) {
        Ok(input) => input,
        Err(Error::InvalidArgument(_)) => return,
        Err(other) => panic!("input text gave a non-argument error: {other}"),
    };
    let mut task = NewTask::new(name.as_ref(), input, queue.as_ref())
        .timeout(Duration::from_millis(u64::from(*timeout) * 997));
    if let Some(order_no) = order_no {
        task = task.order_no(order_no.as_ref());
    }
    let delay = Duration::from_secs(u64::from(*delay).pow(4));
    match check_new_task(&task, delay, LIMIT) {
        Ok(()) | Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("a task gave a non-argument error: {other}"),
    }
});
