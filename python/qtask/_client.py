"""The typed client: thin wrappers over the native ``qtask._qtask.Client``."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, TypeVar, cast, overload

from . import _qtask
from . import _args
from ._kinds import KindDecorator, TaskKind
from .errors import InvalidArgument
from .types import (
    Created,
    Message,
    NewTask,
    QueueSummary,
    Missed,
    RatePoint,
    ScheduleInfo,
    Stats,
    SweepReport,
    Task,
    TaskPage,
    WorkerReport,
)

if TYPE_CHECKING:
    from types import TracebackType

Handler = Callable[[Message], Any]
"""A task handler: called with the message dict; may be ``async def``."""

H = TypeVar("H", bound=Handler)


class Invoke:
    """Dispatches a task made by :meth:`Client.create_deferred`.

    Call it once, after the transaction that made the task meaningful commits. If it
    is never called, the sweeper dispatches the task once its timeout has passed.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _qtask.Invoke) -> None:
        self._native = native

    @property
    def task_id(self) -> int:
        return self._native.task_id

    def __call__(self) -> bool:
        """Pushes the message; ``False`` means the queue was down and the sweeper will.

        Raises:
            qtask.InvalidState: it was already called.
        """
        return self._native()

    def __repr__(self) -> str:
        return repr(self._native)


