"""One benchmark for everything: run every system's driver, collect its rows, write
bench/RESULTS.md, bench/results.json and bench/results.png.

Run it through bench/run.sh, which installs the peers and builds the drivers:

    bash bench/run.sh [--quick] [--only SYSTEM,...] [--timeout S]

Each system runs in a driver process of its own (qtask-bench --suite, bench/go,
bench/python/suite.py, bench/node/suite.js), which prints one JSON line per row. A
driver that fails, or passes its time limit, is reported as skipped with its reason;
the rows it had printed are kept, and the others still run. The Redis peers run on a
private redis-server (port 6391 by default) that this program starts and stops; every
system gets a Redis database of its own there, flushed before and after it. The
PostgreSQL and MariaDB systems use tables and schemas named after this run, dropped
after each system.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG = os.environ.get("QTASK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("QTASK_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
PY = os.path.join(HERE, ".venv", "bin", "python")


@dataclass
class System:
    name: str
    label: str
    driver: str  # rust, go, python, node, c
    suite: str  # the driver's system name
    db: str = ""  # sqlite, pg, mysql, or ""
    redis_queue: bool = False
    peer_of: str = ""  # the qtask system its ratio is taken against
    lives: str = ""
    crash: str = ""
    install_key: str = ""  # the key of run.sh's install-status file
    extra: Dict[str, Any] = field(default_factory=dict)  # more params for its driver


QTASK_LIVES = "a row in {db} (the truth){redis}"
QTASK_CRASH = (
    "nothing committed: a worker's task comes due again when its lease ends; "
    "{extra}"
)

SYSTEMS: List[System] = [
    System("qtask-rs-sqlite-db", "qtask Rust, SQLite + db queue", "rust", "qtask", "sqlite",
           lives="a row in a SQLite file (WAL; creates fsync, worker claims and finishes do not)",
           crash=QTASK_CRASH.format(extra="the table is the queue")),
    System("qtask-rs-pg-db", "qtask Rust, PostgreSQL + db queue", "rust", "qtask", "pg",
           lives="a PostgreSQL row", crash=QTASK_CRASH.format(extra="the table is the queue")),
    System("qtask-rs-pg-redis", "qtask Rust, PostgreSQL + Redis queue", "rust", "qtask", "pg", True,
           lives="a PostgreSQL row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("qtask-rs-mysql-db", "qtask Rust, MariaDB + db queue", "rust", "qtask", "mysql",
           lives="a MariaDB (InnoDB) row", crash=QTASK_CRASH.format(extra="the table is the queue")),
    System("qtask-rs-mysql-redis", "qtask Rust, MariaDB + Redis queue", "rust", "qtask", "mysql", True,
           lives="a MariaDB row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("qtask-go-pg-db", "qtask Go, PostgreSQL + db queue", "go", "qtask-go", "pg", install_key="go",
           lives="a PostgreSQL row", crash=QTASK_CRASH.format(extra="the table is the queue")),
    System("qtask-go-pg-redis", "qtask Go, PostgreSQL + Redis queue", "go", "qtask-go", "pg", True, install_key="go",
           lives="a PostgreSQL row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("qtask-py-pg-db", "qtask Python, PostgreSQL + db queue", "python", "qtask-py", "pg",
           lives="a PostgreSQL row", crash=QTASK_CRASH.format(extra="the table is the queue")),
    System("qtask-py-pg-redis", "qtask Python, PostgreSQL + Redis queue", "python", "qtask-py", "pg", True,
           lives="a PostgreSQL row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("qtask-py-async-pg-redis", "qtask Python `async def`, PostgreSQL + Redis queue", "python", "qtask-py", "pg",
           True, extra={"handler": "async"},
           lives="a PostgreSQL row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("qtask-c-pg-redis", "qtask C worker (callback), PostgreSQL + Redis queue", "c", "c-worker", "pg", True,
           install_key="c", lives="a PostgreSQL row (truth) + an entry in Redis (transport)",
           crash=QTASK_CRASH.format(extra="Redis losing its data delays tasks by a lease, loses none")),
    System("river", "River (Go, PostgreSQL)", "go", "river", "pg", peer_of="qtask-go-pg-db", install_key="go",
           lives="a PostgreSQL row (river_job)",
           crash="nothing committed: a running job is rescued after RescueStuckJobsAfter (1 h by default)"),
    System("asynq", "asynq (Go, Redis)", "go", "asynq", "", True, peer_of="qtask-go-pg-redis", install_key="go",
           lives="Redis only (a hash + a list entry)",
           crash="a worker crash: the job is recovered from the active list after its lease; "
                 "a Redis crash without persistence: every job"),
    System("rq", "RQ (Python, Redis)", "python", "rq", "", True, peer_of="qtask-py-pg-redis", install_key="rq",
           lives="Redis only (a job hash + a list entry)",
           crash="a worker crash: the job goes to the failed registry (AbandonedJobError), not retried by default; "
                 "a Redis crash without persistence: every job"),
    System("huey", "Huey (Python, Redis)", "python", "huey", "", True, peer_of="qtask-py-pg-redis", install_key="huey",
           lives="Redis only (a pickled message in a list)",
           crash="a worker crash: the running task (no ack: it left Redis at BRPOP); "
                 "a Redis crash without persistence: every task"),
    System("procrastinate", "procrastinate (Python, PostgreSQL)", "python", "procrastinate", "pg",
           peer_of="qtask-py-pg-db", install_key="procrastinate",
           lives="a PostgreSQL row (procrastinate_jobs)",
           crash="nothing committed: a running job stays 'doing' until stalled jobs are retried "
                 "(a query the application calls, not automatic)"),
    System("pgqueuer", "pgqueuer (Python, PostgreSQL)", "python", "pgqueuer", "pg",
           peer_of="qtask-py-pg-db", install_key="pgqueuer",
           lives="a PostgreSQL row (pgqueuer); deleted when done, logged to pgqueuer_log",
           crash="nothing committed: a picked job is retried once its heartbeat is older than heartbeat_timeout (30 s)"),
    System("celery", "Celery (Python, Redis broker, acks_late)", "python", "celery", "", True,
           peer_of="qtask-py-pg-redis", install_key="celery",
           lives="Redis only (a message in a list; unacked ones in a hash)",
           crash="a worker crash: redelivered after the visibility timeout (1 h) thanks to acks_late; "
                 "a Redis crash without persistence: every task"),
    System("bullmq", "BullMQ (Node.js, Redis)", "node", "bullmq", "", True, peer_of="qtask-rs-pg-redis",
           install_key="bullmq",
           lives="Redis only (a job hash + a list entry)",
           crash="a worker crash: the job is moved back by the stalled-job check (30 s); "
                 "a Redis crash without persistence: every job"),
    System("ceiling-sqlite", "bare SQL ceiling, SQLite", "rust", "ceiling-sql", "sqlite", peer_of="qtask-rs-sqlite-db",
           lives="(a floor, not a queue)", crash="—"),
    System("ceiling-pg", "bare SQL ceiling, PostgreSQL", "rust", "ceiling-sql", "pg", peer_of="qtask-rs-pg-db",
           lives="(a floor, not a queue)", crash="—"),
    System("ceiling-mysql", "bare SQL ceiling, MariaDB", "rust", "ceiling-sql", "mysql", peer_of="qtask-rs-mysql-db",
           lives="(a floor, not a queue)", crash="—"),
    System("ceiling-redis", "Redis ceiling, pipelined LPUSH + BRPOP", "rust", "ceiling-redis", "", True,
           peer_of="qtask-rs-pg-redis", lives="(a floor, not a queue)", crash="—"),
    System("sweeper-sqlite", "qtask sweeper, SQLite", "rust", "sweeper", "sqlite", True),
    System("sweeper-pg", "qtask sweeper, PostgreSQL", "rust", "sweeper", "pg", True),
    System("sweeper-mysql", "qtask sweeper, MariaDB", "rust", "sweeper", "mysql", True),
]
BY_NAME = {s.name: s for s in SYSTEMS}

# (key, heading, unit); the ratio of each is qtask / peer.
ROWS: List[Tuple[str, str, str]] = [
    ("enqueue_1", "enqueue 1 by 1, 1 producer", "tasks/s"),
    ("enqueue_8", "enqueue 1 by 1, 8 producers", "tasks/s"),
    ("enqueue_batch", "enqueue in batches", "tasks/s"),
    ("drain_c1", "drain, concurrency 1", "tasks/s"),
    ("drain_c8", "drain, concurrency 8", "tasks/s"),
    ("drain_c32", "drain, concurrency 32", "tasks/s"),
    ("latency_p50", "latency p50", "ms"),
    ("latency_p99", "latency p99", "ms"),
    ("delayed_p50", "delayed lateness p50", "ms"),
    ("delayed_p99", "delayed lateness p99", "ms"),
    ("rss_idle", "RSS idle worker", "MB"),
    ("rss_busy", "RSS busy worker (peak)", "MB"),
]
SWEEP_ROWS = [
    ("sweep_rate", "dispatch rate", "tasks/s"),
    ("sweep_pass_ms", "pass that dispatches (p50)", "ms"),
    ("sweep_idle_ms", "pass with nothing due (p50)", "ms"),
]


def sizes(quick: bool) -> Dict[str, Any]:
    if quick:
        return dict(n_enqueue=1000, n_drain=2000, concurrency=[1, 8, 32], batch=500, rate=1000,
                    latency_secs=3, delayed=200, sweep_rows=100_000, sweep_due=1_000, timeout=240)
    return dict(n_enqueue=5000, n_drain=20_000, concurrency=[1, 8, 32], batch=500, rate=1000,
                latency_secs=10, delayed=1000, sweep_rows=1_000_000, sweep_due=10_000, timeout=900)


# ---------------------------------------------------------------- servers


class PrivateRedis:
    """A redis-server of this run's own, without persistence, so that flushing is safe."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--databases", "32"],
            stdout=subprocess.DEVNULL,
        )
        r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                r.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self, db: int) -> None:
        import redis

        redis.Redis(port=self.port, db=db).flushdb()

    def version(self) -> str:
        import redis

        return redis.Redis(port=self.port).info()["redis_version"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def drop_leftovers(prefix: str, schema: str) -> None:
    """Drops what a killed driver could not: its tables and schema."""
    import psycopg

    try:
        with psycopg.connect(PG, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)).fetchall()
            for (t,) in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{t}"')
    except psycopg.Error as err:
        print(f"bench: PostgreSQL clean-up: {err}", file=sys.stderr)
    if shutil.which("mysql"):
        from urllib.parse import urlsplit

        u = urlsplit(MYSQL)
        base = ["mysql", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306), "-u", u.username or "root"]
        if u.password:
            base.append(f"-p{u.password}")
        db = u.path.lstrip("/") or "test"
        out = subprocess.run(base + ["-N", "-e", f"SHOW TABLES FROM `{db}` LIKE '{prefix}%'"],
                             capture_output=True, text=True)
        for t in out.stdout.split():
            subprocess.run(base + ["-e", f"DROP TABLE IF EXISTS `{db}`.`{t}`"], capture_output=True)


