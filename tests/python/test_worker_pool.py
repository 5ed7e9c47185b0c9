"""The Python side of the worker engine: sync handlers on a pool of threads that get
the message as a dict built by the engine; ``async def`` handlers as coroutines on one
asyncio loop, as many at once as the concurrency; a time limit per task."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Set

import pytest

import qtask
from conftest import Backend, run_until

KEEP = 3600.0


def test_sync_handlers_get_the_input_as_json_would_read_it(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        got: Dict[int, Dict[str, Any]] = {}
        lock = threading.Lock()

        @c.task("POOL")
        def handle(message: qtask.Message) -> None:
            with lock:
                got[message["task_id"]] = dict(message)

        inputs = [
            {"i": n, "f": 1.5, "neg": -(2**63), "big": 2**64 - 1, "s": "任务", "none": None, "t": True,
             "l": [1, {"a": [False, 2.0]}], "o": {"x": {}}}
            for n in range(40)
        ]
        ids = [c.create("p", x, queue="POOL") for x in inputs]
        report = run_until(c, lambda: len(got) == len(ids), "every task handled", concurrency=8)
        assert report.finished == len(ids), report
        for task_id, x in zip(ids, inputs):
            assert got[task_id] == dict(x, task_id=task_id, attempt=1)
            assert type(got[task_id]["f"]) is float and type(got[task_id]["i"]) is int


def test_sync_handlers_that_block_run_up_to_the_concurrency_at_once(backend: Backend) -> None:
    """Waiting tasks call idle threads one at a time (pool.rs): a handler that blocks
    never keeps a task waiting while a thread is idle, so four blocked handlers meet."""
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        meet = threading.Barrier(4)
        lock = threading.Lock()
        threads: Set[int] = set()
        met: List[int] = []
        broken: List[int] = []

        @c.task("BLOCK")
        def handle(message: qtask.Message) -> None:
            with lock:
                threads.add(threading.get_ident())
            try:
                meet.wait(timeout=60)  # releases the GIL; passes only when four wait at once
            except threading.BrokenBarrierError:
                broken.append(message["task_id"])
                meet.reset()
                raise
            with lock:
                met.append(message["task_id"])

        ids = [c.create("b", {"n": n}, queue="BLOCK", delete_deadline=KEEP) for n in range(12)]
        report = run_until(c, lambda: len(met) + len(broken) == len(ids), "every handler met or broke", concurrency=4)
        assert broken == [] and sorted(met) == sorted(ids), (broken, met)
        assert report.finished == len(ids), report
        assert len(threads) == 4, threads


def test_async_handlers_run_as_coroutines_up_to_the_concurrency(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        threads: Set[int] = set()
        running = [0]
        most = [0]
        done: List[int] = []

        @c.task("CORO")
        async def handle(message: qtask.Message) -> Dict[str, int]:
            threads.add(threading.get_ident())
            running[0] += 1
            most[0] = max(most[0], running[0])
            # Held until four run at once (or a while has passed): concurrency counts coroutines.
            for _ in range(200):
                if most[0] >= 4:
                    break
                await asyncio.sleep(0.01)
            running[0] -= 1
            done.append(message["task_id"])
            return {"n": message["n"]}

        ids = [c.create("a", {"n": n}, queue="CORO", delete_deadline=KEEP) for n in range(12)]
        report = run_until(c, lambda: len(done) == len(ids), "every coroutine done", concurrency=4)
        assert report.finished == len(ids), report
        assert most[0] == 4, most
        assert len(threads) == 1, threads
        assert [c.result(i) for i in ids] == [{"n": n} for n in range(12)]


def test_a_task_time_limit_overrides_the_worker_s(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()
        told: List[str] = []
        finished: List[str] = []

        @c.task("LIMIT_SYNC")
        def slow_sync(message: qtask.Message) -> None:
            try:
                for _ in range(int(message["sleep"] * 100)):
                    time.sleep(0.01)
            except qtask.TimeLimitExceeded:
                told.append("sync")
                raise
            finished.append("sync")

        @c.task("LIMIT_ASYNC")
        async def slow_async(message: qtask.Message) -> None:
            try:
                await asyncio.sleep(message["sleep"])
            except asyncio.CancelledError:
                told.append("async")
                raise
            finished.append("async")

        limited = [
            c.create("s", {"sleep": 30}, queue="LIMIT_SYNC", time_limit=0.3),
            c.delay("a", {"sleep": 30}, queue="LIMIT_ASYNC", delay=0.01, time_limit=0.3),
        ]
        # Without a limit of its own a task runs under the worker's (here 60 s).
        free = [
            c.create("s", {"sleep": 0.5}, queue="LIMIT_SYNC", delete_deadline=KEEP),
            c.create_many([{"name": "a", "input": {"sleep": 0.5}, "queue": "LIMIT_ASYNC", "delete_deadline": KEEP}])[0],
        ]
        report = run_until(
            c,
            lambda: len(told) == 2 and len(finished) == 2 and all(c.get(i)["last_error"] for i in limited),
            "the limited attempts failed, the others finished",
            time_limit=60,
            concurrency=2,
        )
        assert sorted(told) == ["async", "sync"] and sorted(finished) == ["async", "sync"]
        assert (report.failed, report.finished) == (2, 2), report
        for i in limited:
            task = c.get(i)
            assert (task["status"], task["last_error"]) == ("waiting", "time limit of 0.3s exceeded")
            c.cancel(i)
        for i in free:
            assert c.get(i)["status"] == "finished"
        with pytest.raises(qtask.InvalidArgument):
            c.create("s", {}, queue="LIMIT_SYNC", time_limit=0)
        with pytest.raises(qtask.InvalidArgument):
            c.create("s", {}, queue="LIMIT_SYNC", time_limit="soon")  # type: ignore[arg-type]


@dataclass
class Seen:
    """What the handler of a time-limit test saw: tasks running now and at most at
    once, the tasks it ended and those it was told were out of time."""

    running: int = 0
    most: int = 0
    done: List[int] = field(default_factory=list)
    told: List[int] = field(default_factory=list)


def six_then_an_overrun(c: qtask.Client, queue: str, seen: Seen) -> None:
    """Six tasks (``n`` 0 to 5) and one that overruns (``n`` 99) on ``queue``, worked
    on at concurrency 1 with a limit of 0.4 s until the handler saw all seven: only
    the overrun failed, for its limit, and no two ran at once."""
    c.install()
    ids = [c.create("h", {"n": n}, queue=queue, delete_deadline=KEEP) for n in range(6)]
    overrun = c.create("h", {"n": 99}, queue=queue)
    report = run_until(c, lambda: len(seen.done) == 7, "every task handled", concurrency=1, time_limit=0.4)
    assert (report.finished, report.failed) == (6, 1), report
    assert seen.most == 1 and seen.told == [overrun], seen
    for i in ids:
        task = c.get(i)
        assert (task["status"], task["last_error"]) == ("finished", None), task
    assert c.get(overrun)["last_error"] == "time limit of 0.4s exceeded"
    c.cancel(overrun)


def test_tasks_waiting_for_a_thread_keep_their_whole_time_limit(backend: Backend) -> None:
    """The engine hands a sync pool tasks ahead of its threads (pool.rs): one thread
    runs six tasks of 0.15 s one after the other under a limit of 0.4 s, the last
    handed over 0.75 s before it starts, and none of them runs out of time; the
    limit still ends a seventh that overruns it once started."""
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        seen = Seen()
        lock = threading.Lock()

        @c.task("AHEAD")
        def handle(message: qtask.Message) -> None:
            with lock:
                seen.running += 1
                seen.most = max(seen.most, seen.running)
            try:
                for _ in range(300 if message["n"] == 99 else 15):
                    time.sleep(0.01)
            except qtask.TimeLimitExceeded:
                seen.told.append(message["task_id"])
                raise
            finally:
                with lock:
                    seen.running -= 1
                    seen.done.append(message["task_id"])

        six_then_an_overrun(c, "AHEAD", seen)


def test_async_tasks_waiting_for_room_keep_their_whole_time_limit(backend: Backend) -> None:
    """The asyncio loop takes only what the concurrency has room for, though the engine
    hands more over: one coroutine at a time runs six of 0.15 s under a limit of
    0.4 s and none runs out of time; the limit still cancels a seventh that overruns."""
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        seen = Seen()

        @c.task("AHEAD_ASYNC")
        async def handle(message: qtask.Message) -> None:
            seen.running += 1
            seen.most = max(seen.most, seen.running)
            try:
                await asyncio.sleep(3 if message["n"] == 99 else 0.15)
            except asyncio.CancelledError:
                seen.told.append(message["task_id"])
                raise
            finally:
                seen.running -= 1
                seen.done.append(message["task_id"])

        six_then_an_overrun(c, "AHEAD_ASYNC", seen)
