"""The `qtask` command against a real database."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Dict, List, Optional

import qtask
from conftest import Backend

QTASK = str(pathlib.Path(sys.executable).parent / "qtask")


def run(args: List[str], env: Optional[Dict[str, str]] = None) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([QTASK, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_install_stats_get(db_backend: Backend) -> None:
    common = ["--db", db_backend.db, "--table-prefix", db_backend.table_prefix]
    r = run([*common, "db", "install"])
    assert r.returncode == 0, r.stderr
    assert f"{db_backend.table_prefix}task" in r.stdout
    r = run([*common, "db", "install"])  # idempotent
    assert r.returncode == 0, r.stderr

    with db_backend.client(sweeper=False) as c:
        task_id = c.create("cli task", {"order_no": "A-1"}, queue="CLI", delete_deadline=3600)

    r = run([*common, "stats"])
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["waiting"] == 1 and stats["finished"] == 0

    r = run([*common, "get", str(task_id)])
    assert r.returncode == 0, r.stderr
    task = json.loads(r.stdout)
    assert task["id"] == task_id and task["status"] == "waiting" and task["input"] == {"order_no": "A-1"}

    r = run([*common, "get", "987654321"])
    assert r.returncode == 1
    assert "not found" in r.stderr


def test_cli_reads_the_environment(sqlite: Backend) -> None:
    env = {**os.environ, "QTASK_DB_URL": sqlite.db}
    r = run(["--table-prefix", sqlite.table_prefix, "db", "install"], env=env)
    assert r.returncode == 0, r.stderr
    with sqlite.client(sweeper=False) as c:
        assert c.stats()["waiting"] == 0  # the table exists where the env pointed


def test_cli_errors() -> None:
    r = run(["--db", "oracle://x/y", "stats"])
    assert r.returncode == 1 and "qtask: error:" in r.stderr
    r = run(["--db", "postgres://nobody@127.0.0.1:1/none", "stats"])
    assert r.returncode == 1 and "database" in r.stderr.lower()
    r = run(["get", "not-a-number"])
    assert r.returncode == 2
    r = run([])
    assert r.returncode == 2
    r = run(["--version"])
    assert r.returncode == 0 and qtask.__version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "qtask", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and qtask.__version__ in r.stdout