def server_versions() -> Dict[str, str]:
    out = {}
    try:
        import psycopg

        with psycopg.connect(PG, connect_timeout=5) as conn:
            out["PostgreSQL"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except Exception as err:  # noqa: BLE001 - only for the report
        out["PostgreSQL"] = f"unreachable ({err})"
    if shutil.which("mysql"):
        from urllib.parse import urlsplit

        u = urlsplit(MYSQL)
        r = subprocess.run(["mysql", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306), "-u",
                            u.username or "root", "-N", "-e", "SELECT VERSION()"], capture_output=True, text=True)
        out["MariaDB"] = r.stdout.strip() or f"unreachable ({r.stderr.strip()})"
    return out


# ---------------------------------------------------------------- drivers


def command(s: System, params: Dict[str, Any]) -> List[str]:
    blob = json.dumps(params)
    if s.driver == "rust":
        return [os.environ.get("QTASK_BENCH_BIN", os.path.join(ROOT, "target", "release", "qtask-bench")),
                "--suite", s.suite, "--params", blob]
    if s.driver == "go":
        return [os.environ.get("QTASK_BENCH_GO", os.path.join(HERE, ".cache", "go-bench")),
                "--suite", s.suite, "--params", blob]
    if s.driver == "python":
        return [PY, os.path.join(HERE, "python", "suite.py"), s.suite, "--params", blob]
    if s.driver == "c":
        return [PY, os.path.join(HERE, "c", "suite.py"), "--params", blob]
    return ["node", os.path.join(HERE, "node", "suite.js"), s.suite, "--params", blob]


