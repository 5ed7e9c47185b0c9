"""Stubs for the native module ``qtask._qtask`` (hand-written; keep in step with qtask-py/src).

Private: use :mod:`qtask`. Dicts cross as JSON text; the Python layer converts them.
Every method that does I/O releases the GIL. Errors are ``qtask.errors`` classes.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union, final

__version__: str

def redact(text: str) -> str:
    """The text with every URL password replaced by ``***``."""

@final
class Client:
    """A blocking qtask client; thread-safe."""

    def __init__(self, config_json: str) -> None:
        """Connects; starts the sweeper unless the config says ``"sweeper": false``.

        Arguments:
            config_json: a JSON object with the keys of qtask-core's ``Config``.

        Raises:
            qtask.InvalidArgument: an unknown key or a bad value.
            qtask.DatabaseError: the database cannot be reached.
            qtask.QueueError: the queue cannot be reached.
        """

    @property
    def db(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def table_prefix(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def install(self) -> None: ...
    def create(self, task_json: str) -> Tuple[int, bool, bool]:
        """``task_json`` is qtask-core's ``TaskArgs`` as JSON. Returns ``(id, existing, dispatched)``."""

    def create_deferred(self, task_json: str) -> Tuple[int, bool, Invoke]:
        """Returns ``(id, existing, invoke)``."""

    def delay(self, task_json: str) -> Tuple[int, bool, bool]:
        """The delay is the task's ``delay`` key. Returns ``(id, existing, dispatched)``."""

    def create_many(self, tasks: List[str]) -> List[Tuple[int, bool, bool]]: ...
    def create_statement(self, task_json: str, param_style: str) -> str:
        """The insert for the caller's connection, as JSON (``qtask_core::CallerInsert``)."""

    def dispatch(self, task_id: int) -> bool: ...
    def pop(self, queue: str, wait: float) -> Optional[str]:
        """The message as JSON text, or ``None`` after ``wait`` seconds."""

    def processing(self, task_id: int) -> Optional[float]:
        """The lease granted in seconds, or ``None``: skip the task."""

    def finish(self, task_id: int) -> None: ...
    def fail(self, task_id: int, error: str) -> str:
        """The new status, ``"waiting"`` or ``"failed"``."""

    def cancel(self, task_id: int) -> None: ...
    def result(self, task_id: int, wait: float) -> str: ...
    def get(self, task_id: int) -> str: ...
    def stats(self) -> str: ...
    def sweep_once(self) -> str: ...
    def list_tasks(self, filter_json: str, before_id: Optional[int], limit: int) -> str: ...
    def count_tasks(self, filter_json: str) -> int: ...
    def retry(self, task_id: int) -> None: ...
    def retry_matching(self, filter_json: str) -> int: ...
    def cancel_matching(self, filter_json: str) -> int: ...
    def pause_queue(self, queue: str) -> None: ...
    def resume_queue(self, queue: str) -> None: ...
    def set_queue_limits(self, queue: str, limits_json: str) -> None: ...
    def queues(self) -> str: ...
    def rates(self, minutes: int) -> str: ...
    def schedule(self, name: str, input_json: str, options_json: str) -> str: ...
    def unschedule(self, name: str) -> bool: ...
    def schedules(self) -> str: ...
    def close(self) -> None: ...

@final
class Invoke:
    """Dispatches a deferred task, once."""

    @property
    def task_id(self) -> int: ...
    def __call__(self) -> bool: ...

@final
class WorkerStop:
    """Stops a running worker gracefully; ``stop()`` is safe from any thread."""

    def __init__(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def stopped(self) -> bool: ...

@final
class TimeUp:
    """Tells a running handler that the worker's time limit for its attempt passed."""

    @property
    def is_set(self) -> bool: ...
    def on_set(self, callback: Callable[[], object]) -> None:
        """Calls ``callback()`` once when the time is up (at once if it already is)."""

HandlerOutcome = Union[None, str, Tuple[str, Union[str, float]]]
"""``None`` finishes; a str retries with that error; ``(kind, value)`` with kind
``result`` (JSON text), ``retry_after`` (seconds), ``cancel`` or ``fail_now`` (reason)."""

def run_worker(
    client: Client,
    queue: str,
    handler: Callable[[Dict[str, Any], Optional[TimeUp]], HandlerOutcome],
    concurrency: int,
    stop: WorkerStop,
    time_limit: Optional[float] = None,
) -> Tuple[int, int, int, int, int]:
    """Runs qtask-core's worker engine on ``queue`` until ``stop``; ``handler`` is
    called on a pool of ``concurrency`` threads with the message (a dict) and the
    attempt's ``TimeUp`` (``None`` without a time limit, the worker's or the task's)
    and returns a ``HandlerOutcome``. Returns ``(finished, failed, skipped, snoozed,
    cancelled)``."""

@final
class AttemptReply:
    """Ends one attempt of an ``async def`` handler."""

    def send(self, outcome: HandlerOutcome) -> None:
        """Sends how the attempt ended (once; later sends are ignored)."""

@final
class AsyncInbox:
    """Tasks for ``async def`` handlers; the engine writes a byte to ``wake_fd`` (the
    writing end of a non-blocking socket pair) when tasks arrive after a ``take()``."""

    def __init__(self, wake_fd: int) -> None: ...
    def take(self) -> List[Tuple[Dict[str, Any], Optional[TimeUp], AttemptReply]]:
        """The tasks handed over since the last call."""

def run_async_worker(
    client: Client,
    queue: str,
    inbox: AsyncInbox,
    concurrency: int,
    stop: WorkerStop,
    time_limit: Optional[float] = None,
) -> Tuple[int, int, int, int, int]:
    """:func:`run_worker` for ``async def`` handlers: tasks go to ``inbox``, at most
    ``concurrency`` of them unanswered at once."""
