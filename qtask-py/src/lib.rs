//! `qtask._qtask`: the native half of the `qtask` Python package.
//!
//! Thin by design: it converts Python values to owned Rust values, calls
//! qtask-core's blocking client with the GIL released (`AsyncClient`: its async
//! client, awaited from asyncio, `asyncio.rs`), and maps errors once (`error.rs`). Behaviour lives in qtask-core; the typed API, the worker loop and
//! the CLI live in Python (`python/qtask/`).

use pyo3::prelude::*;

mod async_client;
mod asyncio;
mod client;
mod convert;
mod error;
mod logs;
mod pool;
mod worker;

/// `CARGO_PKG_VERSION` in PEP 440 form (`0.1.0-alpha.1` → `0.1.0a1`).
fn version() -> String {
    env!("CARGO_PKG_VERSION")
        .replace("-alpha.", "a")
        .replace("-beta.", "b")
        .replace("-rc.", "rc")
}

/// The text with every URL password replaced by `***` (qtask-core's one rule).
#[pyfunction]
fn redact(text: &str) -> String {
    qtask_core::redact(text)
}

#[pymodule]
fn _qtask(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", version())?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Invoke>()?;
    m.add_class::<async_client::AsyncClient>()?;
    m.add_class::<async_client::AsyncInvoke>()?;
    m.add_class::<worker::WorkerStop>()?;
    m.add_class::<worker::TimeUp>()?;
    m.add_function(wrap_pyfunction!(redact, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_async_worker, m)?)?;
    m.add_class::<pool::AsyncInbox>()?;
    m.add_class::<pool::AttemptReply>()?;
    logs::install();
    Ok(())
}
