"""Redis down at create: the row is saved, a warning says so, the sweeper dispatches
it later (through a client on a reachable Redis)."""

from __future__ import annotations

import logging
from typing import Any

import qtask
from conftest import Backend, require


def test_create_with_redis_down_saves_the_task_and_warns(sqlite: Backend, caplog: Any) -> None:
    down = qtask.Client(**sqlite.settings(queue="redis://127.0.0.1:1/", sweeper=False))
    down.install()
    with caplog.at_level(logging.WARNING, logger="qtask"):
        task_id = down.create("pay", {"amount": 3}, queue="DOWN:Q", timeout=30)
    assert any(str(task_id) in r.getMessage() and "unreachable" in r.getMessage() for r in caplog.records)
    assert down.get(task_id)["status"] == "waiting"
    down.close()

    up = qtask.Client(**sqlite.settings(queue=require("redis"), sweeper=False))
    assert up.sweep_once()["dispatched"] == 1
    message = up.pop("DOWN:Q", wait=2.0)
    assert message is not None and message["task_id"] == task_id and message["attempt"] == 1
    assert message["amount"] == 3
    up.close()
