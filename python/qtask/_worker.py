"""The worker loop: pop, processing, run the handler, finish or fail.

Plain threads over the native client (every call releases the GIL). While handlers
run, one thread per worker renews their leases (``processing`` again) every third
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
import time
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple

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


class _Leases:
    """One thread per worker renews the leases of running handlers (``processing``
    again every third of the lease), so a short task costs no thread of its own."""

    def __init__(self, native: _qtask.Client) -> None:
        self._native = native
        self._cond = threading.Condition()
        self._due: Dict[int, Tuple[float, float]] = {}  # task_id -> (renew at, lease)
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def hold(self, task_id: int, lease: float) -> None:
        with self._cond:
            self._due[task_id] = (time.monotonic() + max(lease / 3, 0.05), lease)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qtask-leases", daemon=True)
                self._thread.start()
            self._cond.notify()

    def release(self, task_id: int) -> None:
        with self._cond:
            self._due.pop(task_id, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                due = [tid for tid, (at, _) in self._due.items() if at <= now]
                if not due:
                    next_at = min((at for at, _ in self._due.values()), default=now + 1.0)
                    self._cond.wait(next_at - now)
                    continue
            for task_id in due:
                failed = False
                renewed: Optional[float] = None
                try:
                    renewed = self._native.processing(task_id)
                except Error as e:
                    log.warning("renewing the lease of task %d failed: %s", task_id, e)
                    failed = True
                with self._cond:
                    held = self._due.get(task_id)
                    if held is None:
                        continue  # the handler ended meanwhile
                    if failed:  # keep the lease we have; try again soon
                        self._due[task_id] = (time.monotonic() + min(held[1] / 3, 1.0), held[1])
                    elif renewed is None:  # cancelled or finished elsewhere; the handler decides
                        del self._due[task_id]
                    else:
                        self._due[task_id] = (time.monotonic() + max(renewed / 3, 0.05), renewed)


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
        self.leases = _Leases(native)

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
        self.leases.hold(task_id, lease)
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
            self.leases.release(task_id)
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
            self.leases.close()
            for signum, old in restore.items():
                signal.signal(signum, old)
            self.loop.close()
        c = self.counters
        return WorkerReport(finished=c.finished, failed=c.failed, skipped=c.skipped)
