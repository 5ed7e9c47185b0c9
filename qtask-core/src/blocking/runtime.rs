//! The one runtime that blocking calls run on, shared by the C and Python bindings.

use std::future::Future;
use std::sync::mpsc;

use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

struct Shared {
    runtime: Runtime,
    pid: u32,
}

static SHARED: OnceCell<Shared> = OnceCell::new();

/// The process-wide runtime, started on first use. Fails in a forked child: the
/// parent's runtime threads do not exist there.
pub fn runtime() -> Result<&'static Runtime> {
    let shared = SHARED.get_or_try_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qtask-runtime")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the qtask runtime: {e}")))?;
        Ok::<_, Error>(Shared {
            runtime,
            pid: std::process::id(),
        })
    })?;
    if shared.pid != std::process::id() {
        return Err(Error::Internal(
            "qtask was used in a forked child process; open clients after fork, not before".into(),
        ));
    }
    Ok(&shared.runtime)
}

/// Runs `future` on the shared runtime and waits for it on this thread. Never panics
/// on the caller's side, also when called from inside another runtime.
pub fn wait<F, T>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let runtime = runtime()?;
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(Error::Internal("a qtask operation panicked".into())))
}
