"""The ``qtask`` command.

    qtask [--db URL] [--queue URL] [--namespace NS] [--table-prefix P] COMMAND

    qtask db install                 create or migrate the task table (idempotent)
    qtask stats                      task counts, as JSON
    qtask get ID                     one task, as JSON
    qtask worker module:client [-c N]
                                     run the handlers registered on that client

``--db`` / ``--queue`` / ``--namespace`` default to ``$QTASK_DB_URL`` /
``$QTASK_QUEUE_URL`` / ``$QTASK_NAMESPACE``. For ``worker``, they are put in
those variables before the module is imported, so a module that builds its client
with ``qtask.Client()`` picks them up; a client built with explicit URLs keeps them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, List, Optional

from ._client import Client
from ._qtask import __version__, redact
from .errors import Error


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qtask", description="qtask: a durable task dispatcher")
    p.add_argument("--version", action="version", version=f"qtask {__version__}")
    p.add_argument("--db", help="database URL (default $QTASK_DB_URL, else sqlite://qtask.db)")
    p.add_argument("--queue", help='queue: "db" or a Redis URL (default $QTASK_QUEUE_URL, else db)')
    p.add_argument("--namespace", help="namespace (default $QTASK_NAMESPACE, else default)")
    p.add_argument("--table-prefix", help="prefix of the table names (default qtask_)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True
    db_sub.add_parser("install", help="create or migrate the task table; never drops data")

    sub.add_parser("stats", help="task counts of the namespace, as JSON")

    get = sub.add_parser("get", help="one task, as JSON")
    get.add_argument("id", type=int, help="task id")

    worker = sub.add_parser("worker", help="run the handlers registered on a client")
    worker.add_argument("target", metavar="module:client", help="e.g. myapp.tasks:client")
    worker.add_argument("-c", "--concurrency", type=int, default=1, help="handlers at once (default 1)")
    worker.add_argument(
        "--time-limit", type=float, default=None, help="seconds one attempt may run (default: no limit)"
    )
    worker.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.db,
        args.queue,
        namespace=args.namespace,
        table_prefix=args.table_prefix,
        sweeper=False,
    )


def _load(target: str) -> Client:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"qtask: error: worker target must be module:client, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Client) and callable(obj):
        obj = obj()
    if not isinstance(obj, Client):
        raise SystemExit(f"qtask: error: {target} is not a qtask.Client")
    return obj


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "worker":
            logging.basicConfig(
                level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            for flag, var in (("db", "QTASK_DB_URL"), ("queue", "QTASK_QUEUE_URL"), ("namespace", "QTASK_NAMESPACE")):
                if getattr(args, flag):
                    os.environ[var] = getattr(args, flag)
            client = _load(args.target)
            try:
                report = client.run_worker(concurrency=args.concurrency, time_limit=args.time_limit)
            finally:
                client.close()
            print(
                f"qtask worker stopped: {report.finished} finished, {report.failed} failed, "
                f"{report.skipped} skipped, {report.snoozed} snoozed, {report.cancelled} cancelled",
                file=sys.stderr,
            )
            return 0
        with _client(args) as client:
            if args.command == "db":
                client.install()
                print(f"installed {client.table_prefix}task in {redact(client.db)}")
            elif args.command == "stats":
                _print(client.stats())
            elif args.command == "get":
                _print(client.get(args.id))
        return 0
    except Error as e:
        print(f"qtask: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
