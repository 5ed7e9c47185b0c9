"""A Python worker process of the chaos soak (qtask-core/examples/soak.rs).

The soak starts it with the venv's python (SOAK_PYTHON) and the same environment as
its Rust workers: SOAK_DB, SOAK_QUEUE, SOAK_TABLE_PREFIX, SOAK_REDIS_PREFIX and
SOAK_LEDGER. Each run appends `task_id attempt pid ms 1` to the ledger (fsync) before
the handler returns; the trailing 1 marks a Python run (the Rust workers write 0).
It runs until killed.
"""

from __future__ import annotations

import os
import random
import time

import qtask

LEDGER = os.environ["SOAK_LEDGER"]


def open_client() -> qtask.Client:
    # The servers may be down (a fault): try again until they answer.
    while True:
        try:
            return qtask.Client(
                db=os.environ["SOAK_DB"],
                queue=os.environ["SOAK_QUEUE"],
                table_prefix=os.environ["SOAK_TABLE_PREFIX"],
                redis_prefix=os.environ["SOAK_REDIS_PREFIX"],
                sweeper=False,
                max_connections=4,
                connect_timeout=2,
            )
        except qtask.Error:
            time.sleep(0.2)


client = open_client()


@client.task("SOAK")
def run(message: qtask.Message) -> None:
    time.sleep(random.uniform(0, 0.06))
    line = f"{message['task_id']} {message['attempt']} {os.getpid()} {time.time_ns() // 1_000_000} 1\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fdatasync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    while True:
        # A worker whose run ended on an error (a server gone) starts again.
        try:
            client.run_worker(concurrency=4, handle_signals=False)
        except qtask.Error:
            time.sleep(0.2)
