"""qtask.AsyncClient: Client's methods as coroutines, awaited from asyncio without a
thread per call, on every backend (SQLite, PostgreSQL + the db queue, PostgreSQL +
Redis). Plain tests around asyncio.run: no pytest plugin needed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Awaitable, Callable, List, Optional, TypeVar

import pytest

import qtask
from conftest import Backend, wait_until

KEEP = 3600.0  # delete_deadline: keep finished rows so that the test can read them
T = TypeVar("T")


def aclient(backend: Backend, **extra: Any) -> qtask.AsyncClient:
    return qtask.AsyncClient(**backend.settings(**extra))


async def eventually(probe: Callable[[], Awaitable[Optional[T]]], what: str, limit: float = 60.0) -> T:
    """Awaits `probe` until it returns something truthy (the limit only stops a
    broken build from hanging; nothing asserts on time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def test_every_method(backend: Backend) -> None:
    async def main() -> None:
        async with aclient(backend, sweep_interval=0.2, retry_backoff=0.2, retry_backoff_max=0.5) as c:
            assert not c.closed and c.table_prefix == backend.table_prefix
            await c.install()
            await c.install()  # idempotent
            a = await c.create("订单", {"order_no": "1"}, queue="Q", timeout=30, delete_deadline=KEEP, order_no="1")
            assert not a.existing and a.dispatched
            again = await c.create("订单", {"order_no": "1"}, queue="Q", order_no="1")
            assert again == a and again.existing
            assert (await c.get(a))["status"] == "waiting"

            m = await eventually(lambda: c.pop("Q", wait=1.0), "a's message")
            assert m == {"order_no": "1", "task_id": a, "attempt": 1}
            assert await c.processing(a) is True
            assert (await c.get(a))["status"] == "processing"
            await c.finish(a)
            assert await c.processing(a) is False
            assert await c.result(a, wait=1.0) is None  # finished without a value

            many = await c.create_many([{"name": "m", "input": {"i": i}, "queue": "M", "max_count": 1} for i in range(3)])
            assert len({int(x) for x in many}) == 3
            got = await eventually(lambda: c.pop("M", wait=1.0), "a create_many message")
            assert got["task_id"] in many
            assert await c.processing(got["task_id"])
            assert await c.fail(got["task_id"], "broke") == "failed"  # max_count=1 spent
            assert await c.count_tasks(status="failed", queue="M") == 1
            assert await c.retry_matching(queue="M") == 1
            assert await c.cancel_matching(queue="M") == 3

            later = await c.delay("d", {}, queue="D", delay=3600, delete_deadline=KEEP)
            assert not later.dispatched and (await c.get(later))["next_at"] is not None
            await c.cancel(later)
            with pytest.raises(qtask.InvalidState):
                await c.finish(later)
            await c.retry(later)
            assert (await c.get(later))["status"] == "waiting"

            deferred_id, invoke = await c.create_deferred("x", {}, queue="X", delete_deadline=KEEP)
            assert invoke.task_id == deferred_id
            assert await invoke() is True
            with pytest.raises(qtask.InvalidState):
                await invoke()
            # Already on its queue: the db queue says so, Redis finds it offered already.
            assert await c.dispatch(deferred_id) is (backend.queue == "db")

            page = await c.list_tasks(queue="X")
            assert [t["id"] for t in page["tasks"]] == [deferred_id]
            stats = await c.stats()
            assert stats["finished"] == 1
            assert "dispatched" in await c.sweep_once()

            await c.pause_queue("X")
            await c.set_queue_limits("X", max_processing=2, max_per_second=5.0)
            queues = {q["queue"]: q for q in await c.queues()}
            assert queues["X"]["paused"] is True
            assert queues["X"]["limits"] == {"max_processing": 2, "max_per_second": 5.0}
            await c.resume_queue("X")
            await c.set_queue_limits("X")
            assert (await c.queues())[0]["queue"] in queues
            assert len(await c.rates(5)) == 5

            info = await c.schedule("tick", {"k": 1}, queue="S", every=60)
            assert info["name"] == "tick"
            assert [s["name"] for s in await c.schedules()] == ["tick"]
            assert await c.unschedule("tick") is True
            assert await c.unschedule("tick") is False
        assert c.closed
        with pytest.raises(qtask.ClosedError):
            await c.stats()
        await c.close()  # twice is fine

    asyncio.run(main())


def test_200_concurrent_creates_from_one_loop(backend: Backend) -> None:
    async def main() -> None:
        async with aclient(backend, sweeper=False) as c:
            await c.install()
            created = await asyncio.gather(
                *(c.create("n", {"i": i}, queue="G", order_no=f"o{i}", delete_deadline=KEEP) for i in range(200))
            )
            assert len({int(x) for x in created}) == 200
            assert not any(x.existing for x in created)
            # The same order numbers again, concurrently: each returns its own task.
            again = await asyncio.gather(*(c.create("n", {"i": i}, queue="G", order_no=f"o{i}") for i in range(200)))
            assert [int(x) for x in again] == [int(x) for x in created]
            assert all(x.existing for x in again)
            rows = await asyncio.gather(*(c.get(x) for x in created))
            assert [r["input"] for r in rows] == [{"i": i} for i in range(200)]
            assert await c.count_tasks(queue="G") == 200

            # 200 waits at once, and not a thread each (Linux: /proc lists the threads).
            threads_before = _threads()
            waits = [asyncio.ensure_future(c.result(x, wait=60.0)) for x in created]
            await asyncio.sleep(0.5)
            threads_during = _threads()
            assert not any(w.done() for w in waits)
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            if threads_before is not None and threads_during is not None:
                assert threads_during - threads_before < 50, (threads_before, threads_during)

    asyncio.run(main())


def _threads() -> Optional[int]:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def test_the_loop_runs_while_pop_waits(backend: Backend) -> None:
    """The task pop waits for is created by the same loop while pop is waiting: the
    pop can only return it if the loop kept running."""

    async def main() -> None:
        async with aclient(backend, sweep_interval=0.2) as c:
            await c.install()
            ticks = 0

            async def ticker() -> int:
                nonlocal ticks
                while ticks < 5:
                    await asyncio.sleep(0.01)
                    ticks += 1
                return int(await c.create("late", {}, queue="W"))

            waiting = asyncio.ensure_future(c.pop("W", wait=30.0))
            task_id = await ticker()
            message = await waiting
            assert ticks == 5
            assert message is not None and message["task_id"] == task_id

    asyncio.run(main())


def test_cancelled_pop_claims_nothing(backend: Backend) -> None:
    async def main() -> None:
        async with aclient(backend, sweep_interval=0.2) as c:
            await c.install()
            waiting = asyncio.ensure_future(c.pop("C", wait=30.0))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            task_id = await c.create("after", {}, queue="C", timeout=2)
            # Taken by the next pop, as its first attempt: the cancelled one took nothing.
            m = await eventually(lambda: c.pop("C", wait=1.0), "the task")
            assert (m["task_id"], m["attempt"]) == (task_id, 1)

    asyncio.run(main())


def _wait_claimed(sync: qtask.Client, task_id: int) -> None:
    wait_until(lambda: sync.get(task_id)["count"] == 1, "the claim")


def test_a_claim_nobody_received_is_handed_back(backend: Backend) -> None:
    """The claim completes while the loop is busy, and the await is cancelled before
    the loop can deliver it: the task waits again, due now, with no attempt used."""

    async def main() -> None:
        with backend.client(sweeper=False) as sync:
            sync.install()
            async with aclient(backend, sweep_interval=0.2) as c:
                task_id = await c.create("claimed", {}, queue="H", max_count=3, delete_deadline=KEEP)
                future = c._native.pop("H", 30.0)
                _wait_claimed(sync, task_id)  # the loop is blocked meanwhile: no delivery yet
                future.cancel()
                row = await eventually(
                    lambda: _status_is(c, task_id, "waiting"), "the hand-back"
                )
                assert row["max_count"] == 4 and row["count"] == 1  # the attempt was given back
                m = await eventually(lambda: c.pop("H", wait=1.0), "the task, again")
                assert m["task_id"] == task_id and m["attempt"] == 2

    asyncio.run(main())


def test_a_task_cancelled_with_its_message_ready_hands_it_back(backend: Backend) -> None:
    """As above, through AsyncClient.pop and Task.cancel: whether the cancel beats the
    delivery or not, the claimed task is not lost."""

    async def main() -> None:
        with backend.client(sweeper=False) as sync:
            sync.install()
            async with aclient(backend, sweep_interval=0.2) as c:
                task_id = await c.create("claimed", {}, queue="H2", max_count=3, delete_deadline=KEEP)
                popping = asyncio.ensure_future(c.pop("H2", wait=30.0))
                await asyncio.sleep(0)  # popping now awaits the engine
                _wait_claimed(sync, task_id)
                threading.Event().wait(0.2)  # lets the delivery thread queue its callback
                await asyncio.sleep(0)  # the message is delivered; popping has not resumed
                popping.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await popping
                row = await eventually(lambda: _status_is(c, task_id, "waiting"), "the hand-back")
                assert row["max_count"] == 4
                m = await eventually(lambda: c.pop("H2", wait=1.0), "the task, again")
                assert m["task_id"] == task_id

    asyncio.run(main())


async def _status_is(c: qtask.AsyncClient, task_id: int, status: str) -> Optional[qtask.Task]:
    row = await c.get(task_id)
    return row if row["status"] == status else None


def test_cancelled_result_wait_ends(sqlite: Backend) -> None:
    async def main() -> None:
        async with aclient(sqlite) as c:
            await c.install()
            task_id = await c.create("r", {}, queue="R", delete_deadline=KEEP)
            waiting = asyncio.ensure_future(c.result(task_id, wait=60.0))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.result(task_id, wait=60.0), 0.2)
            assert (await c.get(task_id))["status"] == "waiting"

    asyncio.run(main())


