"""Handler outcomes and results through the engine, on every backend: a returned
value is kept and read with ``client.result``; ``qtask.Retry``, ``qtask.Cancel`` and
``qtask.FailNow`` end the attempt their way; a time limit interrupts a sync handler
and cancels an async one; ``result`` raises NotFound / InvalidState / TimeoutError."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List

import pytest

import qtask
from conftest import Backend, run_until, worker_running

KEEP = 3600.0


def test_each_outcome_ends_the_task_its_way(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()
        seen: Dict[str, int] = {}

        @c.task("OUTCOMES")
        def handle(message: qtask.Message) -> Any:
            kind = message["do"]
            seen[kind] = seen.get(kind, 0) + 1
            if kind == "result":
                return {"sum": 3, "名": "任务"}
            if kind == "error":
                raise ValueError("boom")
            if kind == "retry":
                raise qtask.Retry(after=3600)
            if kind == "cancel":
                raise qtask.Cancel("no longer wanted")
            if kind == "fail_now":
                raise qtask.FailNow("bad input")
            if kind == "not_json":
                return {1, 2}
            return None

        kinds = ["finish", "result", "error", "retry", "cancel", "fail_now", "not_json"]
        ids = {k: c.create("o", {"do": k}, queue="OUTCOMES", delete_deadline=KEEP, max_count=3) for k in kinds}
        report = run_until(c, lambda: len(seen) == len(kinds), "every kind handled")
        assert (report.finished, report.failed, report.snoozed, report.cancelled) == (2, 3, 1, 1), report

        assert c.result(ids["finish"]) is None
        assert c.result(ids["result"], wait=5) == {"sum": 3, "名": "任务"}
        errored = c.get(ids["error"])
        assert errored["status"] == "waiting" and "ValueError: boom" in (errored["last_error"] or "")
        snoozed = c.get(ids["retry"])
        assert (snoozed["status"], snoozed["count"], snoozed["max_count"]) == ("waiting", 1, 4)
        assert (snoozed["next_at"] or 0) - snoozed["updated_at"] >= 3_599_000
        cancelled = c.get(ids["cancel"])
        assert (cancelled["status"], cancelled["last_error"]) == ("cancelled", "no longer wanted")
        failed = c.get(ids["fail_now"])
        assert (failed["status"], failed["count"], failed["last_error"]) == ("failed", 1, "bad input")
        not_json = c.get(ids["not_json"])
        assert not_json["status"] == "failed" and "not JSON-serialisable" in (not_json["last_error"] or "")

        with pytest.raises(qtask.InvalidState, match="no longer wanted"):
            c.result(ids["cancel"])
        with pytest.raises(qtask.InvalidState, match="bad input"):
            c.result(ids["fail_now"])
        with pytest.raises(qtask.TimeoutError):
            c.result(ids["retry"], wait=0.05)
        with pytest.raises(TimeoutError):  # the built-in, too
            c.result(ids["retry"], wait=0)
        with pytest.raises(qtask.NotFound):
            c.result(max(ids.values()) + 1000)
        with pytest.raises(qtask.InvalidArgument):
            c.result(ids["finish"], wait=-1)
        c.cancel(ids["retry"])
        c.cancel(ids["error"])


def test_result_waits_for_the_worker(db_backend: Backend) -> None:
    with db_backend.client(sweep_interval=0.2) as c:
        c.install()
        release = threading.Event()

        @c.task("LATER")
        async def later(message: qtask.Message) -> Any:
            while not release.is_set():
                await asyncio.sleep(0.01)
            return [message["n"], "done"]

        task_id = c.create("later", {"n": 7}, queue="LATER", delete_deadline=KEEP)
        with worker_running(c):
            with pytest.raises(qtask.TimeoutError):
                c.result(task_id, wait=0.1)
            release.set()
            assert c.result(task_id, wait=30) == [7, "done"]


def test_time_limit_interrupts_sync_and_cancels_async(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()
        told: List[str] = []

        @c.task("SLOW_SYNC")
        def slow_sync(message: qtask.Message) -> None:
            try:
                for _ in range(3000):
                    time.sleep(0.01)
            except qtask.TimeLimitExceeded:
                told.append("sync")
                raise

        @c.task("SLOW_ASYNC")
        async def slow_async(message: qtask.Message) -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                told.append("async")
                raise

        ids = [c.create("s", {}, queue="SLOW_SYNC"), c.create("a", {}, queue="SLOW_ASYNC")]
        report = run_until(
            c,
            lambda: all(c.get(i)["last_error"] for i in ids) and len(told) == 2,
            "both attempts past their limit",
            time_limit=0.3,
        )
        assert sorted(told) == ["async", "sync"]
        assert report.failed == 2 and report.finished == 0, report
        for i in ids:
            task = c.get(i)
            assert (task["status"], task["last_error"]) == ("waiting", "time limit of 0.3s exceeded")
        for i in ids:
            c.cancel(i)
        with pytest.raises(ValueError):
            c.run_worker(time_limit="soon", handle_signals=False)  # type: ignore[arg-type]


def test_an_outcome_of_an_ended_task_is_skipped(backend: Backend) -> None:
    """Fencing: the task is cancelled while its handler runs; the handler's outcome
    then names an attempt that is no longer current, changes nothing, and is counted
    as skipped."""
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        started, release = threading.Event(), threading.Event()

        @c.task("STALE")
        def handle(message: qtask.Message) -> None:
            started.set()
            release.wait(30)
            raise qtask.FailNow("too late")

        task_id = c.create("s", {}, queue="STALE", delete_deadline=KEEP)
        with worker_running(c) as reports:
            try:
                assert started.wait(30)
                c.cancel(task_id)
            finally:
                # A graceful stop lets the handler end and writes its outcome first.
                release.set()
        assert (reports[0].skipped, reports[0].failed) == (1, 0), reports[0]
        task = c.get(task_id)
        assert (task["status"], task["last_error"]) == ("cancelled", None)
