"""The engine's log lines reach Python's `qtask` logger, passwords hidden."""

from __future__ import annotations

import logging
from typing import Any

import qtask
from conftest import Backend


def test_engine_warning_reaches_the_qtask_logger_without_the_password(sqlite: Backend, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="qtask"):
        # Nothing listens on port 1: the engine warns at open, with the URL.
        down = qtask.Client(**sqlite.settings(queue="redis://:s3cret-pass@127.0.0.1:1/", sweeper=False))
        down.close()
    engine = [r for r in caplog.records if r.name == "qtask" and "Redis unreachable at open" in r.getMessage()]
    assert engine, [r.getMessage() for r in caplog.records]
    assert engine[0].levelno == logging.WARNING
    assert "127.0.0.1:1" in engine[0].getMessage()
    assert all("s3cret-pass" not in r.getMessage() for r in caplog.records)