def test_errors_are_qtask_exceptions(backend: Backend) -> None:
    async def main() -> None:
        async with aclient(backend, sweeper=False) as c:
            await c.install()
            with pytest.raises(qtask.NotFound):
                await c.get(987654321)
            with pytest.raises(qtask.NotFound):
                await c.result(987654321)
            with pytest.raises(qtask.InvalidArgument):
                await c.create("n", {}, queue="bad queue name with spaces")
            with pytest.raises(qtask.InvalidArgument):
                await c.create("n", {"x": object()}, queue="Q")
            with pytest.raises(qtask.InvalidArgument):
                await c.create_many([{"name": "ok", "input": {}, "queue": "Q"}, {"name": "", "input": {}, "queue": "Q"}])
            assert await c.count_tasks() == 0  # all or nothing
            with pytest.raises(qtask.InvalidArgument):
                await c.pop("Q", wait=-1)
            with pytest.raises(qtask.InvalidArgument):
                await c.schedule("s", {}, queue="Q", cron="not cron")
            task_id = await c.create("n", {}, queue="Q")
            with pytest.raises(qtask.TimeoutError):
                await c.result(task_id, wait=0.05)
            await c.cancel(task_id)
            with pytest.raises(qtask.InvalidState):
                await c.result(task_id)

    asyncio.run(main())