@dataclass
class Outcome:
    values: Dict[str, float] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    skipped: str = ""
    seconds: float = 0.0


def expected_rows(s: System) -> int:
    if s.suite == "sweeper":
        return 3
    if s.suite.startswith("ceiling"):
        return 3
    if s.suite == "c-worker":
        return 5  # the drains, idle and busy RSS
    return len(ROWS)


def run_system(s: System, params: Dict[str, Any], timeout: float, log, bar) -> Outcome:
    out = Outcome()
    t0 = time.monotonic()
    cwd = os.path.join(HERE, "python") if s.driver == "python" else ROOT
    try:
        proc = subprocess.Popen(command(s, params), cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)
    except OSError as err:
        out.skipped = f"cannot start its driver: {err}"
        return out
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = t0 + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.skipped = f"did not finish within {timeout:.0f} s (killed; rows measured before are kept)"
            break
        if line is None:
            code = proc.wait()
            if code != 0:
                out.skipped = f"driver exited {code}: {last_error(log)}"
            break
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            log.write(line)
            continue
        if "row" in msg:
            out.values[msg["row"]] = float(msg["value"])
            bar.update(1)
            bar.set_postfix_str(f"{msg['row']} {msg['value']:,.1f}")
        elif "note" in msg:
            out.notes.append(msg["note"])
    out.seconds = time.monotonic() - t0
    return out


