//! A blocking client for programs without an async runtime, and the base of the C
//! and Python bindings.
//!
//! Every call runs on one process-wide tokio runtime (driven by one thread, named
//! `qtask-runtime`) and the caller's thread waits for it, so it is safe from any
//! thread, and even from inside another tokio runtime (where it blocks that worker
//! thread: async code should use [`crate::Client`], or call this from
//! `spawn_blocking`). From the `qtask-runtime` thread itself (a log sink) a call is
//! refused with [`crate::Error::InvalidState`]: it would wait for itself.

mod admin;
mod client;
mod runtime;
mod schedule;
mod worker;

pub use client::{Client, Invoke};
pub use runtime::{runtime, wait};
pub use worker::{after_ready_tasks, Reply, StopSignal, Worker, HAND_AHEAD_AT_LEAST};
