"""``AsyncClient.create(…, connection=conn)``: the insert on the caller's own async
connection, inside the caller's transaction, never committed here.

The statements are the engine's, as for the blocking client (``_outbox.py``); only
running them differs: ``psycopg.AsyncConnection``, ``aiosqlite.Connection``, or a
SQLAlchemy ``AsyncConnection`` / ``AsyncSession``.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

from . import _qtask
from ._outbox import _ATTEMPTS, _STYLES, _check_dialect
from .errors import InvalidArgument, InvalidState
from .types import Created

_SQLALCHEMY_DIALECT = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql"}


async def create_on(native: _qtask.AsyncClient, connection: Any, tasks: List[str]) -> List[Created]:
    """Inserts each task (JSON text) on ``connection``, in order; all checked first."""
    runner = await _runner(connection)
    _check_dialect(native.db, runner.dialect)
    statements = []
    for i, task in enumerate(tasks):
        try:
            statements.append(json.loads(await native.create_statement(task, runner.style)))
        except InvalidArgument as e:
            if len(tasks) == 1:
                raise
            raise InvalidArgument(f"tasks[{i}]: {e}") from None
    return [await _insert(runner, statement) for statement in statements]


async def _insert(runner: _Runner, statement: Any) -> Created:
    insert, existing = statement["insert"], statement["existing"]
    for _ in range(_ATTEMPTS):
        if statement["returns_id"]:
            row = await runner.fetchone(insert["sql"], insert["params"])
            if row is not None:
                return Created(int(row[0]))
        else:
            rowcount, lastrowid = await runner.execute(insert["sql"], insert["params"])
            if rowcount == 1 and lastrowid:
                return Created(int(lastrowid))
        if existing is None:
            raise InvalidState("the insert wrote nothing and the task has no order_no")
        row = await runner.fetchone(existing["sql"], existing["params"])
        if row is not None:
            return Created(int(row[0]), existing=True)
        # The task holding the order number ended meanwhile: insert again.
    raise InvalidState("the order number kept changing hands while creating")


class _Runner:
    style: str
    dialect: Optional[str]

    async def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        raise NotImplementedError

    async def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        raise NotImplementedError


class _Psycopg(_Runner):
    """A ``psycopg.AsyncConnection``: statements run on a cursor of it."""

    style = "format"
    dialect = "postgres"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        async with self.connection.cursor() as cursor:
            await cursor.execute(sql, tuple(params))
            row = await cursor.fetchone()
            return None if row is None else tuple(row)

    async def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        async with self.connection.cursor() as cursor:
            await cursor.execute(sql, tuple(params))
            return cursor.rowcount, None


class _Aiosqlite(_Runner):
    """An ``aiosqlite.Connection`` (its transaction is sqlite3's: begun by the insert)."""

    style = "qmark"
    dialect = "sqlite"

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        async with self.connection.execute(sql, tuple(params)) as cursor:
            row = await cursor.fetchone()
            return None if row is None else tuple(row)

    async def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        async with self.connection.execute(sql, tuple(params)) as cursor:
            return cursor.rowcount, cursor.lastrowid


class _SqlAlchemy(_Runner):
    """A SQLAlchemy ``AsyncConnection``: ``exec_driver_sql`` in its transaction."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        dialect = connection.dialect
        style = _STYLES.get(dialect.paramstyle)
        if style is None:
            raise InvalidArgument(f"SQLAlchemy dialect uses paramstyle {dialect.paramstyle!r}, which qtask cannot fill")
        self.style = style
        self.dialect = _SQLALCHEMY_DIALECT.get(dialect.name)

    async def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        row = (await self.connection.exec_driver_sql(sql, tuple(params))).fetchone()
        return None if row is None else tuple(row)

    async def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        result = await self.connection.exec_driver_sql(sql, tuple(params))
        return result.rowcount, result.lastrowid


async def _runner(connection: Any) -> _Runner:
    kind = type(connection)
    module = kind.__module__.split(".")[0]
    if module == "sqlalchemy":
        if kind.__name__ == "AsyncConnection":
            return _SqlAlchemy(connection)
        if kind.__name__ == "AsyncSession":
            # Its AsyncConnection for the current transaction (begun if none is).
            return _SqlAlchemy(await connection.connection())
    if module == "psycopg" and kind.__name__.startswith("AsyncConnection"):
        return _Psycopg(connection)
    if module == "aiosqlite" and kind.__name__ == "Connection":
        return _Aiosqlite(connection)
    raise InvalidArgument(
        "connection must be a psycopg AsyncConnection, an aiosqlite Connection or a SQLAlchemy "
        f"AsyncConnection/AsyncSession, got {kind.__module__}.{kind.__name__} "
        "(a blocking connection belongs to qtask.Client)"
    )
