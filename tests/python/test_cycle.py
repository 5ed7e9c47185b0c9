"""The full cycle through Python on every backend: SQLite, PostgreSQL + the db
queue, PostgreSQL + Redis."""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest

import qtask
from conftest import Backend, run_until, wait_until, worker_running

KEEP = 3600.0  # delete_deadline: keep finished rows, so that the test can read them


def test_manual_cycle(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        c.install()  # idempotent
        task_id = c.create("订单绑定任务", {"order_no": "8973097380045"}, queue="ORDER:BIND", timeout=30, delete_deadline=KEEP)
        task = c.get(task_id)
        assert task["status"] == "waiting"
        assert task["name"] == "订单绑定任务"
        assert task["input"] == {"order_no": "8973097380045"}
        assert task["queue"] == "ORDER:BIND"

        message = wait_until(lambda: c.pop("ORDER:BIND", wait=1.0), "the message")
        assert message == {"order_no": "8973097380045", "task_id": task_id, "attempt": 1}
        assert c.processing(task_id) is True
        assert c.get(task_id)["status"] == "processing"
        c.finish(task_id)
        done = c.get(task_id)
        assert done["status"] == "finished"
        assert done["count"] == 1
        # finished: never dispatched again, and processing tells a duplicate to skip
        assert c.processing(task_id) is False
        assert c.pop("ORDER:BIND", wait=0.3) is None
        stats = c.stats()
        assert stats["finished"] == 1
        assert stats["waiting"] == stats["processing"] == 0


def test_fail_retry_cancel_and_options(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=0.2, retry_backoff_max=0.5) as c:
        c.install()
        a = c.create("a", {"n": 1}, queue="Q", timeout=30, delete_deadline=KEEP, max_count=2)
        m = wait_until(lambda: c.pop("Q", 1.0), "a's first dispatch")
        assert m["task_id"] == a and m["attempt"] == 1
        assert c.processing(a)
        assert c.fail(a, "first try broke") == "waiting"
        assert c.get(a)["last_error"] == "first try broke"
        # retried after the backoff, by the sweeper
        m = wait_until(lambda: c.pop("Q", 1.0), "a's retry")
        assert m["task_id"] == a and m["attempt"] == 2
        assert c.processing(a)
        assert c.fail(a, "second try broke") == "failed"  # max_count=2 spent
        failed = c.get(a)
        assert failed["status"] == "failed" and failed["count"] == 2
        assert "second try broke" in (failed["last_error"] or "")

        b = c.delay("b", {"n": 2}, queue="Q", delay=3600, timeout=30, delete_deadline=KEEP)
        assert c.get(b)["status"] == "waiting"
        c.cancel(b)
        c.cancel(b)  # twice is fine
        assert c.get(b)["status"] == "cancelled"
        with pytest.raises(qtask.InvalidState):
            c.finish(b)
        assert c.processing(b) is False

        # order_no: a live task with the same queue and number is returned again
        o1 = c.create("o", {"n": 3}, queue="Q", order_no="ORD-1", delete_deadline=KEEP)
        o2 = c.create("o", {"n": 3}, queue="Q", order_no="ORD-1", delete_deadline=KEEP)
        assert o1 == o2
        assert c.get(o1)["order_no"] == "ORD-1"

        stats = c.stats()
        assert stats["failed"] == 1 and stats["cancelled"] == 1 and stats["waiting"] == 1


def test_delay_deferred_and_many(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        d = c.delay("later", {"k": "d"}, queue="D", delay=0.5, delete_deadline=KEEP)
        assert c.get(d)["status"] == "waiting"
        m = wait_until(lambda: c.pop("D", 1.0), "the delayed task")
        assert m["task_id"] == d

        task_id, invoke = c.create_deferred("outbox", {"k": "o"}, queue="O", delete_deadline=KEEP)
        assert invoke.task_id == task_id
        assert invoke() is True
        with pytest.raises(qtask.InvalidState):
            invoke()
        m = wait_until(lambda: c.pop("O", 1.0), "the invoked task")
        assert m["task_id"] == task_id

        ids = c.create_many(
            [
                {"name": "m1", "input": {"i": 1}, "queue": "M"},
                {"name": "m2", "input": {"i": 2}, "queue": "M", "timeout": 10, "max_count": 3},
            ]
        )
        assert len(ids) == 2 and ids[0] != ids[1]
        seen = set()
        while len(seen) < 2:
            m = wait_until(lambda: c.pop("M", 1.0), "create_many's messages")
            seen.add(m["task_id"])
        assert seen == set(ids)


def test_worker_sync_and_async_handlers(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=0.1, retry_backoff_max=0.2) as c:
        c.install()
        got: List[Dict[str, Any]] = []
        lock = threading.Lock()

        @c.task("SYNC")
        def sync_handler(message: qtask.Message) -> str:
            with lock:
                got.append(message)
            if message.get("explode") and message["attempt"] == 1:
                raise RuntimeError("kaboom on the first attempt")
            return "ignored"

        @c.task("ASYNC")
        async def async_handler(message: qtask.Message) -> None:
            import asyncio

            await asyncio.sleep(0.01)
            with lock:
                got.append(message)

        ids = [c.create("s", {"i": i}, queue="SYNC", delete_deadline=KEEP) for i in range(5)]
        ids += [c.create("a", {"i": i}, queue="ASYNC", delete_deadline=KEEP) for i in range(5)]
        boom = c.create("boom", {"explode": True}, queue="SYNC", delete_deadline=KEEP)
        report = run_until(
            c,
            lambda: all(c.get(i)["status"] == "finished" for i in ids + [boom]),
            "every task finished by the worker",
            concurrency=3,
        )
        assert report.finished == 11
        assert report.failed == 1
        retried = c.get(boom)
        assert retried["count"] == 2
        assert retried["last_error"] is None or "kaboom" in retried["last_error"]
        assert {m["task_id"] for m in got} == set(ids) | {boom}


def test_worker_failure_keeps_traceback(sqlite: Backend) -> None:
    with sqlite.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()

        @c.task("BAD")
        def bad(message: qtask.Message) -> None:
            raise ValueError(f"cannot handle {message['x']}")

        task_id = c.create("bad", {"x": "this"}, queue="BAD")
        with worker_running(c):
            task = wait_until(
                lambda: (lambda t: t if t["last_error"] else None)(c.get(task_id)), "the failure recorded"
            )
        assert task["status"] == "waiting"  # retried later, with backoff
        assert "Traceback (most recent call last)" in (task["last_error"] or "")
        assert "ValueError: cannot handle this" in (task["last_error"] or "")
