"""qtask: a durable task dispatcher.

A task's row in a database (SQLite, PostgreSQL, MySQL) is the truth; a queue (the
database itself, or Redis) carries it to a worker; a sweeper in every client
re-dispatches whatever is due or overdue, so that no task is lost.

    import qtask

    client = qtask.Client()          # sqlite://qtask.db + the db queue, or $QTASK_DB_URL
    client.install()
    task_id = client.create("bind order", {"order_no": "8973097380045"}, queue="ORDER:BIND")

    @client.task("ORDER:BIND")
    def bind(message):               # the input plus task_id and attempt
        ...                          # return: finished (a value is kept: client.result(id));
                                     # raise: retried with backoff; qtask.Retry(after=…),
                                     # qtask.Cancel(reason), qtask.FailNow(reason)

    @client.task("EMAIL", name="send_email")
    def send_email(to: str, subject: str) -> None:   # one kind of task of a queue:
        ...                                          # the input as keyword arguments

    send_email.create(to="a@example.com", subject="hi")             # type-checked
    send_email.options(order_no="A-1", priority=5).create(to="…", subject="…")

    client.run_worker(concurrency=4) # until SIGINT / SIGTERM
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import Client, Handler, Invoke
from ._kinds import MessageKind, TaskKind
from ._qtask import __version__
from .errors import (
    ClosedError,
    DatabaseError,
    Error,
    InternalError,
    InvalidArgument,
    InvalidState,
    NotFound,
    QueueError,
    TimeoutError,
)
from .outcomes import Cancel, FailNow, Retry, TimeLimitExceeded
from .types import (
    Created,
    Message,
    Missed,
    NewTask,
    QueueLimits,
    QueueSummary,
    RatePoint,
    ScheduleInfo,
    Stats,
    SweepReport,
    Task,
    TaskPage,
    WorkerReport,
)

if TYPE_CHECKING:
    from ._async_client import AsyncClient, AsyncInvoke


def __getattr__(name: str) -> Any:
    # The asyncio client is imported on first use: a worker or producer that never
    # touches it does not pay for asyncio (and the ssl module it loads).
    if name in ("AsyncClient", "AsyncInvoke"):
        from . import _async_client

        return getattr(_async_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "Client",
    "Invoke",
    "AsyncClient",
    "AsyncInvoke",
    "Created",
    "Handler",
    "Message",
    "TaskKind",
    "MessageKind",
    "NewTask",
    "Task",
    "Stats",
    "SweepReport",
    "TaskPage",
    "QueueLimits",
    "QueueSummary",
    "RatePoint",
    "ScheduleInfo",
    "Missed",
    "WorkerReport",
    "Retry",
    "Cancel",
    "FailNow",
    "TimeLimitExceeded",
    "Error",
    "InvalidArgument",
    "NotFound",
    "InvalidState",
    "DatabaseError",
    "QueueError",
    "TimeoutError",
    "ClosedError",
    "InternalError",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
