"""Worker processes: killed with SIGKILL mid-task, the task is finished by another
after its timeout; SIGINT / SIGTERM stop a worker gracefully."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
from typing import List

import qtask
from conftest import Backend, run_until, wait_until

HERE = pathlib.Path(__file__).resolve().parent


def marks(directory: pathlib.Path, kind: str, task_id: int) -> List[List[int]]:
    """[(attempt, pid)] of the mark files of one task."""
    out = []
    for p in directory.iterdir():
        k, t, attempt, pid = p.name.split("-")
        if k == kind and int(t) == task_id:
            out.append([int(attempt), int(pid)])
    return sorted(out)


def start_worker(backend: Backend, marks_dir: pathlib.Path, how: str) -> "subprocess.Popen[str]":
    env = backend.env()
    env["QTASK_TEST_MARKS"] = str(marks_dir)
    if how == "console script":
        cmd = [str(pathlib.Path(sys.executable).parent / "qtask")]
    else:
        cmd = [sys.executable, "-m", "qtask"]
    # --db / --queue on the command line, as a user would; the app reads them via the env.
    cmd += ["--db", backend.db, "--queue", backend.queue, "worker", "worker_app:client", "-c", "2"]
    env.pop("QTASK_DB_URL")
    env.pop("QTASK_QUEUE_URL")
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_worker_task_is_finished_by_another(db_backend: Backend, tmp_path: pathlib.Path) -> None:
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    with db_backend.client(sweep_interval=0.2) as c:
        c.install()
        task_id = c.create("crash me", {"hang_first": True}, queue="KILL", timeout=1.5, delete_deadline=3600)

        first = start_worker(db_backend, marks_dir, "console script")
        try:
            wait_until(lambda: marks(marks_dir, "start", task_id), "the first worker to start the task")
            assert c.get(task_id)["status"] == "processing"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert first.returncode == -signal.SIGKILL
        assert marks(marks_dir, "done", task_id) == []

        second = start_worker(db_backend, marks_dir, "python -m")
        try:
            done = wait_until(lambda: c.get(task_id)["status"] == "finished", "the task to be finished by the second worker")
            assert done
            task = c.get(task_id)
            assert task["count"] >= 2
            finishers = marks(marks_dir, "done", task_id)
            assert finishers and all(pid == second.pid for _, pid in finishers)
            assert all(attempt >= 2 for attempt, _ in finishers)
            assert [a for a, pid in marks(marks_dir, "start", task_id) if pid == first.pid] == [1]

            # SIGINT while a task runs: the worker lets it finish, then exits cleanly.
            slow = c.create("slow", {"sleep": 1.0}, queue="KILL", timeout=30, delete_deadline=3600)
            wait_until(lambda: marks(marks_dir, "start", slow), "the slow task to start")
            second.send_signal(signal.SIGINT)
            _, err = second.communicate(timeout=120)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 0, err
        assert "stopped" in err
        assert c.get(slow)["status"] == "finished"
        assert marks(marks_dir, "done", slow)


def test_sigterm_stops_an_idle_worker(sqlite: Backend, tmp_path: pathlib.Path) -> None:
    with sqlite.client(sweeper=False) as c:
        c.install()
    proc = start_worker(sqlite, tmp_path, "python -m")
    try:
        # Once it has logged its start line, it is in its loop.
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and "slot" not in line:
            line = proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "0 finished, 0 failed, 0 skipped" in err


def test_cli_worker_routes_kinds(sqlite: Backend, tmp_path: pathlib.Path) -> None:
    """`qtask worker module:client` runs the kinds registered with name=."""
    marks_dir = tmp_path / "marks"
    marks_dir.mkdir()
    with sqlite.client(sweeper=False) as c:
        c.install()
        echo = c.create("app.echo", {"text": "hi"}, queue="KINDS", delete_deadline=3600)
        proc = start_worker(sqlite, marks_dir, "python -m")
        try:
            wait_until(lambda: c.get(echo)["status"] == "finished", "the kind's task to finish")
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert [attempt for attempt, _ in marks(marks_dir, "echo", echo)] == [1]
        assert c.result(echo) == "hi"


def test_long_handler_keeps_its_lease(db_backend: Backend) -> None:
    """A handler running more than twice its timeout is not dispatched a second time:
    the worker renews the lease with processing()."""
    with db_backend.client(sweep_interval=0.1) as c:
        c.install()
        starts: List[int] = []

        @c.task("LONG")
        def long(message: qtask.Message) -> None:
            starts.append(message["attempt"])
            threading.Event().wait(4.5)

        task_id = c.create("long", {}, queue="LONG", timeout=2.0, delete_deadline=3600)
        run_until(c, lambda: c.get(task_id)["status"] == "finished", "the long task to finish", concurrency=2)
        assert starts == [1]
        assert c.get(task_id)["count"] == 1
