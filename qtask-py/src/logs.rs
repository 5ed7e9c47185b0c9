//! The engine's log lines on Python's `logging.getLogger("qtask")`.
//!
//! The sink runs on engine threads: it takes the GIL itself (qtask-core calls it
//! with no lock held) and drops the line when the interpreter is shutting down.

use std::sync::Arc;

use pyo3::prelude::*;
use qtask_core::logs::{self, LogLevel};

pub(crate) fn emit(level: LogLevel, line: &str) {
    // `None`: the interpreter is finalizing (or not there); the line is dropped.
    let _ = Python::try_attach(|py| {
        let logged = py
            .import("logging")
            .and_then(|logging| logging.call_method1("getLogger", ("qtask",)))
            .and_then(|logger| logger.call_method1("log", (level as i32, "%s", line)));
        if let Err(err) = logged {
            // A broken handler must not take an engine thread down.
            err.write_unraisable(py, None);
        }
    });
}

/// Forwards from now on; called once when `qtask._qtask` is imported.
pub fn install() {
    logs::forward_to(Arc::new(emit));
}
