"""A worker application for the subprocess tests: `qtask worker worker_app:client`.

It reads its database and queue from QTASK_DB_URL / QTASK_QUEUE_URL (set by the CLI's
--db / --queue or by the test), its table prefix from QTASK_TEST_TABLE_PREFIX, and
leaves a mark file in QTASK_TEST_MARKS for every start and end of a handler.
"""

from __future__ import annotations

import os
import pathlib
import time

import qtask

client = qtask.Client(
    table_prefix=os.environ["QTASK_TEST_TABLE_PREFIX"],
    redis_prefix=os.environ.get("QTASK_TEST_REDIS_PREFIX", "qtask"),
    sweep_interval=0.2,
)
MARKS = pathlib.Path(os.environ["QTASK_TEST_MARKS"])


def mark(kind: str, message: qtask.Message) -> None:
    (MARKS / f"{kind}-{message['task_id']}-{message['attempt']}-{os.getpid()}").touch()


@client.task("KILL")
def work(message: qtask.Message) -> None:
    mark("start", message)
    if message.get("hang_first") and message["attempt"] == 1:
        time.sleep(3600)  # killed here
    time.sleep(float(message.get("sleep", 0)))
    mark("done", message)


@client.task("KINDS", name="app.echo")
def echo(message: qtask.Message, text: str) -> str:
    mark("echo", message)
    return text
