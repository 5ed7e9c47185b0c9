"""Shared fixtures: backends (SQLite always; PostgreSQL and Redis when reachable),
a unique table prefix per test, a bounded wait helper, and a worker run in a thread.

A server that cannot be reached skips its tests with one loud line
(``SKIP: <server> not reachable at <url>``); with ``CI=true`` it fails them instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar
from urllib.parse import urlsplit

import pytest

import qtask

CI = os.environ.get("CI") == "true"

T = TypeVar("T")


def wait_until(predicate: Callable[[], Optional[T]], what: str, limit: float = 60.0) -> T:
    """Polls `predicate` until it returns something truthy. The limit only keeps a
    broken build from hanging: no test asserts on how long anything took."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@contextmanager
def worker_running(c: qtask.Client, **options: Any) -> Iterator[List[qtask.WorkerReport]]:
    """Runs ``c.run_worker(**options)`` in a thread for the ``with`` block, then stops it
    gracefully and joins it; the yielded list holds its report after the block."""
    stop = threading.Event()
    reports: List[qtask.WorkerReport] = []
    t = threading.Thread(target=lambda: reports.append(c.run_worker(stop=stop, handle_signals=False, **options)))
    t.start()
    try:
        yield reports
    finally:
        stop.set()
        t.join()


def run_until(c: qtask.Client, done: Any, what: str, **options: Any) -> qtask.WorkerReport:
    """Runs a worker (``run_worker(**options)``) until ``done()`` holds; its report."""
    with worker_running(c, **options) as reports:
        wait_until(done, what)
    return reports[0]


def _reachable(url: str) -> bool:
    parts = urlsplit(url.split(",")[0])
    host = parts.hostname or "127.0.0.1"
    port = parts.port or {"postgres": 5432, "postgresql": 5432, "redis": 6379}.get(parts.scheme, 0)
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Server:
    name: str
    env: str
    url: Optional[str]
    up: bool

    @property
    def problem(self) -> str:
        if not self.url:
            return f"SKIP: {self.name} not configured (${self.env} is empty)"
        return f"SKIP: {self.name} not reachable at {self.url}"


_SERVERS: Dict[str, Server] = {}


def server(key: str) -> Server:
    if key not in _SERVERS:
        name, env = {"pg": ("PostgreSQL", "QTASK_TEST_PG_URL"), "redis": ("Redis", "QTASK_TEST_REDIS_URL")}[key]
        url = os.environ.get(env) or None
        _SERVERS[key] = Server(name, env, url, bool(url) and _reachable(url or ""))
    return _SERVERS[key]


def require(key: str) -> str:
    s = server(key)
    if not s.up:
        if CI:
            pytest.fail(f"{s.problem} (CI=true: a missing server is a failure)", pytrace=False)
        pytest.skip(s.problem)
    assert s.url
    return s.url


def pytest_report_header(config: Any) -> List[str]:
    lines = []
    for key in ("pg", "redis"):
        s = server(key)
        lines.append(f"{s.name}: {s.url} (up)" if s.up else s.problem)
    return lines


def drop_pg_table(url: str, table: str) -> None:
    psql = shutil.which("psql")
    if psql:
        subprocess.run([psql, url, "-q", "-c", f"DROP TABLE IF EXISTS {table}"], capture_output=True, check=False)


@dataclass
class Backend:
    """What a test needs to open clients on one database + queue combination."""

    name: str
    db: str
    queue: str
    table_prefix: str
    redis_prefix: str

    def settings(self, **extra: Any) -> Dict[str, Any]:
        settings: Dict[str, Any] = {
            "db": self.db,
            "queue": self.queue,
            "table_prefix": self.table_prefix,
            "redis_prefix": self.redis_prefix,
        }
        settings.update(extra)
        return settings

    def client(self, **extra: Any) -> qtask.Client:
        return qtask.Client(**self.settings(**extra))

    def env(self) -> Dict[str, str]:
        """For subprocesses (tests/python/worker_app.py reads these)."""
        return {
            **os.environ,
            "QTASK_DB_URL": self.db,
            "QTASK_QUEUE_URL": self.queue,
            "QTASK_TEST_TABLE_PREFIX": self.table_prefix,
            "QTASK_TEST_REDIS_PREFIX": self.redis_prefix,
        }


def _unique() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


def make_backend(kind: str, tmp_path: Any) -> Iterator[Backend]:
    prefix = _unique()
    redis_prefix = f"qtask-test-{prefix}"
    if kind == "sqlite":
        yield Backend(kind, f"sqlite://{tmp_path / 'qtask.db'}", "db", prefix, redis_prefix)
        return
    pg = require("pg")
    queue = "db"
    if kind == "pg+redis":
        queue = require("redis")
    try:
        yield Backend(kind, pg, queue, prefix, redis_prefix)
    finally:
        drop_pg_table(pg, f"{prefix}task, {prefix}queue, {prefix}schedule")


@pytest.fixture(params=["sqlite", "pg", "pg+redis"])
def backend(request: Any, tmp_path: Any) -> Iterator[Backend]:
    """Every database + queue combination."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "pg"])
def db_backend(request: Any, tmp_path: Any) -> Iterator[Backend]:
    """Every database, with the db queue."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def sqlite(tmp_path: Any) -> Iterator[Backend]:
    yield from make_backend("sqlite", tmp_path)


@pytest.fixture
def python() -> str:
    return sys.executable
