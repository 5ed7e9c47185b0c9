"""Typing: this file is checked by mypy --strict (test_mypy below) and also run.

Typed assignments check what the API returns; each `# type: ignore[...]` marks a
misuse the stubs must reject (strict mode's warn_unused_ignores fails the check if
one of them stops being an error).
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest

import qtask
from conftest import CI, Backend

ROOT = pathlib.Path(__file__).resolve().parents[2]


def outbox_usage(c: qtask.Client, conn: Any) -> None:
    """Type-checked only (test_mypy)."""
    in_tx: qtask.Created = c.create("n", {}, queue="Q", connection=conn)
    offered: bool = c.dispatch(in_tx)


def typed_usage(c: qtask.Client) -> None:
    c.install()
    task_id: int = c.create("n", {"a": 1}, queue="Q", timeout=5.0, deadline=60, max_count=3, order_no="X-1")
    deferred: Tuple[int, qtask.Invoke] = c.create_deferred("n", {"a": 2}, queue="Q")
    pushed: bool = deferred[1]()
    later: int = c.delay("n", {}, queue="Q", delay=3600)
    many: List[qtask.Created] = c.create_many([{"name": "m", "input": {}, "queue": "Q", "timeout": 2.0}])
    first_id: int = many[0].id
    seen: bool = many[0].existing or many[0].dispatched
    message: Optional[qtask.Message] = c.pop("Q", wait=0.5)
    if message is not None:
        tid: Any = message["task_id"]
        ok: bool = c.processing(tid)
        if ok:
            c.finish(tid)
    status: str = c.fail(later, "why")
    task: qtask.Task = c.get(task_id)
    state: str = task["status"]
    last_error: Optional[str] = task["last_error"]
    stats: qtask.Stats = c.stats()
    waiting: int = stats["waiting"]
    c.cancel(later)

    @c.task("TYPED")
    def handler(m: qtask.Message) -> None:
        pass

    @c.task("TYPED_ASYNC")
    async def async_handler(m: qtask.Message) -> Dict[str, int]:
        return {"ok": 1}

    handler({"task_id": 1})
    try:
        result: Any = c.result(task_id, wait=0.01)
    except qtask.TimeoutError:
        result = None
    outcomes: List[Exception] = [qtask.Retry(after=1.5), qtask.Cancel("why"), qtask.FailNow("why")]
    report: qtask.WorkerReport = qtask.WorkerReport(snoozed=1, cancelled=2)
    del pushed, many, status, state, last_error, waiting, async_handler, result, outcomes, report


def misuse(c: qtask.Client) -> None:
    c.create("n", {}, "Q")  # type: ignore  # (the error code differs between mypy versions)
    c.create("n", {}, queue=5)  # type: ignore[arg-type]
    c.pop(queue="Q", wait="1")  # type: ignore[arg-type]
    c.get("1")  # type: ignore[arg-type]
    c.get(1)["nope"]  # type: ignore[typeddict-item]
    qtask.Client(sweep_interval=1).run_worker(concurrency="2")  # type: ignore[arg-type]
    c.result(1, wait="1")  # type: ignore[arg-type]
    qtask.Retry(after="soon")  # type: ignore[arg-type]


async def async_typed_usage(c: qtask.AsyncClient) -> None:
    await c.install()
    created: qtask.Created = await c.create("n", {"a": 1}, queue="Q", timeout=5.0, priority=2)
    deferred: Tuple[int, qtask.AsyncInvoke] = await c.create_deferred("n", {}, queue="Q")
    pushed: bool = await deferred[1]()
    later: qtask.Created = await c.delay("n", {}, queue="Q", delay=3600)
    many: List[qtask.Created] = await c.create_many([{"name": "m", "input": {}, "queue": "Q"}])
    message: Optional[qtask.Message] = await c.pop("Q", wait=0.1)
    if message is not None:
        ok: bool = await c.processing(message["task_id"])
        if ok:
            await c.finish(message["task_id"])
    status: str = await c.fail(later, "why")
    task: qtask.Task = await c.get(created)
    stats: qtask.Stats = await c.stats()
    await c.cancel(later)
    try:
        result: Any = await c.result(created, wait=0.01)
    except qtask.TimeoutError:
        result = None
    info: qtask.ScheduleInfo = await c.schedule("s", {}, queue="Q", every=60)
    await c.set_queue_limits("Q", max_processing=1)
    del pushed, many, status, task, stats, result, info


async def async_misuse(c: qtask.AsyncClient) -> None:
    await c.create("n", {}, queue=5)  # type: ignore[arg-type]
    await c.pop(queue="Q", wait="1")  # type: ignore[arg-type]
    (await c.get(1))["nope"]  # type: ignore[typeddict-item]
    c.stats()["waiting"]  # type: ignore[index]


def test_async_typed_usage_runs(sqlite: Backend) -> None:
    import asyncio

    async def main() -> None:
        async with qtask.AsyncClient(**sqlite.settings(sweeper=False)) as c:
            await async_typed_usage(c)
            assert (await c.stats())["cancelled"] == 1

    asyncio.run(main())


def test_typed_usage_runs(sqlite: Backend) -> None:
    with sqlite.client(sweeper=False) as c:
        typed_usage(c)
        assert c.stats()["cancelled"] == 1
        assert set(c.handlers) == {"TYPED", "TYPED_ASYNC"}


def test_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        if CI:
            pytest.fail("mypy is not installed (tests/python/run.sh installs it)")
        pytest.skip("SKIP: mypy not installed")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.10",
         str(ROOT / "python" / "qtask"), str(pathlib.Path(__file__))],
        capture_output=True, text=True, cwd=pathlib.Path(__file__).parent,
    )
    assert r.returncode == 0, r.stdout + r.stderr
