"""The asyncio client: ``Client``'s methods as coroutines over ``qtask._qtask.AsyncClient``.

Each native call returns an ``asyncio.Future`` of the running loop, completed from
the engine's own runtime: no thread per call, no executor. Arguments are checked
and converted exactly as :class:`qtask.Client` does (both call ``_args``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Optional, cast

from . import _qtask
from . import _args
from .types import (
    Created,
    Message,
    Missed,
    NewTask,
    QueueSummary,
    RatePoint,
    ScheduleInfo,
    Stats,
    SweepReport,
    Task,
    TaskPage,
)

if TYPE_CHECKING:
    from types import TracebackType


class AsyncInvoke:
    """Dispatches a task made by :meth:`AsyncClient.create_deferred`: ``await invoke()``."""

    __slots__ = ("_native",)

    def __init__(self, native: _qtask.AsyncInvoke) -> None:
        self._native = native

    @property
    def task_id(self) -> int:
        return self._native.task_id

    async def __call__(self) -> bool:
        """Pushes the message; ``False`` means the queue was down and the sweeper will.

        Raises:
            qtask.InvalidState: it was already called.
        """
        return await self._native()

    def __repr__(self) -> str:
        return f"<qtask AsyncInvoke task_id={self.task_id}>"


class AsyncClient:
    """:class:`qtask.Client` for asyncio: the same arguments, the same methods as
    coroutines, the same exceptions.

    It connects on first use, on the engine's runtime (so that creating one never
    blocks the event loop); ``async with`` or ``await client.connect()`` connects at
    once and raises a connection error there. Share one per process, between any
    number of tasks and event loops.

    Cancelling an ``await`` (``task.cancel()``, ``asyncio.timeout``): a wait
    (:meth:`pop`, :meth:`result`) ends at once; a write (``create``, ``finish``, …)
    still runs to its end in the engine, its value unused. A message :meth:`pop` had
    claimed when its ``await`` was cancelled is handed back: the task waits again,
    due now, with no attempt used.
    """

    def __init__(self, db: Optional[str] = None, queue: Optional[str] = None, **settings: Any) -> None:
        self._native = _qtask.AsyncClient(_args.config_json(db, queue, settings))

    # --- lifecycle

    @property
    def db(self) -> str:
        return self._native.db

    @property
    def queue(self) -> str:
        return self._native.queue

    @property
    def namespace(self) -> str:
        return self._native.namespace

    @property
    def table_prefix(self) -> str:
        return self._native.table_prefix

    @property
    def closed(self) -> bool:
        return self._native.closed

    async def connect(self) -> None:
        """Connects now (and starts the sweeper unless ``sweeper=False``); otherwise the
        first call does. Calling it again does nothing.

        Raises:
            qtask.DatabaseError, qtask.QueueError: a server cannot be reached (the next
                call tries again).
        """
        await self._native.connect()

    async def close(self) -> None:
        """Stops the sweeper and closes connections; later calls raise ``qtask.ClosedError``."""
        await self._native.close()

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return repr(self._native)

    async def install(self) -> None:
        """Creates or migrates the task table. Idempotent; never drops data."""
        await self._native.install()

    # --- producing

    async def create(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        queue: str,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        order_no: Optional[str] = None,
        priority: Optional[int] = None,
        time_limit: Optional[float] = None,
        connection: Any = None,
    ) -> Created:
        """As :meth:`qtask.Client.create`. ``connection``: your own async connection
        (``psycopg.AsyncConnection``, or a SQLAlchemy ``AsyncConnection`` /
        ``AsyncSession``), inside whose transaction the row is written."""
        task = _args.task_json(
            name, input, queue, timeout, deadline, delete_deadline, max_count, order_no,
            priority=priority, time_limit=time_limit,
        )
        if connection is not None:
            from ._async_outbox import create_on

            return (await create_on(self._native, connection, [task]))[0]
        return _args.created(await self._native.create(task))

    async def create_deferred(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        queue: str,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        order_no: Optional[str] = None,
        priority: Optional[int] = None,
        time_limit: Optional[float] = None,
    ) -> tuple[int, AsyncInvoke]:
        """As :meth:`qtask.Client.create_deferred`; ``await invoke()`` dispatches."""
        task_id, _existing, invoke = await self._native.create_deferred(
            _args.task_json(
                name, input, queue, timeout, deadline, delete_deadline, max_count, order_no,
                priority=priority, time_limit=time_limit,
            )
        )
        return task_id, AsyncInvoke(invoke)

    async def delay(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        queue: str,
        delay: float,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        order_no: Optional[str] = None,
        priority: Optional[int] = None,
        time_limit: Optional[float] = None,
        connection: Any = None,
    ) -> Created:
        """As :meth:`qtask.Client.delay`."""
        task = _args.task_json(
            name, input, queue, timeout, deadline, delete_deadline, max_count, order_no, _args.required_delay(delay),
            priority, time_limit,
        )
        if connection is not None:
            from ._async_outbox import create_on

            return (await create_on(self._native, connection, [task]))[0]
        return Created(*await self._native.delay(task))

    async def create_many(self, tasks: Iterable[NewTask], *, connection: Any = None) -> List[Created]:
        """As :meth:`qtask.Client.create_many`: one transaction, all or nothing."""
        items = [_args.item_json(i, task) for i, task in enumerate(tasks)]
        if connection is not None:
            from ._async_outbox import create_on

            return await create_on(self._native, connection, items)
        return [Created(*c) for c in await self._native.create_many(items)]

    async def dispatch(self, task_id: int) -> bool:
        """As :meth:`qtask.Client.dispatch`."""
        return await self._native.dispatch(int(task_id))

    # --- consuming

    async def pop(self, queue: str, wait: float = 1.0) -> Optional[Message]:
        """Waits up to ``wait`` seconds for a message of ``queue`` without blocking the
        event loop; the message, or ``None``.

        Cancelled while waiting, it claims nothing more; a message it had already
        claimed is handed back (waiting again, due now, no attempt used).
        """
        future = self._native.pop(_args.text(queue, "queue"), cast(float, _args.seconds(wait, "wait")))
        try:
            text = await future
        except asyncio.CancelledError:
            # The message arrived, but this task was cancelled before it resumed.
            if future.done() and not future.cancelled() and future.exception() is None:
                message = future.result()
                if message is not None:
                    claimed = json.loads(message)
                    self._native.hand_back(claimed["task_id"], claimed["attempt"])
            raise
        return None if text is None else Message._from_json(text)

    async def processing(self, task_id: int) -> bool:
        """As :meth:`qtask.Client.processing`: ``False`` means skip the task."""
        return await self._native.processing(task_id) is not None

    async def finish(self, task_id: int) -> None:
        """Marks the task finished."""
        await self._native.finish(task_id)

    async def fail(self, task_id: int, error: str) -> str:
        """Records a failed attempt; returns ``"waiting"`` or ``"failed"``."""
        return await self._native.fail(task_id, _args.error_text(error))

    async def cancel(self, task_id: int) -> None:
        """Stops a live task."""
        await self._native.cancel(task_id)

    async def result(self, task_id: int, wait: float = 0.0) -> Any:
        """As :meth:`qtask.Client.result`, waiting without blocking the event loop.

        Raises:
            qtask.NotFound, qtask.InvalidState, qtask.TimeoutError: as ``Client.result``.
        """
        return json.loads(await self._native.result(task_id, _args.result_wait(wait)))

    async def get(self, task_id: int) -> Task:
        """The task's row. Raises ``qtask.NotFound`` for an unknown id."""
        return cast(Task, json.loads(await self._native.get(task_id)))

    async def stats(self) -> Stats:
        """Task counts of this namespace and this client's sweeper counters."""
        return cast(Stats, json.loads(await self._native.stats()))

    async def sweep_once(self) -> SweepReport:
        """Runs one sweep now."""
        return cast(SweepReport, json.loads(await self._native.sweep_once()))

    # --- operators

    async def list_tasks(
        self,
        *,
        status: Optional[str] = None,
        queue: Optional[str] = None,
        name: Optional[str] = None,
        created_from: Optional[int] = None,
        created_until: Optional[int] = None,
        before_id: Optional[int] = None,
        limit: int = 50,
    ) -> TaskPage:
        """As :meth:`qtask.Client.list_tasks`."""
        filter_json = _args.filter_json(status, queue, name, created_from, created_until)
        return cast(TaskPage, json.loads(await self._native.list_tasks(filter_json, before_id, limit)))

    async def count_tasks(
        self, *, status: Optional[str] = None, queue: Optional[str] = None, name: Optional[str] = None
    ) -> int:
        return await self._native.count_tasks(_args.filter_json(status, queue, name, None, None))

    async def retry(self, task_id: int) -> None:
        """As :meth:`qtask.Client.retry`."""
        await self._native.retry(task_id)

    async def retry_matching(
        self, *, status: str = "failed", queue: Optional[str] = None, name: Optional[str] = None
    ) -> int:
        return await self._native.retry_matching(_args.filter_json(status, queue, name, None, None))

    async def cancel_matching(
        self, *, status: Optional[str] = None, queue: Optional[str] = None, name: Optional[str] = None
    ) -> int:
        return await self._native.cancel_matching(_args.filter_json(status, queue, name, None, None))

    async def pause_queue(self, queue: str) -> None:
        await self._native.pause_queue(queue)

    async def resume_queue(self, queue: str) -> None:
        await self._native.resume_queue(queue)

    async def set_queue_limits(
        self,
        queue: str,
        *,
        max_processing: Optional[int] = None,
        max_per_second: Optional[float] = None,
    ) -> None:
        """As :meth:`qtask.Client.set_queue_limits`."""
        await self._native.set_queue_limits(queue, _args.limits_json(max_processing, max_per_second))

    async def queues(self) -> List[QueueSummary]:
        return cast(List[QueueSummary], json.loads(await self._native.queues()))

    async def rates(self, minutes: int = 60) -> List[RatePoint]:
        return cast(List[RatePoint], json.loads(await self._native.rates(minutes)))

    # --- periodic tasks

    async def schedule(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        queue: str,
        cron: Optional[str] = None,
        every: Optional[float] = None,
        time_zone: Optional[str] = None,
        missed: Missed = "run_once",
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        priority: Optional[int] = None,
    ) -> ScheduleInfo:
        """As :meth:`qtask.Client.schedule`."""
        options = _args.schedule_options(
            queue, cron, every, time_zone, missed, timeout, deadline, delete_deadline, max_count, priority
        )
        text = await self._native.schedule(_args.text(name, "name"), _args.dumps(input, "input"), options)
        return cast(ScheduleInfo, json.loads(text))

    async def unschedule(self, name: str) -> bool:
        return await self._native.unschedule(_args.text(name, "name"))

    async def schedules(self) -> List[ScheduleInfo]:
        return cast(List[ScheduleInfo], json.loads(await self._native.schedules()))