def last_error(log) -> str:
    log.flush()
    try:
        with open(log.name) as f:
            text = [line.strip() for line in f if line.strip()]
    except OSError:
        return "?"
    for line in reversed(text):
        if "Warning" not in line and "warn" not in line.lower():
            return line[-300:]
    return text[-1][-300:] if text else "?"


# ---------------------------------------------------------------- report


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(v: Optional[float], unit: str) -> str:
    if v is None:
        return "—"
    if unit == "tasks/s":
        return f"{v:,.0f}"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def tool_versions() -> Dict[str, str]:
    from importlib import metadata

    out: Dict[str, str] = {"Python": platform.python_version()}
    for dist in ["qtask", "rq", "huey", "procrastinate", "pgqueuer", "celery", "redis", "psycopg"]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        out["Go"] = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
        with open(os.path.join(HERE, "go", "go.mod")) as f:
            for line in f:
                parts = line.split()
                for mod, short in [("github.com/riverqueue/river", "River"), ("github.com/hibiken/asynq", "asynq")]:
                    if len(parts) >= 2 and parts[0] == mod:
                        out[short] = parts[1]
    except OSError:
        pass
    try:
        out["Node.js"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        with open(os.path.join(HERE, "node", "node_modules", "bullmq", "package.json")) as f:
            out["BullMQ"] = json.load(f)["version"]
    except OSError:
        out["BullMQ"] = "not installed"
    return out


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}"


