"""Bad input gets a typed exception and writes nothing."""

from __future__ import annotations

import builtins
import math
from typing import Any, Callable, Dict

import pytest

import qtask
from conftest import Backend

EMPTY = {"waiting": 0, "processing": 0, "finished": 0, "failed": 0, "cancelled": 0}


def counts(c: qtask.Client) -> Dict[str, int]:
    s = c.stats()
    return {k: s[k] for k in EMPTY}  # type: ignore[literal-required]


BAD_CREATES: Dict[str, Callable[[qtask.Client], Any]] = {
    "empty name": lambda c: c.create("", {"a": 1}, queue="Q"),
    "blank name": lambda c: c.create("   ", {"a": 1}, queue="Q"),
    "oversized name": lambda c: c.create("n" * 300, {"a": 1}, queue="Q"),
    "empty queue": lambda c: c.create("n", {"a": 1}, queue=""),
    "queue with spaces": lambda c: c.create("n", {"a": 1}, queue="A B"),
    "input a list": lambda c: c.create("n", [1, 2], queue="Q"),  # type: ignore[arg-type]
    "input a string": lambda c: c.create("n", "text", queue="Q"),  # type: ignore[arg-type]
    "input not JSON": lambda c: c.create("n", {"s": {1, 2}}, queue="Q"),
    "input NaN": lambda c: c.create("n", {"x": math.nan}, queue="Q"),
    "input lone surrogate": lambda c: c.create("n", {"s": "\ud800"}, queue="Q"),
    "reserved key": lambda c: c.create("n", {"task_id": 5}, queue="Q"),
    "oversized input": lambda c: c.create("n", {"blob": "x" * 5000}, queue="Q"),
    "zero timeout": lambda c: c.create("n", {}, queue="Q", timeout=0),
    "negative timeout": lambda c: c.create("n", {}, queue="Q", timeout=-1),
    "infinite deadline": lambda c: c.create("n", {}, queue="Q", deadline=math.inf),
    "max_count zero": lambda c: c.create("n", {}, queue="Q", max_count=0),
    "max_count negative": lambda c: c.create("n", {}, queue="Q", max_count=-3),
    "timeout not a number": lambda c: c.create("n", {}, queue="Q", timeout="5"),  # type: ignore[arg-type]
    "negative delay": lambda c: c.delay("n", {}, queue="Q", delay=-1),
    "delay past deadline": lambda c: c.delay("n", {}, queue="Q", delay=100, deadline=10),
    "deferred, bad input": lambda c: c.create_deferred("", {}, queue="Q"),
    "many, one bad": lambda c: c.create_many(
        [{"name": "ok", "input": {}, "queue": "Q"}, {"name": "", "input": {}, "queue": "Q"}]
    ),
    "many, unknown key": lambda c: c.create_many([{"name": "ok", "input": {}, "queue": "Q", "bogus": 1}]),  # type: ignore[typeddict-unknown-key]
}


@pytest.mark.parametrize("case", sorted(BAD_CREATES))
def test_bad_input_writes_nothing(db_backend: Backend, case: str) -> None:
    with db_backend.client(sweeper=False, max_payload_bytes=4096) as c:
        c.install()
        with pytest.raises(qtask.InvalidArgument) as raised:
            BAD_CREATES[case](c)
        assert isinstance(raised.value, ValueError)
        assert isinstance(raised.value, qtask.Error)
        assert str(raised.value)
        assert counts(c) == EMPTY
        assert c.pop("Q", wait=0) is None


def test_unknown_keyword_and_bad_settings(tmp_path: Any) -> None:
    db = f"sqlite://{tmp_path / 'x.db'}"
    with pytest.raises(qtask.InvalidArgument, match="bogus"):
        qtask.Client(db, bogus=1)
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client(db, sweep_interval=0)
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client(db, sweep_interval=-1)
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client(db, table_prefix="bad prefix; DROP")
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client("oracle://nowhere/x")
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client(db, queue="amqp://x")
    with pytest.raises(qtask.InvalidArgument):
        qtask.Client(db, batch_size="many")


def test_not_found_invalid_state_closed(sqlite: Backend) -> None:
    c = sqlite.client(sweeper=False)
    c.install()
    with pytest.raises(qtask.NotFound) as nf:
        c.get(123456)
    assert isinstance(nf.value, KeyError) and isinstance(nf.value, LookupError)
    assert "123456" in str(nf.value) and not str(nf.value).startswith("'")
    with pytest.raises(qtask.NotFound):
        c.finish(123456)
    assert c.processing(123456) is False

    t = c.create("n", {}, queue="Q", delete_deadline=3600)
    c.finish(t)
    with pytest.raises(qtask.InvalidState):
        c.cancel(t)

    c.close()
    c.close()  # twice is fine
    assert c.closed
    with pytest.raises(qtask.ClosedError):
        c.stats()
    with pytest.raises(qtask.ClosedError):
        c.create("n", {}, queue="Q")


def test_unreachable_database_is_a_database_error() -> None:
    # Port 1 on loopback: refused at once, nothing listens there.
    with pytest.raises(qtask.DatabaseError):
        qtask.Client("postgres://nobody@127.0.0.1:1/none", sweeper=False)


def test_exception_hierarchy() -> None:
    for name in ("InvalidArgument", "NotFound", "InvalidState", "DatabaseError", "QueueError",
                 "TimeoutError", "ClosedError", "InternalError"):
        assert issubclass(getattr(qtask, name), qtask.Error)
    assert issubclass(qtask.TimeoutError, builtins.TimeoutError)
    assert issubclass(qtask.InvalidArgument, ValueError)
    assert issubclass(qtask.NotFound, KeyError)
