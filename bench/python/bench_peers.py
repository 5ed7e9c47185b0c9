"""qtask's Python package next to Python peers, same run, same servers.

Run it through run.sh (it builds the release wheel and installs the peers):

    bash bench/python/run.sh [--n 2000] [--only SYSTEM,...] [--concurrency 1,4]

For every system: n jobs enqueued one by one (timed: the enqueue rate), then
drained to completion by a worker with concurrency 1 (timed); the same again
with concurrency 4. The handler does nothing. Each system runs in a child
process of its own (a fresh interpreter; a hang is cut off after --timeout s).
A program, not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
QUEUE = "bench"

# name -> (label, what it keeps, comparable peers)
SYSTEMS: Dict[str, str] = {
    "floor-psycopg": "psycopg INSERT, autocommit (floor, PG)",
    "floor-redis": "redis-py LPUSH (floor, Redis)",
    "qtask-pg-redis": "qtask PostgreSQL + Redis queue",
    "qtask-pg-redis-async": "qtask PostgreSQL + Redis queue, async def handler",
    "qtask-pg-db": "qtask PostgreSQL + db queue",
    "qtask-sqlite-db": "qtask SQLite file + db queue",
    "rq": "RQ (Redis only)",
    "huey": "Huey RedisHuey (Redis only)",
    "procrastinate": "procrastinate (PostgreSQL)",
}
DEFAULT_ORDER = list(SYSTEMS)
# (qtask system, peer): the pairs whose ratio is printed.
PAIRS = [
    ("qtask-pg-redis", "rq"),
    ("qtask-pg-redis", "huey"),
    ("qtask-pg-redis-async", "huey"),
    ("qtask-pg-db", "procrastinate"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def redis_db_url(base: str, db: int) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/{db}"


def run_id() -> str:
    return f"qb{os.getpid()}_{int(time.time()) % 10**8}"


# ---------------------------------------------------------------- children


def timed_fill(n: int, enqueue: Callable[[int], Any]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        enqueue(i)
    return time.perf_counter() - t0


class Countdown:
    """Counts handler calls; `done` is set at the n-th."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.target = 0
        self.done = threading.Event()

    def reset(self, target: int) -> None:
        with self.lock:
            self.count, self.target = 0, target
            self.done.clear()

    def hit(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


def child_floor_psycopg(args: argparse.Namespace) -> Dict[str, Any]:
    import psycopg

    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_floor (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        fills = [
            timed_fill(
                args.n,
                lambda i: conn.execute("INSERT INTO bench_floor (payload) VALUES (%s)", (json.dumps({"i": i}),)),
            )
            for _ in args.concurrency
        ]
    return {
        "enqueue": args.n * len(fills) / sum(fills),
        "notes": "one autocommitted INSERT per job into a temporary table with a primary key only",
    }


def child_floor_redis(args: argparse.Namespace) -> Dict[str, Any]:
    import redis

    r = redis.Redis.from_url(args.redis_db_url)
    key = f"bench-floor-{run_id()}"
    fills = [timed_fill(args.n, lambda i: r.lpush(key, json.dumps({"i": i}))) for _ in args.concurrency]
    r.delete(key)
    return {"enqueue": args.n * len(fills) / sum(fills), "notes": "one LPUSH per job"}


def child_qtask(args: argparse.Namespace, db: str, queue: str, use_async: bool = False) -> Dict[str, Any]:
    import qtask

    rid = run_id()
    tmpdir = None
    if db == "sqlite":
        tmpdir = tempfile.mkdtemp(prefix="qtask-bench-py-")
        db = f"sqlite://{tmpdir}/bench.db"
    prefix = f"{rid}_"
    client = qtask.Client(db=db, queue=queue, table_prefix=prefix, redis_prefix=f"qtask-bench-{rid}")
    countdown = Countdown()
    out: Dict[str, Any] = {"fills": [], "notes": f"table {prefix}task, dropped after"}
    try:
        client.install()

        if use_async:

            @client.task(QUEUE)
            async def noop_async(message: Any) -> None:
                countdown.hit()

        else:

            @client.task(QUEUE)
            def noop(message: Any) -> None:
                countdown.hit()

        for c in args.concurrency:
            secs = timed_fill(args.n, lambda i: client.create("noop", {"i": i}, queue=QUEUE))
            out["fills"].append(secs)
            countdown.reset(args.n)
            stop = countdown.done  # the n-th handler call stops the worker
            t0 = time.perf_counter()
            report = client.run_worker(concurrency=c, stop=stop, poll_wait=0.05, handle_signals=False)
            secs = time.perf_counter() - t0
            if report.finished != args.n:
                raise RuntimeError(f"c={c}: finished {report['finished']} of {args.n}: {report}")
            out[f"drain{c}"] = args.n / secs
    finally:
        client.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP TABLE IF EXISTS "{prefix}task"')
    out["enqueue"] = args.n * len(out["fills"]) / sum(out["fills"])
    return out


def child_rq(args: argparse.Namespace) -> Dict[str, Any]:
    import redis
    from rq import Queue, SimpleWorker

    import bench_jobs

    r = redis.Redis.from_url(args.redis_db_url)
    q = Queue(QUEUE, connection=r)
    out: Dict[str, Any] = {"fills": []}
    rq_bin = os.path.join(os.path.dirname(sys.executable), "rq")
    pool_cmd = [rq_bin, "worker-pool", "--burst", "--quiet", "-w", "rq.worker.SimpleWorker", "-u", args.redis_db_url]
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for c in args.concurrency:
        secs = timed_fill(args.n, lambda i: q.enqueue(bench_jobs.noop, i))
        out["fills"].append(secs)
        t0 = time.perf_counter()
        if c == 1:
            SimpleWorker([q], connection=r).work(burst=True, logging_level="WARNING")
        else:
            subprocess.run(pool_cmd + ["-n", str(c), QUEUE], check=True, cwd=HERE, env=env, timeout=args.timeout)
        secs = time.perf_counter() - t0
        done = q.finished_job_registry.count
        if len(q) != 0 or q.failed_job_registry.count != 0:
            raise RuntimeError(f"c={c}: {len(q)} left, {q.failed_job_registry.count} failed, {done} finished")
        out[f"drain{c}"] = args.n / secs
    # What a pool's start and stop cost, on an empty queue (in the c>1 figures).
    t0 = time.perf_counter()
    subprocess.run(pool_cmd + ["-n", "4", QUEUE], check=True, cwd=HERE, env=env, timeout=args.timeout)
    pool_idle = time.perf_counter() - t0
    out["enqueue"] = args.n * len(out["fills"]) / sum(out["fills"])
    out["notes"] = (
        "c=1: SimpleWorker(burst) in-process; c=4: `rq worker-pool -n 4 --burst -w SimpleWorker` "
        f"subprocess, timed from spawn to exit (start+stop of an idle pool: {pool_idle:.2f} s)"
    )
    return out


def child_huey(args: argparse.Namespace) -> Dict[str, Any]:
    import logging

    from huey import RedisHuey

    logging.getLogger("huey").setLevel(logging.WARNING)
    huey = RedisHuey(f"bench-{run_id()}", url=args.redis_db_url)
    countdown = Countdown()

    @huey.task()
    def noop(i: int) -> None:
        countdown.hit()

    out: Dict[str, Any] = {"fills": []}
    for c in args.concurrency:
        secs = timed_fill(args.n, lambda i: noop(i))
        out["fills"].append(secs)
        countdown.reset(args.n)
        consumer = huey.create_consumer(workers=c, worker_type="thread", periodic=False, check_worker_health=False)
        t0 = time.perf_counter()
        consumer.start()
        if not countdown.done.wait(args.timeout):
            raise RuntimeError(f"c={c}: {countdown.count} of {args.n} done")
        secs = time.perf_counter() - t0
        consumer.stop(graceful=True)  # not timed: waits out a blocking read (1 s)
        out[f"drain{c}"] = args.n / secs
    out["enqueue"] = args.n * len(out["fills"]) / sum(out["fills"])
    out["notes"] = "consumer threads in-process; timed until the n-th handler call"
    return out


def child_procrastinate(args: argparse.Namespace) -> Dict[str, Any]:
    import logging

    import procrastinate
    import psycopg

    # ERROR: its warning that the App lives in __main__ is noise here.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    schema = run_id()
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in args.pg else "?"
    conninfo = f"{args.pg}{sep}options=-csearch_path%3D{schema}"
    out: Dict[str, Any] = {"fills": []}
    try:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @app.task(queue=QUEUE, name="noop")
        async def noop(i: int) -> None:
            return None

        with app.open():
            app.schema_manager.apply_schema()
        for c in args.concurrency:
            with app.open():
                secs = timed_fill(args.n, lambda i: noop.defer(i=i))
            out["fills"].append(secs)
            t0 = time.perf_counter()
            app.run_worker(queues=[QUEUE], wait=False, concurrency=c, install_signal_handlers=False)
            secs = time.perf_counter() - t0
            with psycopg.connect(conninfo, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FROM procrastinate_jobs"
                ).fetchone()
                conn.execute("DELETE FROM procrastinate_jobs")
            assert row is not None
            if row[0] != args.n or row[1] != args.n:
                raise RuntimeError(f"c={c}: {row[0]} succeeded of {row[1]} jobs, expected {args.n}")
            out[f"drain{c}"] = args.n / secs
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    out["enqueue"] = args.n * len(out["fills"]) / sum(out["fills"])
    out["notes"] = (
        "`async def` task; App.run_worker(wait=False, concurrency=c) in-process, timed until it returns; "
        f"own schema {schema}, dropped after"
    )
    return out


def child(args: argparse.Namespace) -> Dict[str, Any]:
    name = args.child
    if name == "floor-psycopg":
        return child_floor_psycopg(args)
    if name == "floor-redis":
        return child_floor_redis(args)
    if name == "qtask-pg-redis":
        return child_qtask(args, args.pg, args.redis_db_url)
    if name == "qtask-pg-redis-async":
        return child_qtask(args, args.pg, args.redis_db_url, use_async=True)
    if name == "qtask-pg-db":
        return child_qtask(args, args.pg, "db")
    if name == "qtask-sqlite-db":
        return child_qtask(args, "sqlite", "db")
    if name == "rq":
        return child_rq(args)
    if name == "huey":
        return child_huey(args)
    if name == "procrastinate":
        return child_procrastinate(args)
    raise SystemExit(f"unknown system {name}")


# ---------------------------------------------------------------- parent


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=5):
            return True
    except OSError:
        return False


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def fmt(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:,.0f}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="jobs per fill (default 2000)")
    p.add_argument("--only", default="", help="comma-separated systems: " + ",".join(SYSTEMS))
    p.add_argument("--concurrency", default="1,4", help="worker concurrencies, one fill each (default 1,4)")
    p.add_argument("--pg", default=os.environ.get("QTASK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test"))
    p.add_argument("--redis", default=os.environ.get("QTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/"))
    p.add_argument("--redis-db", type=int, default=9, help="Redis DB number, FLUSHDB'd before each system (default 9)")
    p.add_argument("--timeout", type=float, default=120, help="seconds one system may take (default 120)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.redis_db_url = redis_db_url(args.redis, args.redis_db)

    if args.child:
        print(json.dumps(child(args)))
        return 0

    order = [s.strip() for s in args.only.split(",") if s.strip()] or DEFAULT_ORDER
    for s in order:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    started = time.time()
    print(f"# qtask Python peer benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}")
    print(
        f"# host {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {loadavg()} at start"
    )
    print(
        "# versions: "
        + ", ".join(f"{d} {version(d)}" for d in ["qtask", "rq", "huey", "procrastinate", "redis", "psycopg"])
    )
    print(f"# n = {args.n} per fill, concurrency {args.concurrency}, PG {args.pg}, Redis {args.redis_db_url}")
    pg_ok, redis_ok = reachable(args.pg, 5432), reachable(args.redis_db_url, 6379)
    results: Dict[str, Dict[str, Any]] = {}
    skipped: Dict[str, str] = {}
    for s in order:
        needs_pg = s in ("floor-psycopg", "qtask-pg-redis", "qtask-pg-redis-async", "qtask-pg-db", "procrastinate")
        needs_redis = s in ("floor-redis", "qtask-pg-redis", "qtask-pg-redis-async", "rq", "huey")
        if (needs_pg and not pg_ok) or (needs_redis and not redis_ok):
            skipped[s] = "server unreachable (bash scripts/services.sh starts them)"
            print(f"!!! SKIPPED {s}: {skipped[s]}", flush=True)
            continue
        if needs_redis:
            flush_redis(args.redis_db_url)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", s]
        cmd += ["--n", str(args.n), "--concurrency", ",".join(map(str, args.concurrency))]
        cmd += ["--pg", args.pg, "--redis", args.redis, "--redis-db", str(args.redis_db), "--timeout", str(args.timeout)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=HERE, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            skipped[s] = f"did not finish within {args.timeout:.0f} s"
        else:
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                skipped[s] = f"exit {proc.returncode} (its error is above)"
            else:
                results[s] = json.loads(lines[-1])
        finally:
            if needs_redis:
                flush_redis(args.redis_db_url)
        took = time.perf_counter() - t0
        if s in skipped:
            print(f"!!! SKIPPED {s}: {skipped[s]}", flush=True)
        else:
            r = results[s]
            print(
                f"{s:16} {took:5.1f} s  enqueue {fmt(r.get('enqueue'))}/s  "
                + "  ".join(f"drain c={c} {fmt(r.get(f'drain{c}'))}/s" for c in args.concurrency),
                flush=True,
            )

    md = args.markdown
    cols = ["enqueue"] + [f"drain{c}" for c in args.concurrency]
    heads = ["enqueue, 1 by 1"] + [f"drain, c={c}" for c in args.concurrency]
    print()
    print(f"Jobs per second (n = {args.n} per fill; higher is better). Load average at end: {loadavg()}")
    print()
    if md:
        print("| system | " + " | ".join(heads) + " |")
        print("|---|" + "---:|" * len(heads))
    else:
        print(f"{'system':42} " + " ".join(f"{h:>16}" for h in heads))
    for s in order:
        r = results.get(s, {})
        cells = [fmt(r.get(k)) if s in results else "skipped" for k in cols]
        if md:
            print(f"| {SYSTEMS[s]} | " + " | ".join(cells) + " |")
        else:
            print(f"{SYSTEMS[s]:42} " + " ".join(f"{c:>16}" for c in cells))
    print()
    print("Ratios qtask / peer (above 1: qtask is faster)")
    print()
    if md:
        print("| pair | " + " | ".join(heads) + " |")
        print("|---|" + "---:|" * len(heads))
    for a, b in PAIRS:
        if a not in order or b not in order:
            continue
        ra, rb = results.get(a, {}), results.get(b, {})
        cells = [ratio(ra.get(k), rb.get(k)) for k in cols]
        label = f"{a} / {b}"
        if md:
            print(f"| {label} | " + " | ".join(cells) + " |")
        else:
            print(f"{label:42} " + " ".join(f"{c:>16}" for c in cells))
    print()
    for s in order:
        if s in results and results[s].get("notes"):
            print(f"- {s}: {results[s]['notes']}")
        elif s in skipped:
            print(f"- {s}: SKIPPED, {skipped[s]}")
    print(f"\nTotal {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
