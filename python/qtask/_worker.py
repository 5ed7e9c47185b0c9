"""Python handlers on qtask-core's worker engine.

The engine (fetcher, fenced lease renewal, batched outcomes, backoff when a server
is down, graceful stop) is Rust: ``_qtask.run_worker`` runs it with the GIL
released, one call per queue, and hands each task to a pool of handler threads
(sync handlers) or to one asyncio loop in its own thread (``async def`` handlers,
run as coroutines, ``_async_worker.py``). This module only adapts handlers to it
and turns signals into a stop. asyncio is imported only once a queue has an
``async def`` handler or a sync one returns an awaitable: a worker of sync handlers
does without it (and the ssl module it loads).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import json
import logging
import inspect
import signal
import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import _qtask
from ._kinds import TaskKind, run
from .errors import Error
from .outcomes import Cancel, FailNow, Retry, TimeLimitExceeded
from .types import Message, WorkerReport

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("qtask.worker")


class _Loop:
    """One asyncio loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def get(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="qtask-asyncio", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, awaitable: Any) -> "Any":
        import asyncio

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.get())

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


def _raise_in_thread(thread_id: int, exc: Optional[type]) -> None:
    """Raises ``exc`` in another thread at its next bytecode; ``None`` clears it."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Interrupt:
    """Tells one handler call that its time is up: raises ``TimeLimitExceeded`` in a
    sync handler's thread, cancels an ``async def`` one. Disarmed when the call ends,
    so nothing reaches the thread's next task."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id = threading.get_ident()
        self.armed = True
        self.fired = False
        self.future: Optional["concurrent.futures.Future[Any]"] = None

    def fire(self) -> None:
        with self.lock:
            if not self.armed:
                return
            self.fired = True
            if self.future is not None:
                self.future.cancel()
            else:
                _raise_in_thread(self.thread_id, TimeLimitExceeded)

    def watch(self, future: "concurrent.futures.Future[Any]") -> None:
        with self.lock:
            self.future = future
            if self.fired:
                future.cancel()

    def disarm(self) -> None:
        with self.lock:
            self.armed = False
            if self.fired and self.future is None:
                _raise_in_thread(self.thread_id, None)


def _route(
    fallback: Optional[Callable[[Message], Any]], kinds: Mapping[str, TaskKind[Any, Any]]
) -> Tuple[Callable[[Message], Any], Optional[List[str]]]:
    """One queue's handler by task name, and the names for the engine (``None``: all;
    the engine retries the others, so they never reach Python)."""
    if not kinds and fallback is not None:
        return fallback, None

    def route(message: Message) -> Any:
        kind = kinds.get(message.name)
        if kind is not None:
            return run(kind, message)
        if fallback is None:
            raise Error(f"no handler for task name {message.name!r}")
        return fallback(message)

    return route, None if fallback is not None else sorted(kinds)


def _finished(value: Any) -> _qtask.HandlerOutcome:
    if value is None:
        return None
    try:
        return ("result", json.dumps(value, allow_nan=False, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as e:
        return ("fail_now", f"the result is not JSON-serialisable: {e}")


def _ended(e: BaseException) -> _qtask.HandlerOutcome:
    """How the exception a handler raised ends its attempt; call it where it is caught."""
    if isinstance(e, Retry):
        return ("retry_after", e.after)
    if isinstance(e, Cancel):
        return ("cancel", e.reason)
    if isinstance(e, FailNow):
        return ("fail_now", e.reason)
    return traceback.format_exc()


def _adapt(handler: Callable[[Message], Any], loop: _Loop) -> Callable[[Dict[str, Any], Optional[_qtask.TimeUp]], _qtask.HandlerOutcome]:
    """The engine's view of a sync handler, called on its pool threads: the message
    (and the attempt's time-up signal) in, how the attempt ends out (see
    ``_qtask.HandlerOutcome``)."""

    def call(message: Dict[str, Any], time_up: Optional[_qtask.TimeUp]) -> _qtask.HandlerOutcome:
        interrupt: Optional[_Interrupt] = None
        if time_up is not None:
            interrupt = _Interrupt()
            time_up.on_set(interrupt.fire)
        try:
            result = handler(Message(**message))
            if result is None:
                return None
            if inspect.isawaitable(result):
                future = loop.submit(result)
                if interrupt is not None:
                    interrupt.watch(future)
                # Waiting on the concurrent future releases the GIL.
                result = future.result()
            return _finished(result)
        except (Exception, concurrent.futures.CancelledError) as e:
            # After a time limit the engine has already failed the attempt: this is ignored.
            return _ended(e)
        finally:
            if interrupt is not None:
                interrupt.disarm()

    return call


class Worker:
    def __init__(
        self,
        native: _qtask.Client,
        handlers: Mapping[str, Callable[[Message], Any]],
        *,
        concurrency: int,
        kinds: Optional[Mapping[str, Mapping[str, TaskKind[Any, Any]]]] = None,
        stop: Optional[threading.Event] = None,
        time_limit: Optional[float] = None,
    ) -> None:
        kinds = kinds or {}
        if not handlers and not kinds:
            raise Error("no handler registered: decorate one with @client.task(queue)")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        self.native = native
        self.handlers: Dict[str, Callable[[Message], Any]] = dict(handlers)
        # Each queue's handler (routing by task name when the queue has kinds).
        queues = dict.fromkeys([*self.handlers, *kinds])
        self.routes = {q: _route(self.handlers.get(q), kinds.get(q, {})) for q in queues}
        self.concurrency = concurrency
        if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))):
            raise ValueError(f"time_limit must be a number of seconds, got {time_limit!r}")
        self.time_limit = None if time_limit is None else float(time_limit)
        self.stop: threading.Event = stop if stop is not None else threading.Event()
        self.loop = _Loop()

    def run(self, handle_signals: bool = True) -> WorkerReport:
        engine_stop = _qtask.WorkerStop()
        reports: List[Any] = []
        errors: List[BaseException] = []

        def run_queue(queue: str, route: Tuple[Callable[[Message], Any], Optional[List[str]]]) -> None:
            handler, names = route
            try:
                if inspect.iscoroutinefunction(handler):
                    from ._async_worker import AsyncQueue

                    # Coroutines on the loop: concurrency counts coroutines, not threads.
                    feed = AsyncQueue(handler, self.loop.get(), self.concurrency)
                    try:
                        reports.append(
                            _qtask.run_async_worker(
                                self.native, queue, feed.inbox, self.concurrency, engine_stop, self.time_limit, names
                            )
                        )
                    finally:
                        feed.close()
                else:
                    reports.append(
                        _qtask.run_worker(
                            self.native,
                            queue,
                            _adapt(handler, self.loop),
                            self.concurrency,
                            engine_stop,
                            self.time_limit,
                            names,
                        )
                    )
            except BaseException as e:  # reported by run(), on the caller's thread
                errors.append(e)
                engine_stop.stop()

        # One engine per queue, each with `concurrency` handlers at most.
        threads = [
            threading.Thread(target=run_queue, args=(q, r), name=f"qtask-worker-{q}", daemon=True)
            for q, r in self.routes.items()
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
        log.info("%d slot(s) on each of %s", self.concurrency, ", ".join(self.routes))
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
            snoozed=sum(r[3] for r in reports),
            cancelled=sum(r[4] for r in reports),
        )
