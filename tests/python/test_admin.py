"""Operators' calls through Python: list failed tasks with their errors, retry them,
cancel by filter, pause and resume a queue, counts per queue and minute."""

from __future__ import annotations

import pytest

import qtask
from conftest import Backend, drop_pg_table

Q = "PY:ADMIN"


def _failed(c: qtask.Client, i: int, error: str) -> int:
    task_id = c.create("py admin", {"i": i}, queue=Q, timeout=30, max_count=1)
    message = c.pop(Q, wait=1.0)
    assert message is not None and message["task_id"] == task_id
    assert c.processing(task_id) is True
    assert c.fail(task_id, error) == "failed"
    return task_id


def test_failed_tasks_are_listed_retried_and_queues_paused(db_backend: Backend) -> None:
    with db_backend.client(sweeper=False) as c:
        c.install()
        a = _failed(c, 1, "connection reset")
        b = _failed(c, 2, "bad input")

        page = c.list_tasks(status="failed", limit=1)
        assert [t["id"] for t in page["tasks"]] == [b]
        assert page["tasks"][0]["last_error"] == "bad input"
        assert page["next_before_id"] == b
        rest = c.list_tasks(status="failed", before_id=page["next_before_id"])
        assert [(t["id"], t["last_error"]) for t in rest["tasks"]] == [(a, "connection reset")]
        assert rest["next_before_id"] is None
        assert c.count_tasks(status="failed", queue=Q) == 2

        with pytest.raises(qtask.InvalidArgument):
            c.list_tasks(status="done")
        c.retry(a)
        with pytest.raises(qtask.InvalidState):
            c.retry(a)
        assert c.retry_matching(status="failed") == 1
        assert c.get(a)["status"] == "waiting" and c.get(a)["last_error"] == "connection reset"

        c.pause_queue(Q)
        assert [(q["queue"], q["paused"], q["waiting"]) for q in c.queues()] == [(Q, True, 2)]
        assert c.pop(Q, wait=0.0) is None
        c.resume_queue(Q)
        message = c.pop(Q, wait=1.0)
        assert message is not None and message["attempt"] == 2

        assert c.cancel_matching(queue=Q) == 2
        assert c.count_tasks(status="cancelled") == 2
        assert len(c.rates(5)) == 5
        if db_backend.db.startswith("postgres"):
            drop_pg_table(db_backend.db, f"{db_backend.table_prefix}queue")


def test_priorities_and_queue_limits(backend: Backend) -> None:
    """Higher priority pops first (create, delay, create_many); a queue limited to one
    task processing at once holds the next back until its limits are removed."""
    prio, limited = "PY:PRIO", "PY:LIMIT"
    with backend.client(sweeper=False) as c:
        c.install()
        low = c.create("low", {}, queue=prio, priority=-1)
        c.create_many(
            [
                {"name": "mid", "input": {}, "queue": prio},
                {"name": "top", "input": {}, "queue": prio, "priority": 9},
            ]
        )
        c.delay("later", {}, queue=prio, delay=3600, priority=100)
        popped = []
        while (message := c.pop(prio, wait=0.5)) is not None:
            popped.append(c.get(message["task_id"])["name"])
        assert popped == ["top", "mid", "low"]
        assert c.get(low)["priority"] == -1
        with pytest.raises(qtask.InvalidArgument):
            c.create("bad", {}, queue=prio, priority=1001)
        with pytest.raises(qtask.InvalidArgument):
            c.create("bad", {}, queue=prio, priority="high")  # type: ignore[arg-type]

        c.set_queue_limits(limited, max_processing=1, max_per_second=50)
        for i in range(2):
            c.create("limited", {"i": i}, queue=limited)
        assert c.pop(limited, wait=1.0) is not None
        assert c.pop(limited, wait=0.2) is None
        summary = [q for q in c.queues() if q["queue"] == limited][0]
        assert summary["limits"] == {"max_processing": 1, "max_per_second": 50.0}
        assert summary["processing"] == 1
        with pytest.raises(qtask.InvalidArgument):
            c.set_queue_limits(limited, max_processing=0)
        with pytest.raises(qtask.InvalidArgument):
            c.set_queue_limits(limited, max_per_second=-1)
        c.set_queue_limits(limited)
        if backend.queue != "db":
            c.sweep_once()  # an offer refused for the limit is offered again
        assert c.pop(limited, wait=1.0) is not None
        if backend.db.startswith("postgres"):
            drop_pg_table(backend.db, f"{backend.table_prefix}queue")
