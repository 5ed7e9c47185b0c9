"""Python handlers on qtask-core's worker engine.

The engine (fetcher, fenced lease renewal, batched outcomes, backoff when a server
is down, graceful stop) is Rust: ``_qtask.run_worker`` runs it with the GIL
released, one call per queue, and takes the GIL only to run a handler. This module
only adapts handlers to it and turns signals into a stop. ``async def`` handlers run
as coroutines on one asyncio loop in its own thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import _qtask
from .errors import Error
from .types import Message, WorkerReport

log = logging.getLogger("qtask.worker")


class _Loop:
    """One asyncio loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def submit(self, awaitable: Any) -> "Any":
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="qtask-asyncio", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), loop)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


def _adapt(handler: Callable[[Message], Any], loop: _Loop) -> Callable[[str], Optional[str]]:
    """The engine's view of a handler: message JSON in, ``None`` (finish) or the
    error text with its traceback (retry with backoff) out."""

    def call(text: str) -> Optional[str]:
        try:
            result = handler(json.loads(text))
            if asyncio.iscoroutine(result) or asyncio.isfuture(result) or hasattr(result, "__await__"):
                # Waiting on the concurrent future releases the GIL.
                loop.submit(result).result()
            return None
        except Exception:
            return traceback.format_exc()

    return call


class Worker:
    def __init__(
        self,
        native: _qtask.Client,
        handlers: Mapping[str, Callable[[Message], Any]],
        *,
        concurrency: int,
        stop: Optional[threading.Event] = None,
    ) -> None:
        if not handlers:
            raise Error("no handler registered: decorate one with @client.task(queue)")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        self.native = native
        self.handlers: Dict[str, Callable[[Message], Any]] = dict(handlers)
        self.concurrency = concurrency
        self.stop: threading.Event = stop if stop is not None else threading.Event()
        self.loop = _Loop()

    def run(self, handle_signals: bool = True) -> WorkerReport:
        engine_stop = _qtask.WorkerStop()
        reports: List[Any] = []
        errors: List[BaseException] = []

        def run_queue(queue: str, handler: Callable[[Message], Any]) -> None:
            try:
                reports.append(
                    _qtask.run_worker(self.native, queue, _adapt(handler, self.loop), self.concurrency, engine_stop)
                )
            except BaseException as e:  # reported by run(), on the caller's thread
                errors.append(e)
                engine_stop.stop()

        # One engine per queue, each with `concurrency` handlers at most.
        threads = [
            threading.Thread(target=run_queue, args=(q, h), name=f"qtask-worker-{q}", daemon=True)
            for q, h in self.handlers.items()
        ]
        restore: Dict[int, Any] = {}
        in_main = threading.current_thread() is threading.main_thread()
        if handle_signals and in_main:

            def on_signal(signum: int, _frame: Any) -> None:
                if self.stop.is_set():
                    raise KeyboardInterrupt(f"signal {signum} again: stopping at once")
                log.info("signal %d, stopping after the running tasks", signum)
                self.stop.set()
                engine_stop.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[int(sig)] = signal.signal(sig, on_signal)
        log.info("%d slot(s) on each of %s", self.concurrency, ", ".join(self.handlers))
        try:
            for t in threads:
                t.start()
            for t in threads:
                # Short joins: the main thread runs signal handlers, and a stop Event is seen.
                while t.is_alive():
                    t.join(0.2)
                    if self.stop.is_set():
                        engine_stop.stop()
        finally:
            self.stop.set()
            engine_stop.stop()
            for signum, old in restore.items():
                signal.signal(signum, old)
        for t in threads:
            t.join()
        self.loop.close()
        if errors:
            raise errors[0]
        return WorkerReport(
            finished=sum(r[0] for r in reports),
            failed=sum(r[1] for r in reports),
            skipped=sum(r[2] for r in reports),
        )