class Client:
    """A connection to a task table and its queue, plus this process's sweeper.

    Arguments:
        db: database URL (``sqlite://file.db``, ``postgres://...``, ``mysql://...``);
            default ``$QTASK_DB_URL``, else ``sqlite://qtask.db``.
        queue: ``"db"`` (the database carries the tasks) or a Redis URL; default
            ``$QTASK_QUEUE_URL``, else ``"db"``.
        settings: ``namespace``, ``table_prefix``, ``redis_prefix``, ``sweeper``
            (``False`` for pure producers), ``sweep_interval``, ``batch_size``,
            ``max_payload_bytes``, ``retry_backoff``, ``retry_backoff_max``,
            ``max_connections``, ``connect_timeout``; durations in seconds.

    Raises:
        qtask.InvalidArgument: an unknown setting or a bad value.
        qtask.DatabaseError, qtask.QueueError: a server cannot be reached.

    Thread-safe: share one client between threads; every blocking call releases the GIL.
    """

    def __init__(self, db: Optional[str] = None, queue: Optional[str] = None, **settings: Any) -> None:
        self._native = _qtask.Client(_args.config_json(db, queue, settings))
        self._handlers: dict[str, Handler] = {}
        self._kinds: dict[str, dict[str, TaskKind[Any, Any]]] = {}

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

    def close(self) -> None:
        """Stops the sweeper and closes connections; later calls raise ``qtask.ClosedError``."""
        self._native.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._native)

    def install(self) -> None:
        """Creates or migrates the task table. Idempotent; never drops data."""
        self._native.install()

    # --- producing

    def create(
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
        """Writes the task and dispatches it; returns its id, an ``int`` that also tells
        whether the task already ``existed`` and whether it was ``dispatched``.

        Arguments:
            name: for people ("订单绑定任务").
            input: a JSON object; the worker gets it plus ``task_id`` and ``attempt``.
            queue: queue name ("ORDER:BIND").
            timeout: lease of one dispatch in seconds (default 300): unfinished after
                it, the task is dispatched again.
            deadline: seconds after which it is never dispatched again (default 7 days).
            delete_deadline: seconds a finished row is kept (default 0).
            max_count: dispatches at most (default 100).
            order_no: business number; a live task with the same queue and number is
                returned instead of a new one (``existing`` is then true).
            priority: claims take higher priority first, then the earliest due
                (default 0, from -1000 to 1000).
            time_limit: seconds one attempt may run (default: the worker's
                ``time_limit``, if any); past it the handler is told and the attempt
                fails, as with ``run_worker(time_limit=…)``.
            connection: your own open connection to the same database (``sqlite3``,
                ``psycopg``, ``PyMySQL``, or a SQLAlchemy ``Connection`` / ``Session``):
                the row is written in your current transaction, and workers see the
                task only once you commit; a rollback leaves nothing. Nothing is
                dispatched then (``dispatched`` is false): a ``db``-queue worker claims
                it after the commit and the sweeper offers it to Redis within a sweep
                interval, or call :meth:`dispatch` after the commit.

        If the queue (Redis) is down, the task is still saved, a warning is logged on the
        ``qtask`` logger, and the sweeper dispatches it once the queue is back.

        Raises:
            qtask.InvalidArgument: bad input; nothing was written.
        """
        task = _args.task_json(
            name, input, queue, timeout, deadline, delete_deadline, max_count, order_no,
            priority=priority, time_limit=time_limit,
        )
        if connection is not None:
            from ._outbox import create_on

            return create_on(self._native, connection, [task])[0]
        return _args.created(self._native.create(task))

    def create_deferred(
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
    ) -> tuple[int, Invoke]:
        """Writes the task on qtask's own connection without dispatching it; returns
        ``(id, invoke)``; call ``invoke()`` to dispatch it.

        The row is committed at once, whatever your transaction does: to tie the task
        to your transaction, pass ``connection=`` to :meth:`create` instead.
        """
        task_id, _existing, invoke = self._native.create_deferred(
            _args.task_json(
                name, input, queue, timeout, deadline, delete_deadline, max_count, order_no,
                priority=priority, time_limit=time_limit,
            )
        )
        return task_id, Invoke(invoke)

    def delay(
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
        """Writes the task only; the sweeper dispatches it ``delay`` seconds from now.
        ``connection``: as for :meth:`create`."""
        task = _args.task_json(
            name, input, queue, timeout, deadline, delete_deadline, max_count, order_no, _args.required_delay(delay),
            priority, time_limit,
        )
        if connection is not None:
            from ._outbox import create_on

            return create_on(self._native, connection, [task])[0]
        return Created(*self._native.delay(task))

    def create_many(self, tasks: Iterable[NewTask], *, connection: Any = None) -> list[Created]:
        """Creates and dispatches several tasks in one transaction; returns their ids
        (``int``s with ``existing`` and ``dispatched``).

        Each item is a dict with ``name``, ``input``, ``queue`` and optionally the
        options of :meth:`create`. All or nothing: one bad task writes none. With
        ``connection``, every row is written in your transaction, as for :meth:`create`.
        """
        items = [_args.item_json(i, task) for i, task in enumerate(tasks)]
        if connection is not None:
            from ._outbox import create_on

            return create_on(self._native, connection, items)
        return [Created(*c) for c in self._native.create_many(items)]

    def dispatch(self, task_id: int) -> bool:
        """Offers a task created with ``connection=``, after your commit, to its Redis
        queue now instead of at the next sweep.

        Returns ``True`` when it is on the queue now (always, on the ``db`` queue),
        ``False`` when it was not waiting and due (already offered or claimed, ended,
        delayed, not committed) or Redis was down (the sweeper offers it later).
        """
        return self._native.dispatch(int(task_id))

    # --- consuming

    def pop(self, queue: str, wait: float = 1.0) -> Optional[Message]:
        """Waits up to ``wait`` seconds for a message of ``queue``.

        Returns the :class:`qtask.Message` (the input plus ``task_id`` and ``attempt``;
        also ``name``, ``deadline_at``, ``input`` as attributes), or ``None``. Then
        call :meth:`processing`, do the work, and :meth:`finish` or :meth:`fail`.
        """
        text = self._native.pop(_args.text(queue, "queue"), cast(float, _args.seconds(wait, "wait")))
        return None if text is None else Message._from_json(text)

    def processing(self, task_id: int) -> bool:
        """Marks the task running and extends its lease by its timeout.

        Returns ``False`` when the caller must skip it (finished, failed, cancelled,
        past its deadline, or gone). Call it again during a long job to keep the lease.
        """
        return self._native.processing(task_id) is not None

    def finish(self, task_id: int) -> None:
        """Marks the task finished. Twice is fine; finishing a cancelled task raises InvalidState."""
        self._native.finish(task_id)

    def fail(self, task_id: int, error: str) -> str:
        """Records a failed attempt; returns the new status, ``"waiting"`` (retried with
        backoff) or ``"failed"`` (attempts or deadline spent)."""
        # A failure's text is kept even when it holds a lone surrogate (replaced).
        return self._native.fail(task_id, _args.error_text(error))

    def cancel(self, task_id: int) -> None:
        """Stops a live task. Twice is fine; cancelling a finished task raises InvalidState."""
        self._native.cancel(task_id)

    def result(self, task_id: int, wait: float = 0.0) -> Any:
        """The value the task's handler returned (``None`` when it returned none),
        waiting up to ``wait`` seconds while the task is live.

        The finished row, and so its result, is kept only until its
        ``delete_deadline``: create the task with one (seconds) to read its result.

        Raises:
            qtask.NotFound: no such task (or it was cleaned up).
            qtask.InvalidState: it failed or was cancelled (the message says why).
            qtask.TimeoutError: it is still live after ``wait``.
        """
        return json.loads(self._native.result(task_id, _args.result_wait(wait)))

    def get(self, task_id: int) -> Task:
        """The task's row. Raises ``qtask.NotFound`` for an unknown id."""
        return cast(Task, json.loads(self._native.get(task_id)))

    def stats(self) -> Stats:
        """Task counts of this namespace and this client's sweeper counters."""
        return cast(Stats, json.loads(self._native.stats()))

    def sweep_once(self) -> SweepReport:
        """Runs one sweep now (dispatch due and overdue tasks, give up, clean up)."""
        return cast(SweepReport, json.loads(self._native.sweep_once()))

    # --- operators

    def list_tasks(
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
        """Tasks matching every given filter, newest first, with ids below ``before_id``.

        ``status`` is ``waiting``, ``processing``, ``finished``, ``failed`` or
        ``cancelled``; times are Unix milliseconds; ``limit`` is 1 to 1000.
        """
        filter_json = _args.filter_json(status, queue, name, created_from, created_until)
        return cast(TaskPage, json.loads(self._native.list_tasks(filter_json, before_id, limit)))

    def count_tasks(self, *, status: Optional[str] = None, queue: Optional[str] = None, name: Optional[str] = None) -> int:
        """How many tasks match the filters."""
        return self._native.count_tasks(_args.filter_json(status, queue, name, None, None))

    def retry(self, task_id: int) -> None:
        """Makes a failed or cancelled task wait again, due now, with a fresh attempt
        budget; its last error is kept. Raises ``qtask.InvalidState`` for a live or
        finished task."""
        self._native.retry(task_id)

    def retry_matching(self, *, status: str = "failed", queue: Optional[str] = None, name: Optional[str] = None) -> int:
        """Retries every failed (or, with ``status="cancelled"``, cancelled) task
        matching the filters; returns how many."""
        return self._native.retry_matching(_args.filter_json(status, queue, name, None, None))

    def cancel_matching(self, *, status: Optional[str] = None, queue: Optional[str] = None, name: Optional[str] = None) -> int:
        """Cancels every waiting or processing task matching the filters; returns how many."""
        return self._native.cancel_matching(_args.filter_json(status, queue, name, None, None))

    def pause_queue(self, queue: str) -> None:
        """Stops dispatching ``queue`` (every worker notices within one sweep interval)."""
        self._native.pause_queue(queue)

    def resume_queue(self, queue: str) -> None:
        self._native.resume_queue(queue)

    def set_queue_limits(
        self,
        queue: str,
        *,
        max_processing: Optional[int] = None,
        max_per_second: Optional[float] = None,
    ) -> None:
        """Limits ``queue`` across every worker of every process; ``None`` is no limit.

        Arguments:
            max_processing: tasks of the queue processing at once (at least 1).
            max_per_second: claims per second (above 0; fractions allowed).

        Enforced where tasks are claimed, in the database; other processes notice
        within one sweep interval. Call with no limits to remove them.

        Raises:
            qtask.InvalidArgument: a limit out of range; nothing was changed.
        """
        self._native.set_queue_limits(queue, _args.limits_json(max_processing, max_per_second))

    def queues(self) -> List[QueueSummary]:
        """Every queue of the namespace with its counts by status, pause flag and limits."""
        return cast(List[QueueSummary], json.loads(self._native.queues()))

    def rates(self, minutes: int = 60) -> List[RatePoint]:
        """Tasks finished and failed per minute over the last ``minutes``, oldest first."""
        return cast(List[RatePoint], json.loads(self._native.rates(minutes)))

    # --- periodic tasks

    def schedule(
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
        """Declares the periodic task ``name``, or replaces the one of that name.

        Each tick makes exactly one task named ``name`` with ``input``, however many
        processes sweep. Declaring it again with the same timing keeps its next tick,
        so a program may declare its schedules at every start.

        Arguments:
            cron: a cron expression (5 fields, 6 with seconds first, or ``"@hourly"``…),
                read in ``time_zone`` (an IANA name such as ``"Asia/Shanghai"``,
                default UTC). Exactly one of ``cron`` and ``every``.
            every: an interval in seconds (at least 1), the first tick one interval
                from now.
            missed: ticks missed while no process swept: ``"run_once"`` makes one
                catch-up task, ``"skip"`` none; then the next future tick.
            timeout, deadline, delete_deadline, max_count, priority: as for
                :meth:`create`, for each task it makes (``priority``: claims take
                higher priority first; default 0, from -1000 to 1000).

        Returns the stored schedule (``next_at``: its next tick, Unix ms).

        Raises:
            qtask.InvalidArgument: a bad expression, time zone or interval (or input);
                nothing was written.
        """
        options = _args.schedule_options(queue, cron, every, time_zone, missed, timeout, deadline, delete_deadline, max_count, priority)
        text = self._native.schedule(_args.text(name, "name"), _args.dumps(input, "input"), options)
        return cast(ScheduleInfo, json.loads(text))

    def unschedule(self, name: str) -> bool:
        """Removes the schedule ``name``; returns whether it existed. Tasks it made stay."""
        return self._native.unschedule(_args.text(name, "name"))

    def schedules(self) -> List[ScheduleInfo]:
        """Every schedule of the namespace, by name."""
        return cast(List[ScheduleInfo], json.loads(self._native.schedules()))

    # --- worker

    @overload
    def task(self, queue: str) -> Callable[[H], H]: ...

    @overload
    def task(
        self,
        queue: str,
        *,
        name: str,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        priority: Optional[int] = None,
    ) -> KindDecorator: ...

    def task(
        self,
        queue: str,
        *,
        name: Optional[str] = None,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        priority: Optional[int] = None,
    ) -> Any:
        """Registers the decorated function as a handler of ``queue``.

        ``@client.task(queue)``: the queue's handler for every task of it (the task
        name is only a label), called with the :class:`qtask.Message` (a dict: the
        input plus ``task_id`` and ``attempt``); returns the function itself.

        ``@client.task(queue, name="billing.charge")``: the handler of one kind of
        task in the queue, the tasks named ``name``; a worker of the queue calls it
        with the input as keyword arguments (with the :class:`qtask.Message` first
        when its first parameter is annotated ``qtask.Message``). Returns a
        :class:`qtask.TaskKind`: it calls like the function, and enqueues
        (``charge.create(amount=3)``, ``charge.options(order_no="A-1").create(…)``,
        ``charge.delay(60, …)``, ``charge.new_task(…)`` for :meth:`create_many`).
        ``timeout``, ``deadline``, ``delete_deadline``, ``max_count`` and ``priority``
        are the kind's default options. A queue may have kinds and a handler for
        every other name; without that handler, a task whose name has no handler on
        the worker is retried with backoff ("no handler for task name …" as its last
        error), so that in a rolling deploy the workers that have it take it.

        Either way, returning finishes the task, keeping a returned value
        (JSON-serialisable; ``None`` keeps none) as its result, read with
        :meth:`result`. Raising ``qtask.Retry(after=s)``, ``qtask.Cancel(reason)`` or
        ``qtask.FailNow(reason)`` ends the attempt that way; any other exception fails
        it, with the traceback as its last error, and the task is retried with
        backoff. ``async def`` handlers run on an asyncio loop.
        """
        _args.text(queue, "queue")
        if name is None:

            def register(handler: H) -> H:
                if queue in self._handlers:
                    raise InvalidArgument(f"queue {queue!r} already has a handler")
                self._handlers[queue] = handler
                return handler

            return register
        if not _args.text(name, "name"):
            raise InvalidArgument("name must not be empty")
        defaults = dict(
            timeout=timeout, deadline=deadline, delete_deadline=delete_deadline, max_count=max_count, priority=priority
        )

        def register_kind(fn: Callable[..., Any]) -> TaskKind[Any, Any]:
            from ._kinds import MessageKind, takes_message

            kinds = self._kinds.setdefault(queue, {})
            if name in kinds:
                raise InvalidArgument(f"queue {queue!r} already has a handler for {name!r}")
            cls = MessageKind if takes_message(fn) else TaskKind
            kind: TaskKind[Any, Any] = cls(self, fn, queue, name, defaults)
            kinds[name] = kind
            return kind

        return KindDecorator(register_kind)

    @property
    def handlers(self) -> Mapping[str, Handler]:
        """The handlers registered with ``@client.task(queue)``, by queue."""
        return dict(self._handlers)

    @property
    def kinds(self) -> Mapping[str, Mapping[str, TaskKind[Any, Any]]]:
        """The kinds registered with ``@client.task(queue, name=…)``, by queue and name."""
        return {q: dict(k) for q, k in self._kinds.items()}

    def run_worker(
        self,
        concurrency: int = 1,
        *,
        queues: Optional[Iterable[str]] = None,
        stop: Optional[threading.Event] = None,
        poll_wait: float = 0.5,
        handle_signals: bool = True,
        time_limit: Optional[float] = None,
    ) -> WorkerReport:
        """Runs the registered handlers until SIGINT/SIGTERM (or ``stop.set()``).

        Each task goes to the kind registered for its name in its queue, else to the
        queue's ``@client.task(queue)`` handler; with neither, it is retried with
        backoff (see :meth:`task`).

        Arguments:
            concurrency: handlers running at once, per queue (threads for sync
                handlers, coroutines on one asyncio loop for ``async def`` ones).
            queues: the queues to work on (default: every registered one).
            stop: a ``threading.Event``; setting it stops the worker gracefully.
            poll_wait: kept for compatibility; the engine decides how long it waits.
            handle_signals: install SIGINT/SIGTERM handlers (main thread only).
            time_limit: the longest one attempt may run, in seconds (default: none).
                Past it the attempt fails ("time limit of Ns exceeded", retried with
                backoff) and the handler is told: ``qtask.TimeLimitExceeded`` is
                raised in a sync handler, an ``async def`` one is cancelled.

        A stop lets running handlers end, then returns what was done. A second
        signal raises ``KeyboardInterrupt`` at once.
        """
        from ._worker import Worker

        handlers, kinds = self._handlers, self._kinds
        if queues is not None:
            wanted = list(queues)
            missing = [q for q in wanted if q not in handlers and q not in kinds]
            if missing:
                raise InvalidArgument(f"no handler registered for {missing}")
            handlers = {q: handlers[q] for q in wanted if q in handlers}
            kinds = {q: kinds[q] for q in wanted if q in kinds}
        worker = Worker(
            self._native, handlers, kinds=kinds, concurrency=concurrency, stop=stop, time_limit=time_limit
        )
        return worker.run(handle_signals=handle_signals)
