"""Argument checks and conversions shared by :class:`qtask.Client` and
:class:`qtask.AsyncClient`: both turn a call's arguments into what the engine reads
(JSON text, seconds as floats) here, so that they refuse the same bad input with the
same ``qtask.InvalidArgument``."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Mapping, Optional, Sequence

from .errors import InvalidArgument
from .types import Created, NewTask

_log = logging.getLogger("qtask")


def dumps(value: object, what: str) -> str:
    # ASCII escapes: a lone surrogate then reaches the engine as JSON it refuses
    # (InvalidArgument) instead of failing the str conversion.
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"{what} is not JSON-serialisable: {e}") from None


def text(value: str, what: str) -> str:
    """A str that crosses to the engine as UTF-8: a lone surrogate is bad input,
    not the TypeError the native conversion would raise."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{what} is not valid text: {e.reason} at index {e.start}") from None
    return value


def seconds(value: Optional[float], what: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{what} must be a number of seconds, got {value!r}")
    return float(value)


def integer(value: Optional[int], what: str) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidArgument(f"{what} must be an int, got {value!r}")
    return value


def task_json(
    name: str,
    input: Mapping[str, Any],
    queue: str,
    timeout: Optional[float] = None,
    deadline: Optional[float] = None,
    delete_deadline: Optional[float] = None,
    max_count: Optional[int] = None,
    order_no: Optional[str] = None,
    delay: Optional[float] = None,
    priority: Optional[int] = None,
    time_limit: Optional[float] = None,
) -> str:
    """One task as the engine reads it (qtask-core's ``TaskArgs``, as JSON text)."""
    integer(max_count, "max_count")
    integer(priority, "priority")
    if not isinstance(input, Mapping):
        raise InvalidArgument(f"input must be a dict, got {type(input).__name__}")
    task: dict[str, Any] = {"name": text(name, "name"), "input": input, "queue": text(queue, "queue")}
    options = {
        "timeout": seconds(timeout, "timeout"),
        "deadline": seconds(deadline, "deadline"),
        "delete_deadline": seconds(delete_deadline, "delete_deadline"),
        "max_count": max_count,
        "order_no": None if order_no is None else text(order_no, "order_no"),
        "delay": seconds(delay, "delay"),
        "priority": priority,
        "time_limit": seconds(time_limit, "time_limit"),
    }
    task.update((k, v) for k, v in options.items() if v is not None)
    return dumps(task, "input")


def item_json(i: int, task: object) -> str:
    """One item of ``create_many``."""
    if not isinstance(task, Mapping):
        raise InvalidArgument(f"tasks[{i}] must be a dict, got {type(task).__name__}")
    unknown = set(task) - set(NewTask.__annotations__)
    missing = {"name", "input", "queue"} - set(task)
    if unknown or missing:
        raise InvalidArgument(f"tasks[{i}]: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    return task_json(**task)


def required_delay(delay: Optional[float]) -> float:
    """``delay``'s seconds, which it must have."""
    value = seconds(delay, "delay")
    if value is None:
        raise InvalidArgument("delay is required")
    return value


def created(row: Sequence[Any]) -> Created:
    """What ``create`` returns, from the engine's ``(id, existing, dispatched)``; a task
    saved but not dispatched is logged, as the sweeper will dispatch it later."""
    task = Created(*row)
    if not task.existing and not task.dispatched:
        _log.warning("task %d is saved but its queue is unreachable; the sweeper will dispatch it", task)
    return task


def error_text(error: object) -> str:
    """A failure's text as the engine keeps it: a lone surrogate is replaced, not refused."""
    return str(error).encode("utf-8", "replace").decode("utf-8")


def result_wait(wait: Optional[float]) -> float:
    """How long ``result`` waits, in seconds (``None``: not at all)."""
    wait_s = seconds(wait, "wait")
    return 0.0 if wait_s is None else wait_s


def filter_json(
    status: Optional[str],
    queue: Optional[str],
    name: Optional[str],
    created_from: Optional[int],
    created_until: Optional[int],
) -> str:
    """A task filter as the engine reads it (``TaskFilter::from_json``)."""
    given = {
        "status": status,
        "queue": queue,
        "name": name,
        "created_from": created_from,
        "created_until": created_until,
    }
    return json.dumps({k: v for k, v in given.items() if v is not None})


def config_json(db: Optional[str], queue: Optional[str], settings: Mapping[str, Any]) -> str:
    """A client's settings as the engine reads them (``Config``, as JSON text)."""
    config: dict[str, Any] = {k: v for k, v in settings.items() if v is not None}
    if db is not None:
        config["db"] = db
    if queue is not None:
        config["queue"] = queue
    return dumps(config, "settings")


def limits_json(max_processing: Optional[int], max_per_second: Optional[float]) -> str:
    """Queue limits as the engine reads them (``QueueLimits``, as JSON text)."""
    processing = integer(max_processing, "max_processing")
    if processing is not None and not 0 <= processing < 2**32:
        raise InvalidArgument(f"max_processing must be 1 to {2**32 - 1}, got {max_processing}")
    if max_per_second is not None and (
        isinstance(max_per_second, bool) or not isinstance(max_per_second, (int, float))
    ):
        raise InvalidArgument(f"max_per_second must be a number, got {max_per_second!r}")
    rate = None if max_per_second is None else float(max_per_second)
    return json.dumps({"max_processing": max_processing, "max_per_second": rate})


def schedule_options(
    queue: str,
    cron: Optional[str],
    every: Optional[float],
    time_zone: Optional[str],
    missed: str,
    timeout: Optional[float],
    deadline: Optional[float],
    delete_deadline: Optional[float],
    max_count: Optional[int],
    priority: Optional[int] = None,
) -> str:
    """A schedule's options as the engine reads them (``Schedule::from_json``)."""
    options: Dict[str, Any] = {"queue": text(queue, "queue"), "missed": text(missed, "missed")}
    if cron is not None:
        options["cron"] = text(cron, "cron")
    if time_zone is not None:
        options["time_zone"] = text(time_zone, "time_zone")
    for key, value in (("every", every), ("timeout", timeout), ("deadline", deadline), ("delete_deadline", delete_deadline)):
        if value is not None:
            options[key] = seconds(value, key)
    for key, number in (("max_count", max_count), ("priority", priority)):
        if integer(number, key) is not None:
            options[key] = number
    return dumps(options, "schedule options")
