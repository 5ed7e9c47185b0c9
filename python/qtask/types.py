"""The dicts qtask hands out, as TypedDicts (plain dicts at run time)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover - Python 3.9 and 3.10
    from typing import TypedDict

__all__ = ["Created", "Message", "Missed", "NewTask", "ScheduleInfo", "Stats", "SweepReport", "Task", "WorkerReport"]

class Message(Dict[str, Any]):
    """What a worker receives (and :meth:`qtask.Client.pop` returns).

    As a dict, what handlers always got: the task's input plus ``task_id`` and
    ``attempt``. As an object: ``task_id``, ``attempt`` (the dispatch number: 2 or
    more is a re-dispatch), ``name`` (the task's kind), ``queue``, ``deadline_at``
    (Unix ms after which the task is never dispatched again) and ``input`` (the input
    alone, even when it has keys named ``task_id`` or ``attempt``).
    """

    task_id: int
    attempt: int
    name: str
    queue: str
    deadline_at: int
    input: Dict[str, Any]

    def __init__(
        self, *, task_id: int, attempt: int, name: str, queue: str, deadline_at: int, input: Dict[str, Any]
    ) -> None:
        super().__init__(input)
        self["task_id"] = task_id
        self["attempt"] = attempt
        self.task_id, self.attempt, self.name, self.queue = task_id, attempt, name, queue
        self.deadline_at, self.input = deadline_at, input

    @classmethod
    def _from_json(cls, text: str) -> "Message":
        """From the native layer's JSON (qtask-py ``message_json``)."""
        return cls(**json.loads(text))

    def __repr__(self) -> str:
        return (
            f"Message(task_id={self.task_id}, attempt={self.attempt}, name={self.name!r}, "
            f"queue={self.queue!r}, deadline_at={self.deadline_at}, input={self.input!r})"
        )

    def __reduce__(self) -> Any:
        fields = ("task_id", "attempt", "name", "queue", "deadline_at", "input")
        return (_message, ({k: getattr(self, k) for k in fields},))


def _message(fields: Dict[str, Any]) -> Message:
    return Message(**fields)


class Created(int):
    """What a create returns: the task id (an ``int``, so code that kept the id
    works as before), plus whether a live task of the queue already held the
    ``order_no`` (``existing``: the id is that task's) and whether the message is on
    its queue now (``dispatched``: false for delayed and existing tasks, tasks created
    on your connection, and when the queue was down; the sweeper dispatches them)."""

    existing: bool
    dispatched: bool

    def __new__(cls, id: int, existing: bool = False, dispatched: bool = False) -> "Created":
        self = super().__new__(cls, id)
        self.existing = bool(existing)
        self.dispatched = bool(dispatched)
        return self

    @property
    def id(self) -> int:
        return int(self)

    def __str__(self) -> str:
        # The id, as for an int: "task %s" % created, str(created), f"{created}".
        return int.__repr__(self)

    def __repr__(self) -> str:
        return f"Created(id={int(self)}, existing={self.existing}, dispatched={self.dispatched})"

    def __reduce__(self) -> Any:
        return (Created, (int(self), self.existing, self.dispatched))


class Task(TypedDict):
    """One row of the task table, from :meth:`qtask.Client.get`. Times are Unix ms."""

    id: int
    namespace: str
    name: str
    queue: str
    input: Dict[str, Any]
    order_no: Optional[str]
    status: str
    """One of ``"waiting"``, ``"processing"``, ``"finished"``, ``"failed"``, ``"cancelled"``."""
    timeout_ms: int
    next_at: Optional[int]
    deadline_at: int
    delete_at: int
    max_count: int
    count: int
    """Dispatches so far."""
    last_error: Optional[str]
    created_at: int
    updated_at: int
    priority: int
    """Claims take higher priority first (default 0)."""


class Stats(TypedDict):
    """From :meth:`qtask.Client.stats`: counts of this namespace's tasks, then this
    client's own counters since it opened."""

    waiting: int
    processing: int
    finished: int
    failed: int
    cancelled: int
    due: int
    redispatched_live: int
    dispatched: int
    redispatched: int
    gave_up: int
    deleted: int


class SweepReport(TypedDict):
    dispatched: int
    gave_up: int
    deleted: int
    scheduled: int
    """Tasks made by schedules whose tick came."""


Missed = Literal["run_once", "skip"]
"""What a schedule does about ticks missed while no process swept."""


class ScheduleInfo(TypedDict):
    """A periodic task as the database keeps it, from :meth:`qtask.Client.schedule`
    and :meth:`qtask.Client.schedules`. Times are Unix ms (database clock)."""

    name: str
    queue: str
    input: Dict[str, Any]
    cron: Optional[str]
    """``None`` for an interval."""
    time_zone: Optional[str]
    every_ms: Optional[int]
    """``None`` for a cron expression."""
    missed: Missed
    timeout_ms: int
    deadline_ms: int
    delete_after_ms: int
    max_count: int
    priority: int
    """The priority of the tasks its ticks make."""
    next_at: int
    """When the next tick is due."""
    last_tick_at: Optional[int]
    last_task_id: Optional[int]
    created_at: int
    updated_at: int


class TaskPage(TypedDict):
    """From :meth:`qtask.Client.list_tasks`: tasks newest first; pass
    ``next_before_id`` as ``before_id`` for the next page (``None`` on the last)."""

    tasks: List[Task]
    next_before_id: Optional[int]


class QueueLimits(TypedDict):
    """A queue's limits across every worker (``None``: no limit)."""

    max_processing: Optional[int]
    max_per_second: Optional[float]


class QueueSummary(TypedDict):
    """From :meth:`qtask.Client.queues`: one queue's counts, pause flag and limits."""

    queue: str
    paused: bool
    limits: QueueLimits
    waiting: int
    processing: int
    finished: int
    failed: int
    cancelled: int


class RatePoint(TypedDict):
    """From :meth:`qtask.Client.rates`: tasks that ended in one minute."""

    minute_at: int
    finished: int
    failed: int


if sys.version_info >= (3, 11):

    class NewTask(TypedDict):
        """One item of :meth:`qtask.Client.create_many`."""

        name: str
        input: Dict[str, Any]
        queue: str
        timeout: NotRequired[float]
        deadline: NotRequired[float]
        delete_deadline: NotRequired[float]
        max_count: NotRequired[int]
        order_no: NotRequired[str]
        priority: NotRequired[int]
        time_limit: NotRequired[float]

else:  # pragma: no cover

    class _NewTaskRequired(TypedDict):
        name: str
        input: Dict[str, Any]
        queue: str

    class NewTask(_NewTaskRequired, total=False):
        """One item of :meth:`qtask.Client.create_many`."""

        timeout: float
        deadline: float
        delete_deadline: float
        max_count: int
        order_no: str
        priority: int
        time_limit: float


@dataclass(frozen=True)
class WorkerReport:
    """What :meth:`qtask.Client.run_worker` did before it stopped."""

    finished: int = 0
    failed: int = 0
    """Handler errors, ``qtask.FailNow`` and time limits (retried later, or failed for good)."""
    skipped: int = 0
    """Outcomes of attempts that were no longer current: they changed nothing."""
    snoozed: int = 0
    """Handlers that raised ``qtask.Retry``: their tasks come back after the delay."""
    cancelled: int = 0
    """Handlers that raised ``qtask.Cancel``."""
