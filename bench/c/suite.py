"""The C worker as a driver of bench/run.py: runs worker_bench (built by bench/run.sh)
once per concurrency of the run, on the run's PostgreSQL and queue, and prints its
rows as the other drivers do: the drains (and their CPU per task), the idle RSS of
the first run and the highest busy RSS. Each run's tables are dropped after it.

    python bench/c/suite.py --params JSON
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Dict, List

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.environ.get("QTASK_BENCH_C", os.path.join(HERE, "..", ".cache", "c-worker-bench"))


def drop_tables(pg: str, prefix: str) -> None:
    with psycopg.connect(pg, autocommit=True) as conn:
        for table in ("task", "queue", "schedule"):
            conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}"')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    p: Dict[str, Any] = json.loads(ap.parse_args().params)
    idle: List[float] = []
    busy: List[float] = []
    for concurrency in p["concurrency"]:
        prefix = f"{p['prefix']}c{concurrency}_"
        command = [BINARY, p["db"], p["queue"], prefix, str(p["n_drain"]), str(concurrency)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=p["timeout"])
        finally:
            drop_tables(p["pg"], prefix)
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            sys.exit(f"worker_bench at concurrency {concurrency} exited with {done.returncode}")
        for line in done.stdout.splitlines():
            row = json.loads(line)
            if row["row"].startswith("drain_"):
                print(line, flush=True)
            elif row["row"] == "rss_idle":
                idle.append(row["value"])
            elif row["row"] == "rss_busy":
                busy.append(row["value"])
    if idle:
        print(json.dumps({"row": "rss_idle", "value": idle[0]}), flush=True)
    if busy:
        print(json.dumps({"row": "rss_busy", "value": max(busy)}), flush=True)


if __name__ == "__main__":
    main()
