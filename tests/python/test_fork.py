"""Safe after fork: a child opens and uses its own clients; a client inherited from
the parent raises ClosedError at once (never hangs, never touches the parent's
runtime). Children report through their exit code and leave with os._exit.

PostgreSQL only: SQLite itself does not survive a fork while the parent has the
database open (its global locks may be held by a parent thread at the fork; see
sqlite.org/howtocorrupt.html, "Carrying an open database connection across a fork")."""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
import warnings
from typing import Any, Callable, Iterator, List

import pytest

import qtask
from conftest import Backend, make_backend, wait_until

# CPython 3.12+ warns that forking a multi-threaded process may deadlock; qtask's
# runtime threads are what this file is about.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


@pytest.fixture(params=["pg", "pg+redis"])
def backend(request: Any, tmp_path: Any) -> Iterator[Backend]:
    """The server backends (see the module's note on SQLite)."""
    yield from make_backend(request.param, tmp_path)


def child_uses_qtask(backend: Backend, inherited: qtask.Client) -> None:
    """What every child checks: the inherited client is closed, a new one works."""
    with pytest.raises(qtask.ClosedError):
        inherited.get(1)
    with pytest.raises(qtask.ClosedError):
        inherited.create("x", {}, queue="FORK")
    inherited.close()  # no hang: the parent owns it
    with backend.client(sweeper=False) as own:
        task_id = own.create("child", {"pid": os.getpid()}, queue="FORK", delete_deadline=3600)
        assert own.get(task_id)["input"] == {"pid": os.getpid()}


def in_child(body: Callable[[], None]) -> None:
    """Runs `body` as a forked child's whole life; its exit code says how it went."""
    try:
        body()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_os_fork_child_opens_its_own_client(backend: Backend) -> None:
    with backend.client() as parent:
        parent.install()
        before = parent.create("parent", {}, queue="FORK", delete_deadline=3600)
        pid = os.fork()
        if pid == 0:
            in_child(lambda: child_uses_qtask(backend, parent))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's client and runtime still work after the child is gone.
        assert parent.get(before)["name"] == "parent"
        assert parent.count_tasks(name="child") == 1


def _mp_child(backend: Backend, inherited: qtask.Client) -> None:
    in_child(lambda: child_uses_qtask(backend, inherited))


def test_multiprocessing_fork_children(backend: Backend) -> None:
    with backend.client() as parent:
        parent.install()
        parent.create("parent", {}, queue="FORK", delete_deadline=3600)
        ctx = multiprocessing.get_context("fork")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            procs = [ctx.Process(target=_mp_child, args=(backend, parent)) for _ in range(3)]
            for p in procs:
                p.start()
        for p in procs:
            p.join()
        assert [p.exitcode for p in procs] == [0, 0, 0]
        assert parent.count_tasks(name="child") == 3


def test_preloaded_app_forks_workers(backend: Backend) -> None:
    """gunicorn --preload / prefork style: the app (and its client) exists before the
    fork; each worker process opens its own client and runs the worker engine."""
    with backend.client(sweep_interval=0.2) as app:
        app.install()
        ids = [app.create("job", {"i": i}, queue="PRELOAD", delete_deadline=3600) for i in range(20)]

        def worker_process() -> None:
            with pytest.raises(qtask.ClosedError):
                app.stats()
            with backend.client(sweep_interval=0.2) as own:
                done: List[int] = []

                @own.task("PRELOAD")
                def job(message: qtask.Message) -> None:
                    done.append(message["task_id"])

                stop = threading.Event()

                def stop_when_drained() -> None:
                    wait_until(lambda: own.count_tasks(status="finished") == len(ids), "every job finished")
                    stop.set()

                threading.Thread(target=stop_when_drained, daemon=True).start()
                own.run_worker(concurrency=2, stop=stop, handle_signals=False)

        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                in_child(worker_process)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        assert codes == [0, 0]
        assert all(app.get(i)["status"] == "finished" for i in ids)
