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
    every task waiting there as a coroutine (one wake-up per burst of tasks)."""

    def __init__(self, handler: Callable[[Message], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.loop = loop
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
        for message, time_up, reply in self.inbox.take():
            task = self.loop.create_task(self._attempt(message, time_up, reply))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _attempt(self, fields: Dict[str, Any], time_up: Optional[_qtask.TimeUp], reply: _qtask.AttemptReply) -> None:
        message = Message(**fields)
        if time_up is None:
            reply.send(await _run_async(self.handler, message))
            return
        attempt = asyncio.ensure_future(_run_async(self.handler, message))
        time_up.on_set(lambda: self.loop.call_soon_threadsafe(attempt.cancel))
        outcome: _qtask.HandlerOutcome
        try:
            outcome = await attempt
        except asyncio.CancelledError:
            outcome = "time limit exceeded: the handler was cancelled"
        reply.send(outcome)

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
