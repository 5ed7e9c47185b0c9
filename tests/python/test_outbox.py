"""Enqueue in the caller's transaction: ``create(..., connection=conn)`` on the
caller's own DB-API or SQLAlchemy connection. The task is seen by workers only once
the caller commits; a rollback, or a process killed before its commit, leaves
nothing. Every database (SQLite, PostgreSQL, MariaDB) with both queues (db, Redis).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from typing import Any, Iterator, List, Tuple
from urllib.parse import urlsplit

import pytest

import qtask
from conftest import CI, Backend, _reachable, _unique, wait_until

KINDS = ["sqlite", "sqlite+redis", "pg", "pg+redis", "mysql", "mysql+redis"]


def _mysql_reachable(url: str) -> bool:
    import socket

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 3306), timeout=2):
            return True
    except OSError:
        return False


def _require(env: str) -> str:
    url = os.environ.get(env) or ""
    up = _mysql_reachable(url) if url.startswith("mysql") else bool(url) and _reachable(url)
    if not up:
        problem = f"SKIP: ${env} not reachable ({url or 'not set'})"
        if CI:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    return url


_OPEN: List[Any] = []


def connect(backend: Backend) -> Any:
    """The caller's own connection to the backend's database, with its own driver.

    Closed by the fixture after the test's client: Python's sqlite3 is another copy
    of SQLite than qtask's, and closing it while qtask's connections to the same
    file are open would let it take the WAL away from them (python/README.md)."""
    conn = _connect(backend)
    _OPEN.append(conn)
    return conn


def _connect(backend: Backend) -> Any:
    if backend.db.startswith("sqlite"):
        return sqlite3.connect(backend.db[len("sqlite://") :], timeout=30)
    if backend.db.startswith("postgres"):
        import psycopg

        return psycopg.connect(backend.db)
    import pymysql

    parts = urlsplit(backend.db)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
    )


@pytest.fixture(params=KINDS)
def outbox(request: Any, tmp_path: Any) -> Iterator[Backend]:
    db_kind, _, queue_kind = request.param.partition("+")
    queue = _require("QTASK_TEST_REDIS_URL") if queue_kind else "db"
    prefix = _unique()
    if db_kind == "sqlite":
        db = f"sqlite://{tmp_path / 'qtask.db'}"
    elif db_kind == "pg":
        db = _require("QTASK_TEST_PG_URL")
    else:
        db = _require("QTASK_TEST_MYSQL_URL")
    backend = Backend(request.param, db, queue, prefix, f"qtask-test-{prefix}")
    yield backend
    # Closed only now, after the test closed its client (see connect()); and a
    # failed test's open transaction must not hold the table the teardown drops.
    while _OPEN:
        _OPEN.pop().close()
    if db_kind != "sqlite":
        conn = _connect(backend)
        try:
            for table in ("task", "queue", "schedule"):
                conn.cursor().execute(f"DROP TABLE IF EXISTS {prefix}{table}")
            conn.commit()
        finally:
            conn.close()


def _client(backend: Backend) -> qtask.Client:
    # No background sweeper: each test says when a sweep runs.
    c = backend.client(sweeper=False)
    c.install()
    return c


def _take(c: qtask.Client, backend: Backend, queue: str) -> qtask.Message:
    """The task's message, as a worker gets it (a sweep offers it to Redis first)."""
    if "redis" in backend.name:
        c.sweep_once()
    return wait_until(lambda: c.pop(queue, 0.5), f"the message on {queue}")


def _nothing_to_take(c: qtask.Client, backend: Backend, queue: str) -> None:
    if backend.name.startswith("sqlite"):
        # A claim would wait for the caller's write lock; the row read is enough.
        return
    if "redis" in backend.name:
        assert c.sweep_once()["dispatched"] == 0
    assert c.pop(queue, 0) is None


