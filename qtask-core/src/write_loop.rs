//! The handle shared by the group-commit loops (creator.rs, completer.rs): requests go
//! in through a channel to a loop on the runtime; closing sends the loop's own close
//! request, so that what was sent before it is written, and waits for the loop to end.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

pub(crate) struct LoopHandle<R> {
    requests: mpsc::UnboundedSender<R>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<R: Send + 'static> LoopHandle<R> {
    /// Starts `run` on the current tokio runtime with the receiving end.
    pub fn start<F>(run: impl FnOnce(mpsc::UnboundedReceiver<R>) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (requests, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(incoming));
        LoopHandle {
            requests,
            task: Mutex::new(Some(task)),
        }
    }

    /// `Closed` once the loop has ended.
    pub fn send(&self, request: R) -> Result<()> {
        self.requests.send(request).map_err(|_| Error::Closed)
    }

    /// Sends `close`, then waits until the loop has ended.
    pub async fn close(&self, close: R) {
        let _ = self.requests.send(close);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl<R> fmt::Debug for LoopHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle").finish_non_exhaustive()
    }
}
