//! The one runtime that blocking calls run on, shared by the C and Python bindings.
//!
//! One runtime per process: a forked child (gunicorn `--preload`, `multiprocessing`
//! with fork, prefork workers) starts its own on first use and never touches the
//! parent's, whose threads do not exist in the child. Lock-free on purpose: a lock
//! held by a parent thread at the time of the fork would stay held in the child.

use std::future::Future;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

struct Shared {
    runtime: Runtime,
    pid: u32,
}

/// The current process's runtime, leaked: a runtime is never dropped, because
/// dropping the parent's in a child would wait for threads that are not there.
static CURRENT: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());

/// The runtime of this process, started on first use (again in a forked child).
pub fn runtime() -> Result<&'static Runtime> {
    let pid = std::process::id();
    let seen = CURRENT.load(Ordering::Acquire);
    // SAFETY: every non-null pointer stored in CURRENT comes from Box::leak and is
    // never freed.
    if let Some(shared) = unsafe { seen.as_ref() } {
        if shared.pid == pid {
            return Ok(&shared.runtime);
        }
    }
    let started = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("qtask-runtime")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the qtask runtime: {e}")))?;
    let fresh = Box::into_raw(Box::new(Shared {
        runtime: started,
        pid,
    }));
    match CURRENT.compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // The parent's runtime, if `seen` was one, stays leaked in this process.
        // SAFETY: `fresh` was just leaked and is never freed.
        Ok(_) => Ok(unsafe { &(*fresh).runtime }),
        Err(winner) => {
            // Another thread of this process started one first: use that one.
            // SAFETY: `fresh` was never shared; `winner` is leaked like every other.
            let ours = unsafe { Box::from_raw(fresh) };
            ours.runtime.shutdown_background();
            let winner = unsafe { &*winner };
            if winner.pid == pid {
                Ok(&winner.runtime)
            } else {
                runtime()
            }
        }
    }
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