def test_commit_makes_the_task_visible(outbox: Backend) -> None:
    with _client(outbox) as c:
        conn = connect(outbox)
        created = c.create("outbox", {"k": "v"}, queue="OB", connection=conn, timeout=30)
        assert isinstance(created, int) and created.id == int(created) > 0
        assert not created.existing and not created.dispatched
        with pytest.raises(qtask.NotFound):
            c.get(created)
        _nothing_to_take(c, outbox, "OB")
        conn.commit()
        assert c.get(created)["status"] == "waiting"
        message = _take(c, outbox, "OB")
        assert (message["task_id"], message["k"], message["attempt"]) == (created, "v", 1)
        c.finish(created)


def test_rollback_leaves_nothing(outbox: Backend) -> None:
    with _client(outbox) as c:
        conn = connect(outbox)
        created = c.create_many(
            [{"name": "a", "input": {}, "queue": "OB"}, {"name": "b", "input": {}, "queue": "OB", "order_no": "R1"}],
            connection=conn,
        )
        assert len(created) == 2 and len(set(created)) == 2
        conn.rollback()
        for task_id in created:
            with pytest.raises(qtask.NotFound):
                c.get(task_id)
        assert c.count_tasks() == 0
        if "redis" in outbox.name:
            assert c.sweep_once()["dispatched"] == 0
        assert c.pop("OB", 0) is None
        # The order number is free again.
        again = c.create("b", {}, queue="OB", order_no="R1")
        assert not again.existing


def test_order_no_of_a_live_task_returns_it(outbox: Backend) -> None:
    with _client(outbox) as c:
        first = c.create("o", {"n": 1}, queue="OB", order_no="ORD-1")
        conn = connect(outbox)
        again = c.create("o", {"n": 2}, queue="OB", order_no="ORD-1", connection=conn)
        conn.commit()
        assert (again.id, again.existing, again.dispatched) == (first.id, True, False)
        assert c.count_tasks() == 1


def test_dispatch_after_commit_offers_at_once(outbox: Backend) -> None:
    with _client(outbox) as c:
        conn = connect(outbox)
        created = c.create("d", {}, queue="OB", connection=conn)
        conn.commit()
        assert c.dispatch(created) is True
        # No sweep: the dispatch put it on the queue (Redis), or the row is due (db).
        message = wait_until(lambda: c.pop("OB", 0.5), "the dispatched message")
        assert message["task_id"] == created
        if "redis" in outbox.name:
            assert c.dispatch(created) is False  # claimed: not waiting any more


def test_a_task_in_the_callers_transaction_equals_a_created_one(outbox: Backend) -> None:
    with _client(outbox) as c:
        options: Any = dict(delay=60, timeout=30, deadline=600, delete_deadline=5, max_count=4, priority=7)
        own = c.delay("same", {"k": 1}, queue="OB", order_no="SAME-1", **options)
        conn = connect(outbox)
        theirs = c.delay("same", {"k": 1}, queue="OB", order_no="SAME-2", connection=conn, **options)
        conn.commit()
        times = {"id", "order_no", "created_at", "updated_at", "next_at", "deadline_at", "delete_at"}
        a, b = c.get(own), c.get(theirs)
        assert a["priority"] == 7
        assert {k: v for k, v in a.items() if k not in times} == {k: v for k, v in b.items() if k not in times}


def test_priority_survives_the_callers_transaction(outbox: Backend) -> None:
    with _client(outbox) as c:
        low = c.create("low", {}, queue="OB", priority=-2)
        conn = connect(outbox)
        high = c.create_many([{"name": "high", "input": {}, "queue": "OB", "priority": 9}], connection=conn)[0]
        conn.commit()
        assert c.get(high)["priority"] == 9
        # Higher priority is taken first, though created later.
        assert _take(c, outbox, "OB")["task_id"] == high
        assert _take(c, outbox, "OB")["task_id"] == low
        conn = connect(outbox)
        with pytest.raises(qtask.InvalidArgument, match="priority"):
            c.create("bad", {}, queue="OB", priority=5000, connection=conn)


