"""``async def`` handlers on the worker's asyncio loop (see ``_worker.py``), imported
only by a worker that has one."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Callable, Dict, Optional, Set

from . import _qtask
from ._worker import _ended, _finished
from .types import Message


async def _run_async(handler: Callable[[Message], Any], message: Message) -> _qtask.HandlerOutcome:
    """An ``async def`` handler's attempt, as a coroutine on the loop."""
    try:
        return _finished(await handler(message))
    except (Exception, asyncio.CancelledError) as e:
        # A cancel is the time limit: the engine has already failed the attempt.
        return _ended(e)


class AsyncQueue:
    """Feeds one queue's ``async def`` handler from the engine: the engine puts tasks
    in an inbox and writes a byte to a socket the loop watches; the loop then starts
    the tasks waiting there as coroutines (one wake-up per burst of tasks), as many
    as the concurrency has room for. The engine hands over a few more, which wait
    there, their time limits not started, until an attempt ends and makes room."""

    def __init__(self, handler: Callable[[Message], Any], loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.handler = handler
        self.loop = loop
        self.concurrency = concurrency
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.inbox = _qtask.AsyncInbox(self.writer.fileno())
        self.running: Set["asyncio.Task[None]"] = set()
        ready = threading.Event()

        def watch() -> None:
            loop.add_reader(self.reader.fileno(), self._drain)
            ready.set()

        loop.call_soon_threadsafe(watch)
        ready.wait()

    def _drain(self) -> None:
        try:
            self.reader.recv(4096)
        except BlockingIOError:
            pass
        self._start_waiting()

    def _start_waiting(self) -> None:
        room = self.concurrency - len(self.running)
        if room <= 0:
            return
        for message, time_up, reply in self.inbox.take(room):
            task = self.loop.create_task(self._attempt(message, time_up, reply))
            self.running.add(task)

    async def _attempt(self, fields: Dict[str, Any], time_up: Optional[_qtask.TimeUp], reply: _qtask.AttemptReply) -> None:
        try:
            reply.send(await self._outcome(Message(**fields), time_up))
        finally:
            # This attempt's room goes to a task that waits, without a wake-up.
            current = asyncio.current_task()
            if current is not None:
                self.running.discard(current)
            self._start_waiting()

    async def _outcome(self, message: Message, time_up: Optional[_qtask.TimeUp]) -> _qtask.HandlerOutcome:
        if time_up is None:
            return await _run_async(self.handler, message)
        attempt = asyncio.ensure_future(_run_async(self.handler, message))
        time_up.on_set(lambda: self.loop.call_soon_threadsafe(attempt.cancel))
        try:
            return await attempt
        except asyncio.CancelledError:
            return "time limit exceeded: the handler was cancelled"

    def close(self) -> None:
        done = threading.Event()

        def unwatch() -> None:
            self.loop.remove_reader(self.reader.fileno())
            done.set()

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(unwatch)
            done.wait()
        self.reader.close()
        self.writer.close()
