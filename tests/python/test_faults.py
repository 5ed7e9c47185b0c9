"""Holes an audit found (issue 10), from Python: each failed before its fix."""

from __future__ import annotations

import logging
import subprocess
import uuid
from typing import Any, Callable, Dict

import pytest

import qtask
from conftest import Backend, require
from test_cli import run

SECRET = "s3cret-pw"

SURROGATES: Dict[str, Callable[[qtask.Client], Any]] = {
    "name": lambda c: c.create("n\ud800", {}, queue="Q"),
    "queue": lambda c: c.create("n", {}, queue="Q\udfff"),
    "order_no": lambda c: c.create("n", {}, queue="Q", order_no="A\ud800"),
    "delay name": lambda c: c.delay("n\ud800", {}, queue="Q", delay=1),
    "many queue": lambda c: c.create_many([{"name": "n", "input": {}, "queue": "Q\ud800"}]),
    "pop queue": lambda c: c.pop("Q\ud800", wait=0),
}


@pytest.mark.parametrize("case", sorted(SURROGATES))
def test_a_lone_surrogate_is_invalid_argument(sqlite: Backend, case: str) -> None:
    with sqlite.client(sweeper=False) as c:
        c.install()
        with pytest.raises(qtask.InvalidArgument):
            SURROGATES[case](c)
        assert c.stats()["waiting"] == 0


def test_a_failure_text_with_a_surrogate_is_kept(sqlite: Backend) -> None:
    with sqlite.client(sweeper=False) as c:
        c.install()
        c.create("n", {}, queue="Q")
        message = c.pop("Q", wait=0)
        assert message is not None
        assert c.fail(message["task_id"], "bad \ud800 byte") == "waiting"
        assert c.get(message["task_id"])["last_error"] == "bad ? byte"


def test_a_huge_wait_returns_the_message(backend: Backend) -> None:
    with backend.client(sweeper=False) as c:
        c.install()
        task_id = c.create("n", {}, queue="HUGE")
        message = c.pop("HUGE", wait=1e19)
        assert message is not None and message["task_id"] == task_id


def test_huge_settings_are_refused(sqlite: Backend) -> None:
    for setting in ("sweep_interval", "connect_timeout"):
        with pytest.raises(qtask.InvalidArgument, match=setting):
            sqlite.client(**{setting: 1e19})


def test_namespaces_and_prefixes_cannot_collide(sqlite: Backend) -> None:
    with pytest.raises(qtask.InvalidArgument, match="namespace"):
        sqlite.client(namespace="a:b")
    with pytest.raises(qtask.InvalidArgument, match="redis_prefix"):
        sqlite.client(redis_prefix="qtask:a")


def test_a_huge_input_is_refused(sqlite: Backend) -> None:
    with sqlite.client(sweeper=False) as c:
        c.install()
        with pytest.raises(qtask.InvalidArgument, match="over the limit"):
            c.create("n", {"blob": "x" * (64 << 20)}, queue="Q")
        assert c.stats()["waiting"] == 0


def test_passwords_never_show(sqlite: Backend, caplog: pytest.LogCaptureFixture) -> None:
    # Error messages.
    bad = [
        {"db": f"oracle://u:{SECRET}@h/db"},
        {"db": f"postgres://u:{SECRET}@127.0.0.1:1/db", "connect_timeout": 0.3},
        {"db": sqlite.db, "queue": f"kafka://u:{SECRET}@h"},
    ]
    for settings in bad:
        with pytest.raises(qtask.Error) as raised:
            qtask.Client(**settings)
        assert SECRET not in str(raised.value) and SECRET not in repr(raised.value)

    # repr, the warning of a create whose queue is down, the pop error, stats.
    queue = f"redis://:{SECRET}@127.0.0.1:1/0"
    with caplog.at_level(logging.DEBUG), sqlite.client(queue=queue, sweeper=False) as c:
        c.install()
        assert SECRET not in repr(c)
        c.create("n", {}, queue="Q")
        with pytest.raises(qtask.QueueError) as raised:
            c.pop("Q", wait=0.01)
        assert SECRET not in str(raised.value)
        assert SECRET not in str(c.stats())
    assert caplog.records, "the queue-down warning was logged"
    assert SECRET not in caplog.text
    assert qtask._qtask.redact(queue) == "redis://:***@127.0.0.1:1/0"


def test_the_cli_hides_passwords() -> None:
    pg = require("pg")
    with_password = pg.replace("postgres@", f"postgres:{SECRET}@", 1)
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    try:
        r = run(["--db", with_password, "--table-prefix", prefix, "db", "install"])
        assert r.returncode == 0, r.stderr
        assert SECRET not in r.stdout + r.stderr and ":***@" in r.stdout
        r = run(["--db", with_password, "--table-prefix", prefix, "stats"])
        assert r.returncode == 0 and SECRET not in r.stdout + r.stderr
    finally:
        subprocess.run(
            ["psql", pg, "-qc", f"DROP TABLE IF EXISTS {prefix}task, {prefix}queue, {prefix}schedule"],
            capture_output=True,
        )
    r = run(["--db", f"postgres://u:{SECRET}@127.0.0.1:1/none", "stats"])
    assert r.returncode == 1 and SECRET not in r.stdout + r.stderr
