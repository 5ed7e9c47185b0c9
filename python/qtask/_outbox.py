"""Creating tasks on the caller's own connection, inside the caller's transaction.

The engine renders the insert for the client's database (``create_statement``:
SQL text plus ordered parameters); this module runs it on the caller's DB-API
connection (``sqlite3``, ``psycopg``, ``psycopg2``, ``PyMySQL``) or SQLAlchemy
``Connection`` / ``Session``, and never commits: the caller's commit makes the task
visible to workers, the caller's rollback leaves nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any, List, Optional, Tuple

from . import _qtask
from .errors import InvalidArgument, InvalidState
from .types import Created

# DB-API paramstyle -> the engine's placeholder style.
_STYLES = {"qmark": "qmark", "format": "format", "pyformat": "format", "numeric": "numeric"}
# Driver modules whose database is known, to refuse a connection to another database.
_DRIVER_DIALECT = {
    "sqlite3": "sqlite",
    "psycopg": "postgres",
    "psycopg2": "postgres",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
}
_ATTEMPTS = 3


def create_on(native: _qtask.Client, connection: Any, tasks: List[str]) -> List[Created]:
    """Inserts each task (JSON text) on ``connection``, in order; all checked first."""
    runner = _runner(connection)
    _check_dialect(native.db, runner.dialect)
    statements = []
    for i, task in enumerate(tasks):
        try:
            statements.append(json.loads(native.create_statement(task, runner.style)))
        except InvalidArgument as e:
            if len(tasks) == 1:
                raise
            raise InvalidArgument(f"tasks[{i}]: {e}") from None
    return [_insert(runner, statement) for statement in statements]


def _insert(runner: "_Runner", statement: Any) -> Created:
    insert, existing = statement["insert"], statement["existing"]
    for _ in range(_ATTEMPTS):
        if statement["returns_id"]:
            row = runner.fetchone(insert["sql"], insert["params"])
            if row is not None:
                return Created(int(row[0]))
        else:
            rowcount, lastrowid = runner.execute(insert["sql"], insert["params"])
            if rowcount == 1 and lastrowid:
                return Created(int(lastrowid))
        if existing is None:
            raise InvalidState("the insert wrote nothing and the task has no order_no")
        row = runner.fetchone(existing["sql"], existing["params"])
        if row is not None:
            return Created(int(row[0]), existing=True)
        # The task holding the order number ended meanwhile: insert again.
    raise InvalidState("the order number kept changing hands while creating")


def _check_dialect(db_url: str, dialect: Optional[str]) -> None:
    if dialect is None:
        return
    scheme = db_url.split(":", 1)[0]
    mine = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
    if mine.get(scheme) != dialect:
        raise InvalidArgument(
            f"connection is to a {dialect} database, but this client's tasks live in {scheme}: "
            "pass a connection to the client's own database"
        )


class _Runner:
    style: str
    dialect: Optional[str]

    def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        raise NotImplementedError

    def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        raise NotImplementedError


class _DbApi(_Runner):
    """A PEP 249 connection: statements run on a cursor of it; no commit."""

    def __init__(self, connection: Any, module: Any) -> None:
        self.connection = connection
        style = _STYLES.get(getattr(module, "paramstyle", ""))
        if style is None:
            raise InvalidArgument(f"connection's driver uses paramstyle {module.paramstyle!r}, which qtask cannot fill")
        self.style = style
        self.dialect = _DRIVER_DIALECT.get(module.__name__)

    def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, tuple(params))
            row = cursor.fetchone()
            return None if row is None else tuple(row)
        finally:
            cursor.close()

    def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, tuple(params))
            return cursor.rowcount, cursor.lastrowid
        finally:
            cursor.close()


class _SqlAlchemy(_Runner):
    """A SQLAlchemy ``Connection``: ``exec_driver_sql`` runs the driver's own SQL in
    the connection's transaction (begun if none is)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        dialect = connection.dialect
        style = _STYLES.get(dialect.paramstyle)
        if style is None:
            raise InvalidArgument(f"SQLAlchemy dialect uses paramstyle {dialect.paramstyle!r}, which qtask cannot fill")
        self.style = style
        name = dialect.name
        self.dialect = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql"}.get(name)

    def fetchone(self, sql: str, params: List[Any]) -> Optional[Tuple[Any, ...]]:
        row = self.connection.exec_driver_sql(sql, tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def execute(self, sql: str, params: List[Any]) -> Tuple[int, Optional[int]]:
        result = self.connection.exec_driver_sql(sql, tuple(params))
        return result.rowcount, result.lastrowid


def _runner(connection: Any) -> _Runner:
    module_name = type(connection).__module__.split(".")[0]
    if module_name == "sqlalchemy":
        if hasattr(connection, "exec_driver_sql"):
            return _SqlAlchemy(connection)
        if hasattr(connection, "connection") and hasattr(connection, "get_bind"):
            # A Session: its Connection for the current transaction (begun if none is).
            return _SqlAlchemy(connection.connection())
        raise InvalidArgument(f"connection: a SQLAlchemy {type(connection).__name__} is neither a Connection nor a Session")
    module = sys.modules.get(module_name)
    if module is None or not hasattr(connection, "cursor") or not hasattr(module, "paramstyle"):
        raise InvalidArgument(
            f"connection must be a DB-API connection or a SQLAlchemy Connection/Session, got {type(connection).__name__}"
        )
    return _DbApi(connection, module)
