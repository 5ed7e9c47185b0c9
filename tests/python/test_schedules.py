"""Periodic tasks through Python: declare (cron in a time zone, an interval), replace,
list and remove; a tick reaches a worker once; bad timings write nothing."""

from __future__ import annotations

from typing import Any, Dict

import pytest

import qtask
from conftest import Backend, wait_until

Q = "PY:SCHED"


def test_schedules_are_declared_listed_replaced_and_removed(db_backend: Backend) -> None:
    with db_backend.client(sweeper=False) as c:
        c.install()
        nightly = c.schedule(
            "py nightly",
            {"kind": "report"},
            queue=Q,
            cron="0 9 * * *",
            time_zone="Asia/Shanghai",
            missed="skip",
            timeout=30,
            max_count=3,
        )
        assert (nightly["cron"], nightly["time_zone"], nightly["every_ms"]) == ("0 9 * * *", "Asia/Shanghai", None)
        assert (nightly["missed"], nightly["timeout_ms"], nightly["max_count"]) == ("skip", 30_000, 3)
        assert nightly["next_at"] % 86_400_000 == 3_600_000  # 09:00 in Shanghai is 01:00 UTC

        pulse = c.schedule("py pulse", {"n": 1}, queue=Q, every=60)
        assert (pulse["every_ms"], pulse["cron"], pulse["missed"]) == (60_000, None, "run_once")
        assert [s["name"] for s in c.schedules()] == ["py nightly", "py pulse"]

        # Declared again with the same timing (a program restarting): the tick stays.
        again = c.schedule("py pulse", {"n": 2}, queue=Q, every=60)
        assert again["next_at"] == pulse["next_at"] and again["input"] == {"n": 2}

        assert c.unschedule("py pulse") is True
        assert c.unschedule("py pulse") is False
        assert [s["name"] for s in c.schedules()] == ["py nightly"]


def test_a_tick_becomes_one_task(db_backend: Backend) -> None:
    with db_backend.client(sweeper=False) as c:
        c.install()
        assert c.schedule("py tick", {"n": 7}, queue=Q, every=1, priority=6)["priority"] == 6
        assert wait_until(lambda: c.sweep_once()["scheduled"], "the sweep that takes the tick") == 1
        assert c.sweep_once()["scheduled"] == 0, "a tick makes one task"
        message = c.pop(Q, wait=5.0)
        assert message is not None and message["n"] == 7
        task = c.get(message["task_id"])
        assert (task["name"], task["priority"]) == ("py tick", 6), "the schedule's priority"
        c.finish(message["task_id"])
        (info,) = c.schedules()
        assert info["last_task_id"] == message["task_id"]


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "61 * * * *"},
        {"cron": "not cron"},
        {"cron": "* * * * *", "time_zone": "Mars/Olympus"},
        {"every": 0},
        {"every": -5},
        {"every": 5, "cron": "* * * * *"},
        {"every": 5, "time_zone": "UTC"},
        {},
        {"every": 5, "missed": "twice"},
        {"every": "5"},
        {"every": 5, "max_count": 1.5},
        {"every": 5, "priority": 1001},
        {"every": 5, "priority": 2.5},
    ],
)
def test_bad_schedules_raise_invalid_argument_and_write_nothing(sqlite: Backend, options: Dict[str, Any]) -> None:
    with sqlite.client(sweeper=False) as c:
        c.install()
        with pytest.raises(qtask.InvalidArgument):
            c.schedule("py bad", {}, queue=Q, **options)
        assert c.schedules() == []
