"""AsyncClient.create(…, connection=conn) on the caller's own async connection
(aiosqlite, psycopg's AsyncConnection, SQLAlchemy's AsyncConnection/AsyncSession):
workers see the task only after the caller's commit; a rollback leaves nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

import qtask
from conftest import Backend, _unique

KEEP = 3600.0


async def _connect(backend: Backend) -> Any:
    if backend.db.startswith("sqlite"):
        import aiosqlite

        return await aiosqlite.connect(backend.db[len("sqlite://") :], timeout=30)
    import psycopg

    return await psycopg.AsyncConnection.connect(backend.db)


async def _take(c: qtask.AsyncClient, backend: Backend, queue: str) -> qtask.Message:
    if backend.queue != "db":
        await c.sweep_once()  # offers the committed task to Redis
    for _ in range(100):
        message = await c.pop(queue, wait=0.5)
        if message is not None:
            return message
    raise AssertionError("no message")


def test_commit_and_rollback(backend: Backend) -> None:
    async def main() -> None:
        # The caller's connection is closed after qtask's (SQLite: see test_outbox.py).
        conn = await _connect(backend)
        try:
            async with qtask.AsyncClient(**backend.settings(sweeper=False)) as c:
                await c.install()
                kept = await c.create("ob", {"k": "v"}, queue="AOB", connection=conn, delete_deadline=KEEP)
                assert not kept.existing and not kept.dispatched
                with pytest.raises(qtask.NotFound):
                    await c.get(kept)
                await conn.commit()
                assert (await c.get(kept))["status"] == "waiting"
                message = await _take(c, backend, "AOB")
                assert (message["task_id"], message["k"]) == (kept, "v")

                dropped = await c.create_many(
                    [{"name": "a", "input": {}, "queue": "AOB"}, {"name": "b", "input": {}, "queue": "AOB", "order_no": "R"}],
                    connection=conn,
                )
                later = await c.delay("d", {}, queue="AOB", delay=60, connection=conn)
                await conn.rollback()
                for task_id in [*dropped, later]:
                    with pytest.raises(qtask.NotFound):
                        await c.get(task_id)
                assert await c.count_tasks() == 1
                assert not (await c.create("b", {}, queue="AOB", order_no="R")).existing
        finally:
            await conn.close()

    asyncio.run(main())


def test_sqlalchemy_async_connection_and_session(tmp_path: Any) -> None:
    sqlalchemy_asyncio = pytest.importorskip("sqlalchemy.ext.asyncio")
    pytest.importorskip("aiosqlite")
    path = tmp_path / "sa.db"
    backend = Backend("sqlite", f"sqlite://{path}", "db", _unique(), "unused")

    async def main() -> None:
        engine = sqlalchemy_asyncio.create_async_engine(f"sqlite+aiosqlite:///{path}")
        try:
            async with qtask.AsyncClient(**backend.settings(sweeper=False)) as c:
                await c.install()
                async with engine.connect() as conn:
                    kept = await c.create("sa", {"via": "connection"}, queue="SA", connection=conn)
                    await conn.commit()
                    dropped = await c.create("sa", {}, queue="SA", connection=conn)
                    await conn.rollback()
                    with pytest.raises(qtask.NotFound):
                        await c.get(dropped)
                async with sqlalchemy_asyncio.AsyncSession(engine) as session:
                    in_session = await c.create("sa", {"via": "session"}, queue="SA", connection=session)
                    await session.commit()
                assert (await c.get(kept))["status"] == "waiting"
                assert (await c.get(in_session))["input"] == {"via": "session"}
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_a_blocking_connection_is_refused(sqlite: Backend) -> None:
    async def main() -> None:
        async with qtask.AsyncClient(**sqlite.settings(sweeper=False)) as c:
            await c.install()
            conn = sqlite3.connect(":memory:")
            with pytest.raises(qtask.InvalidArgument, match="blocking"):
                await c.create("n", {}, queue="Q", connection=conn)
            conn.close()
            with pytest.raises(qtask.InvalidArgument):
                await c.create("n", {}, queue="Q", connection=object())

    asyncio.run(main())
