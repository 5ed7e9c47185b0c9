"""The worker loop: pop, processing, run the handler, finish or fail.

Plain threads over the native client (every call releases the GIL). While a handler
runs, a helper thread renews the task's lease (``processing`` again) every third
of its length, so a long job is not re-dispatched under it. ``async def`` handlers run on
one asyncio loop in its own thread.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import signal
import threading
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional

from . import _qtask
from .errors import Error
from .types import Message, WorkerReport

log = logging.getLogger("qtask.worker")

#: Longest pause after repeated pop errors (database or queue down): never exit, never spin.
MAX_ERROR_PAUSE = 5.0


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished = 0
        self.failed = 0
        self.skipped = 0

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class _Loop:
    """One asyncio loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def run(self, awaitable: Awaitable[Any]) -> Any:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="qtask-asyncio", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), loop).result()

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


class Worker:
    def __init__(
        self,
        native: _qtask.Client,
        handlers: Mapping[str, Callable[[Message], Any]],
        *,
        concurrency: int,
        poll_wait: float,
        stop: Optional[threading.Event] = None,
    ) -> None:
        if not handlers:
            raise Error("no handler registered: decorate one with @client.task(queue)")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        self.native = native
        self.handlers: Dict[str, Callable[[Message], Any]] = dict(handlers)
        self.queues: List[str] = list(handlers)
        self.concurrency = concurrency
        self.poll_wait = float(poll_wait)
        self.stop: threading.Event = stop if stop is not None else threading.Event()
        self.counters = _Counters()
        self.loop = _Loop()

    # --- the loop of one slot

    def _slot(self, index: int) -> None:
        errors = 0
        # Each slot starts on a different queue so that one busy queue does not starve the others.
        turn = index
        wait = max(self.poll_wait / len(self.queues), 0.01)
        while not self.stop.is_set():
            queue = self.queues[turn % len(self.queues)]
            turn += 1
            try:
                text = self.native.pop(queue, wait)
            except Error as e:
                errors += 1
                if errors & (errors - 1) == 0:  # 1, 2, 4, 8...: do not flood the log
                    log.warning("pop from %s failed (%s); retrying", queue, e)
                self.stop.wait(min(0.1 * min(errors, 50), MAX_ERROR_PAUSE))
                continue
            errors = 0
            if text is not None:
                self._handle(queue, json.loads(text))

    def _handle(self, queue: str, message: Message) -> None:
        task_id = int(message["task_id"])
        try:
            lease = self.native.processing(task_id)
        except Error as e:
            # The lease runs out and the task comes back; nothing is lost.
            log.warning("processing(%d) failed (%s); it will be re-dispatched", task_id, e)
            return
        if lease is None:
            self.counters.add("skipped")
            return
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(task_id, lease, done), name=f"qtask-lease-{task_id}", daemon=True
        )
        renewer.start()
        try:
            handler = self.handlers[queue]
            try:
                result = handler(message)
                if inspect.isawaitable(result):
                    self.loop.run(result)
                error: Optional[str] = None
            except Exception:
                error = traceback.format_exc()
        finally:
            done.set()
            renewer.join()
        try:
            if error is None:
                self.native.finish(task_id)
                self.counters.add("finished")
            else:
                self.counters.add("failed")
                status = self.native.fail(task_id, error)
                if status == "failed":
                    log.warning("task %d failed for good:\n%s", task_id, error)
                else:
                    log.info("task %d failed, will be retried:\n%s", task_id, error)
        except Error as e:
            log.warning("recording the outcome of task %d failed: %s", task_id, e)

    def _renew(self, task_id: int, lease: float, done: threading.Event) -> None:
        while not done.wait(max(lease / 3, 0.05)):
            try:
                renewed = self.native.processing(task_id)
            except Error as e:
                log.warning("renewing the lease of task %d failed: %s", task_id, e)
                continue
            if renewed is None:  # cancelled or finished elsewhere; the handler's outcome decides
                return
            lease = renewed

    # --- start and stop

    def run(self, handle_signals: bool = True) -> WorkerReport:
        threads = [
            threading.Thread(target=self._slot, args=(i,), name=f"qtask-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        restore: Dict[int, Any] = {}
        in_main = threading.current_thread() is threading.main_thread()
        if handle_signals and in_main:

            def on_signal(signum: int, _frame: Any) -> None:
                if self.stop.is_set():
                    raise KeyboardInterrupt(f"signal {signum} again: stopping at once")
                log.info("signal %d, stopping after the running tasks", signum)
                self.stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[int(sig)] = signal.signal(sig, on_signal)
        log.info("%d slot(s) on %s", self.concurrency, ", ".join(self.queues))
        try:
            for t in threads:
                t.start()
            for t in threads:
                # Short joins, so that the main thread runs signal handlers promptly.
                while t.is_alive():
                    t.join(0.2)
        finally:
            self.stop.set()
            for signum, old in restore.items():
                signal.signal(signum, old)
            self.loop.close()
        c = self.counters
        return WorkerReport(finished=c.finished, failed=c.failed, skipped=c.skipped)