def write_report(path: str, results: Dict[str, Outcome], order: List[str], meta: Dict[str, Any]) -> None:
    L: List[str] = []
    L.append("# Benchmark results")
    L.append("")
    L.append(f"Written by `{meta['command']}` on {meta['date']} (took {meta['took']}).")
    L.append("")
    L.append(f"- Machine: {meta['machine']}")
    L.append(f"- Load average (1, 5, 15 min): {meta['load_start']} at the start, {meta['load_end']} at the end")
    L.append(f"- Sizes: {meta['sizes']}")
    L.append("- Servers: " + ", ".join(f"{k} {v}" for k, v in meta["servers"].items()))
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    if meta.get("remark"):
        L.append("")
        L.append(meta["remark"])
    L.append("")
    L.append("bench/README.md says what each row measures. Higher is better for tasks/s; lower for ms and MB.")
    L.append("")

    main_sys = [n for n in order if BY_NAME[n].suite not in ("sweeper",)]
    L.append("## Every system, every row")
    L.append("")
    L.append("| system | " + " | ".join(f"{h} ({u})" for _, h, u in ROWS) + " |")
    L.append("|---|" + "---:|" * len(ROWS))
    for n in main_sys:
        r = results.get(n)
        if r is None:
            continue
        cells = [fmt(r.values.get(k), u) for k, _, u in ROWS]
        L.append(f"| {BY_NAME[n].label} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## Ratios qtask / peer on the same row")
    L.append("")
    L.append("Above 1 on a tasks/s row: qtask is faster; below 1 on a ms or MB row: qtask is lower.")
    L.append("")
    L.append("| qtask system / peer | " + " | ".join(h for _, h, _ in ROWS) + " |")
    L.append("|---|" + "---:|" * len(ROWS))
    for n in main_sys:
        s = BY_NAME[n]
        if not s.peer_of or n not in results or s.peer_of not in results:
            continue
        a, b = results[s.peer_of].values, results[n].values
        cells = []
        for k, _, _ in ROWS:
            x, y = a.get(k), b.get(k)
            cells.append("—" if x is None or y is None or y == 0 else ratio(x / y))
        L.append(f"| {s.peer_of} / {n} | " + " | ".join(cells) + " |")
    L.append("")
    L.append(f"## Sweeper: {meta['sizes_sweep']}")
    L.append("")
    L.append("| database | " + " | ".join(f"{h} ({u})" for _, h, u in SWEEP_ROWS) + " |")
    L.append("|---|" + "---:|" * len(SWEEP_ROWS))
    for n in order:
        if BY_NAME[n].suite == "sweeper" and n in results:
            L.append(f"| {BY_NAME[n].label} | "
                     + " | ".join(fmt(results[n].values.get(k), u) for k, _, u in SWEEP_ROWS) + " |")
    L.append("")
    L.append("## Where a task lives and what a crash loses")
    L.append("")
    L.append("| system | where a task lives | what a crash loses |")
    L.append("|---|---|---|")
    for n in order:
        s = BY_NAME[n]
        if s.lives and not s.suite.startswith("ceiling"):
            L.append(f"| {s.label} | {s.lives} | {s.crash} |")
    L.append("")
    L.append(f"The Redis of this run (port {meta['redis_port']}) is private and keeps nothing on disk, as the Redis "
             "of scripts/services.sh: there a Redis restart loses every Redis-only job; qtask's rows stay.")
    L.append("")
    skipped = [(n, results[n].skipped) for n in order if n in results and results[n].skipped]
    L.append("## Skipped")
    L.append("")
    if skipped:
        for n, why in skipped:
            L.append(f"- **{n}**: {why}")
    else:
        L.append("Nothing: every system ran every row.")
    L.append("")
    L.append("## Notes of each system")
    L.append("")
    for n in order:
        if n in results:
            notes = "; ".join(dict.fromkeys(results[n].notes)) or "—"
            L.append(f"- {n} ({results[n].seconds:.0f} s): {notes}")
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def chart(path: str, results: Dict[str, Outcome], order: List[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in order if n in results and any(f"drain_c{c}" in results[n].values for c in (1, 8, 32))]
    if not names:
        return
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names) + 3), 6))
    width = 0.27
    for j, c in enumerate((1, 8, 32)):
        xs = [i + (j - 1) * width for i in range(len(names))]
        ys = [results[n].values.get(f"drain_c{c}", 0) for n in names]
        ax.bar(xs, ys, width, label=f"concurrency {c}")
    ax.set_yscale("log")
    ax.set_ylabel("tasks/s (log scale)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- main


def install_status() -> Dict[str, str]:
    out = {}
    path = os.environ.get("QTASK_BENCH_INSTALL_STATUS", "")
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    k, why = line.rstrip("\n").split("\t", 1)
                    out[k] = why
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few thousand tasks per row (about 15 minutes)")
    ap.add_argument("--only", default="", help="comma-separated systems: " + ",".join(BY_NAME))
    ap.add_argument("--timeout", type=float, help="seconds one system may take (default 240 quick, 900 full)")
    ap.add_argument("--redis-port", type=int, default=6391, help="port of the private redis-server (default 6391)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="the Markdown report (default bench/RESULTS.md)")
    ap.add_argument("--remark", default="", help="a paragraph to put in the report's header")
    args = ap.parse_args()
    order = [x.strip() for x in args.only.split(",") if x.strip()] or [s.name for s in SYSTEMS]
    for n in order:
        if n not in BY_NAME:
            ap.error(f"unknown system {n!r}; known: {', '.join(BY_NAME)}")
    from tqdm import tqdm

    size = sizes(args.quick)
    timeout = args.timeout or size.pop("timeout")
    size.pop("timeout", None)
    run_id = f"bq{os.getpid()}_{int(time.time()) % 100000}"
    started, load_start = time.time(), loadavg()
    redis = PrivateRedis(args.redis_port)
    redis.start()
    failed_installs = install_status()
    results: Dict[str, Outcome] = {}
    os.makedirs(os.path.join(HERE, ".cache"), exist_ok=True)
    log_path = os.path.join(HERE, ".cache", "run.log")
    print(f"bench: {len(order)} systems, run {run_id}, drivers' stderr in {log_path}", file=sys.stderr)
    try:
        with open(log_path, "w") as log:
            overall = tqdm(order, desc="systems", unit="sys", position=0)
            for i, n in enumerate(overall):
                s = BY_NAME[n]
                overall.set_postfix_str(n)
                if s.install_key and s.install_key in failed_installs:
                    results[n] = Outcome(skipped=failed_installs[s.install_key])
                    tqdm.write(f"!!! SKIPPED {n}: {results[n].skipped}")
                    continue
                db_index = i % 30 + 1
                prefix = f"{run_id}_{i}_"
                params = dict(size, pg=PG, redis=redis.url(db_index), prefix=prefix, schema=f"{run_id}_{i}",
                              timeout=timeout)
                params["db"] = {"pg": PG, "mysql": MYSQL, "sqlite": f"sqlite://{HERE}/.cache/{prefix}.db"}.get(s.db, "")
                params["queue"] = redis.url(db_index) if s.redis_queue else "db"
                params.update(s.extra)
                if s.suite.startswith("ceiling"):
                    # Floors run at 100,000+ tasks/s: give 32 loops enough batches.
                    params["n_drain"] = size["n_drain"] * 10
                redis.flush(db_index)
                log.write(f"==== {n}\n")
                log.flush()
                with tqdm(total=expected_rows(s), desc=n, position=1, leave=False, unit="row") as bar:
                    out = run_system(s, params, timeout, log, bar)
                results[n] = out
                redis.flush(db_index)
                if s.db == "sqlite":
                    for suffix in ("", "-wal", "-shm"):
                        try:
                            os.remove(f"{HERE}/.cache/{prefix}.db{suffix}")
                        except OSError:
                            pass
                if out.skipped:
                    drop_leftovers(prefix, params["schema"])
                    tqdm.write(f"!!! SKIPPED {n}: {out.skipped}")
                else:
                    tqdm.write(f"{n}: {len(out.values)} rows in {out.seconds:.0f} s")
        versions = tool_versions()
        versions["Redis (private)"] = redis.version()
    finally:
        redis.stop()
    took = time.time() - started
    meta = dict(
        command="bash bench/run.sh" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else ""),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        took=f"{took / 60:.1f} min",
        machine=machine(),
        load_start=load_start,
        load_end=loadavg(),
        sizes=(f"{size['n_enqueue']} tasks per enqueue row, {size['n_drain']} per drain row at concurrency "
               f"{size['concurrency']}, batches of {size['batch']}, latency at {size['rate']} tasks/s for "
               f"{size['latency_secs']} s, {size['delayed']} delayed tasks; time limit {timeout:.0f} s per system"),
        sizes_sweep=f"{size['sweep_rows']:,} waiting rows of which {size['sweep_due']:,} are due",
        servers=server_versions(),
        versions=versions,
        redis_port=args.redis_port,
        remark=args.remark,
    )
    write_report(args.out, results, order, meta)
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": {n: vars(o) for n, o in results.items()}}, f, indent=1)
    chart(os.path.join(HERE, "results.png"), results, order,
          f"Drain of no-op tasks, {meta['date']}{' (--quick)' if args.quick else ''}")
    print(f"bench: wrote {args.out}, bench/results.json, bench/results.png in {took / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
