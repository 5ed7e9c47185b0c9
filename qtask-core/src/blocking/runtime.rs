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

thread_local! {
    /// Set on the thread that drives the runtime: a [`wait`] there would wait for itself.
    static ON_DRIVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The current process's runtime, leaked: a runtime is never dropped, because
/// dropping the parent's in a child would wait for threads that are not there.
static CURRENT: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());

/// The runtime of this process, started on first use (again in a forked child).
///
/// One thread drives it (a current-thread runtime): the engine's work per task is
/// small, and the hand-offs of a binding (a task out to Go, Python or C, its outcome
/// back) wake that one thread, where two worker threads also woke each other for
/// every task that one of them had to take over.
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
    let cannot = |e: std::io::Error| Error::Internal(format!("cannot start the qtask runtime: {e}"));
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(cannot)?;
    // The driving thread runs until `driving` is dropped: forgotten once this runtime
    // is the process's, dropped if another thread's won.
    let (driving, ended) = tokio::sync::oneshot::channel::<()>();
    let fresh: &'static Shared = Box::leak(Box::new(Shared {
        runtime: started,
        pid,
    }));
    std::thread::Builder::new()
        .name("qtask-runtime".into())
        .spawn(move || {
            ON_DRIVER.with(|on| on.set(true));
            let _ = fresh.runtime.block_on(ended);
        })
        .map_err(cannot)?;
    let fresh_ptr = fresh as *const Shared as *mut Shared;
    match CURRENT.compare_exchange(seen, fresh_ptr, Ordering::AcqRel, Ordering::Acquire) {
        // The parent's runtime, if `seen` was one, stays leaked in this process.
        Ok(_) => {
            std::mem::forget(driving);
            Ok(&fresh.runtime)
        }
        Err(winner) => {
            // Another thread of this process started one first: use that one, and
            // let ours stop (its driving thread ends; the runtime stays leaked).
            drop(driving);
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
    if ON_DRIVER.with(|on| on.get()) {
        // Code the engine calls (a log sink, a hand-off) that calls back into qtask.
        return Err(Error::InvalidState(
            "a blocking qtask call from the engine's own thread (a log callback or a hand-off) would wait for itself".into(),
        ));
    }
    let runtime = runtime()?;
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(Error::Internal("a qtask operation panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_threads_wait_on_the_one_runtime() {
        let threads: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || wait(async move { Ok(i * 2) })))
            .collect();
        let sums: Vec<i32> = threads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        assert_eq!(sums, [0, 2, 4, 6, 8, 10, 12, 14]);
        // Timers and I/O run: the driving thread drives them.
        let slept = wait(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await.is_ok())
        });
        assert!(slept.unwrap());
    }

    #[test]
    fn a_wait_from_the_engine_thread_is_refused_not_a_hang() {
        let (tx, rx) = mpsc::channel();
        runtime().unwrap().spawn(async move {
            let _ = tx.send(wait(async { Ok(1) }));
        });
        let inner = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the engine thread hung in its own wait");
        assert!(matches!(inner, Err(Error::InvalidState(_))), "{inner:?}");
    }
}