def test_bad_settings_and_unreachable_servers() -> None:
    with pytest.raises(qtask.InvalidArgument):
        qtask.AsyncClient(db="sqlite://x.db", no_such_setting=1)

    async def main() -> None:
        c = qtask.AsyncClient(db="postgres://qtask@127.0.0.1:1/none", connect_timeout=1, sweeper=False)
        with pytest.raises(qtask.DatabaseError):
            await c.connect()
        with pytest.raises(qtask.DatabaseError):  # every call tries again
            await c.stats()
        await c.close()
        with pytest.raises(qtask.ClosedError):
            await c.connect()

    asyncio.run(main())


def test_one_client_serves_two_event_loops(sqlite: Backend) -> None:
    """asyncio.run twice (two loops, one after the other) and a loop in a thread."""
    c = aclient(sqlite, sweeper=False)
    asyncio.run(c.install())
    first = asyncio.run(c.create("a", {}, queue="L"))
    seen: List[int] = []
    thread = threading.Thread(target=lambda: seen.append(int(asyncio.run(c.create("b", {}, queue="L")))))
    thread.start()
    thread.join()
    assert seen and seen[0] != first
    assert asyncio.run(c.count_tasks(queue="L")) == 2
    asyncio.run(c.close())


def test_a_claim_whose_loop_closed_is_handed_back(backend: Backend) -> None:
    """The claim completes while its loop is not running, and the loop is closed
    without running again: the delivery is dropped unrun and hands the task back."""
    with backend.client(sweeper=False) as sync:
        sync.install()
        c = aclient(backend, sweeper=False)
        task_id = int(asyncio.run(c.create("orphan", {}, queue="O", max_count=3, delete_deadline=KEEP)))
        loop = asyncio.new_event_loop()

        async def start() -> Any:
            return c._native.pop("O", 30.0)

        loop.run_until_complete(start())
        _wait_claimed(sync, task_id)
        loop.close()
        row = wait_until(lambda: sync.get(task_id) if sync.get(task_id)["status"] == "waiting" else None, "the hand-back")
        assert row["max_count"] == 4 and row["count"] == 1
        asyncio.run(c.close())