CRASH = """
import sys, time
sys.path.insert(0, {tests!r})
import qtask
from conftest import Backend
from test_outbox import connect
backend = Backend(*{fields!r})
c = backend.client(sweeper=False)
conn = connect(backend)
created = c.create("crash", {{}}, queue="OB", order_no="CRASH-1", connection=conn)
print(int(created), flush=True)
time.sleep(600)
"""


def test_a_process_killed_before_its_commit_leaves_nothing(outbox: Backend) -> None:
    with _client(outbox) as c:
        fields: Tuple[str, ...] = (outbox.name, outbox.db, outbox.queue, outbox.table_prefix, outbox.redis_prefix)
        code = CRASH.format(tests=os.path.dirname(__file__), fields=fields)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            task_id = int(child.stdout.readline())
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        with pytest.raises(qtask.NotFound):
            c.get(task_id)
        if "redis" in outbox.name:
            assert c.sweep_once()["dispatched"] == 0
        # The order number was never taken (the database released the dead transaction).
        fresh = c.create("after", {}, queue="OB", order_no="CRASH-1", timeout=30)
        assert not fresh.existing
        assert _take(c, outbox, "OB")["task_id"] == fresh


def test_sqlalchemy_connection_and_session(tmp_path: Any) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    backend = Backend("sqlite", f"sqlite://{tmp_path / 'sa.db'}", "db", _unique(), "unused")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sa.db'}")
    with _client(backend) as c:
        with engine.connect() as conn:
            kept = c.create("sa", {"via": "connection"}, queue="SA", connection=conn)
            conn.commit()
            dropped = c.create("sa", {"via": "connection"}, queue="SA", connection=conn)
            conn.rollback()
            # Checked now: SQLite gives a rolled-back id out again.
            with pytest.raises(qtask.NotFound):
                c.get(dropped)
        with Session(engine) as session:
            in_session = c.create("sa", {"via": "session"}, queue="SA", connection=session)
            session.commit()
        assert c.get(kept)["status"] == "waiting"
        assert c.get(in_session)["input"] == {"via": "session"}
    engine.dispose()


def test_sqlalchemy_session_on_postgres() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    url = _require("QTASK_TEST_PG_URL")
    backend = Backend("pg", url, "db", _unique(), "unused")
    engine = sqlalchemy.create_engine(url.replace("postgres://", "postgresql+psycopg://", 1))
    try:
        with _client(backend) as c:
            with Session(engine) as session:
                task_id = c.create("sa", {}, queue="SA", connection=session, order_no="SA-1")
                assert c.pop("SA", 0) is None
                session.rollback()
            with pytest.raises(qtask.NotFound):
                c.get(task_id)
            with Session(engine) as session:
                task_id = c.create("sa", {}, queue="SA", connection=session, order_no="SA-1")
                session.commit()
            assert c.pop("SA", 2.0)["task_id"] == task_id  # type: ignore[index]
    finally:
        with engine.begin() as conn:
            for table in ("task", "queue", "schedule"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {backend.table_prefix}{table}")
        engine.dispose()


def test_a_connection_to_another_database_is_refused(tmp_path: Any) -> None:
    backend = Backend("sqlite", f"sqlite://{tmp_path / 'q.db'}", "db", _unique(), "unused")
    with _client(backend) as c:
        with pytest.raises(qtask.InvalidArgument):
            c.create("n", {}, queue="Q", connection=object())
        pg = os.environ.get("QTASK_TEST_PG_URL")
        if pg and _reachable(pg):
            import psycopg

            with psycopg.connect(pg) as conn:
                with pytest.raises(qtask.InvalidArgument, match="postgres"):
                    c.create("n", {}, queue="Q", connection=conn)
        with pytest.raises(qtask.InvalidArgument):
            c.create("", {}, queue="Q", connection=sqlite3.connect(":memory:"))
