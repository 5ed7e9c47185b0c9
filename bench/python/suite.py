"""One Python system's rows for bench/run.py, as JSON lines on stdout.

    python suite.py SYSTEM --params JSON

SYSTEM: qtask-py (db and queue from the params), rq, huey, procrastinate, pgqueuer,
celery. Each is set up the way its own documentation recommends (see
bench/README.md), on a PostgreSQL schema or the Redis database of its own that
run.py names in the params, and removes what it made at the end. Lines:
`{"row": …, "value": …}` as each row is measured, `{"note": …}`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional

import psutil

import bench_jobs

HERE = os.path.dirname(os.path.abspath(__file__))


def emit(row: str, value: float) -> None:
    print(json.dumps({"row": row, "value": value}), flush=True)


def note(text: str) -> None:
    print(json.dumps({"note": text}), flush=True)


def percentile(values: List[float], p: float) -> float:
    values = sorted(values)
    return values[round((len(values) - 1) * p)] if values else float("nan")


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants, in MB."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class PeakSampler:
    """The highest RSS of a process tree, sampled every 50 ms."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.peak = 0.0
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))


class Worker:
    """A running worker: `stop()` ends it; `pid` is the process that hosts it."""

    def __init__(self, stop: Callable[[], None], pid: Optional[int] = None) -> None:
        self.stop = stop
        self.pid = pid or os.getpid()


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- systems


class System:
    """What the rows need of a task queue. `enqueue_batch` None: it has no batch call."""

    sink: Any = bench_jobs.LOCAL
    enqueue_batch: Optional[Callable[[str, List[Dict[str, Any]]], None]] = None

    def __init__(self, p: Dict[str, Any]) -> None:
        self.p = p

    def close(self) -> None:
        pass


class QtaskPy(System):
    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        import qtask

        self.prefix = p["prefix"]
        self.client = qtask.Client(
            db=p["db"],
            queue=p["queue"],
            table_prefix=self.prefix,
            redis_prefix=f"qtask-bench-{self.prefix}",
            max_connections=max(p["concurrency"]) + 8,
        )
        self.client.install()
        self.enqueue_batch = self._batch
        note(f"qtask {qtask.__version__ if hasattr(qtask, '__version__') else ''} table {self.prefix}task, threads")

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.client.create("bench", payload, queue=queue)

    def _batch(self, queue: str, payloads: List[Dict[str, Any]]) -> None:
        self.client.create_many([{"name": "bench", "input": x, "queue": queue} for x in payloads])

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.client.delay("bench", payload, queue=queue, delay=delay)

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        if queue not in self.client.handlers:
            if self.p.get("handler") == "async":

                async def record(message: Any) -> None:
                    bench_jobs.record(dict(message))

                self.client.task(queue)(record)
            else:
                self.client.task(queue)(lambda message: bench_jobs.record(dict(message)))
        stop = threading.Event()
        thread = in_thread(
            lambda: self.client.run_worker(
                concurrency, queues=[queue], stop=stop, poll_wait=0.05, handle_signals=False
            )
        )
        return Worker(lambda: (stop.set(), thread.join()))

    def close(self) -> None:
        self.client.close()
        import psycopg

        if self.p["db"].startswith("postgres"):
            with psycopg.connect(self.p["pg"], autocommit=True) as conn:
                for table in ("task", "queue", "schedule"):
                    conn.execute(f'DROP TABLE IF EXISTS "{self.prefix}{table}"')


class Rq(System):
    """RQ's `rq worker-pool -n C` (scheduler on) with its documented non-forking
    SimpleWorker: the default Worker forks a work horse per job (10-24 jobs/s here)."""

    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        import redis
        from rq import Queue

        self.url = p["redis"]
        self.r = redis.Redis.from_url(self.url)
        self.queues: Dict[str, Any] = {}
        self.Queue = Queue
        self.sink = bench_jobs.RedisSink(self.url)
        self.enqueue_batch = self._batch

    def q(self, name: str) -> Any:
        if name not in self.queues:
            self.queues[name] = self.Queue(name, connection=self.r)
        return self.queues[name]

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.q(queue).enqueue(bench_jobs.record, payload)

    def _batch(self, queue: str, payloads: List[Dict[str, Any]]) -> None:
        q = self.q(queue)
        q.enqueue_many([self.Queue.prepare_data(bench_jobs.record, (x,)) for x in payloads])

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.q(queue).enqueue_in(timedelta(seconds=delay), bench_jobs.record, payload)

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        rq_bin = os.path.join(os.path.dirname(sys.executable), "rq")
        env = dict(os.environ, PYTHONPATH=HERE, BENCH_SINK_URL=self.url)
        proc = subprocess.Popen(
            [rq_bin, "worker-pool", "-n", str(concurrency), "-q", "-w", "rq.worker.SimpleWorker", "-u", self.url, queue],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
        )

        def stop() -> None:
            proc.terminate()  # a warm shutdown: running jobs end first
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

        return Worker(stop, proc.pid)


class Huey(System):
    """Huey's documented setup for I/O-bound tasks: a consumer of C thread workers."""

    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        import logging

        from huey import RedisHuey

        logging.getLogger("huey").setLevel(logging.WARNING)
        self.huey = RedisHuey(f"bench-{p['prefix']}", url=p["redis"], results=False)
        self.record = self.huey.task()(bench_jobs.record)

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.record(payload)

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.record.schedule((payload,), delay=delay)

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        consumer = self.huey.create_consumer(
            workers=concurrency, worker_type="thread", periodic=False, check_worker_health=False
        )
        consumer.start()
        return Worker(lambda: consumer.stop(graceful=True))


class Procrastinate(System):
    """procrastinate's documented setup: an `async def` task, `run_worker_async(concurrency=C)`."""

    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        import logging

        import psycopg

        logging.getLogger("procrastinate").setLevel(logging.ERROR)
        self.schema = p["schema"]
        with psycopg.connect(p["pg"], autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        sep = "&" if "?" in p["pg"] else "?"
        self.conninfo = f"{p['pg']}{sep}options=-csearch_path%3D{self.schema}"
        self.app, self.task = self.build()
        self.app.open()
        self.app.schema_manager.apply_schema()
        self.enqueue_batch = self._batch

    def build(self) -> Any:
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self.conninfo))

        @app.task(name="record", queue="default")
        async def record(payload: Dict[str, Any]) -> None:
            bench_jobs.record(payload)

        return app, record

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.task.configure(queue=queue).defer(payload=payload)

    def _batch(self, queue: str, payloads: List[Dict[str, Any]]) -> None:
        self.task.configure(queue=queue).batch_defer(*({"payload": x} for x in payloads))

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.task.configure(queue=queue, schedule_in={"seconds": delay}).defer(payload=payload)

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        import asyncio

        app, _ = self.build()
        loop = asyncio.new_event_loop()
        holder: Dict[str, Any] = {}

        async def main() -> None:
            async with app.open_async():
                holder["task"] = asyncio.current_task()
                await app.run_worker_async(
                    queues=[queue], concurrency=concurrency, wait=True, install_signal_handlers=False
                )

        def run() -> None:
            try:
                loop.run_until_complete(main())
            except asyncio.CancelledError:
                pass

        thread = in_thread(run)

        def stop() -> None:
            while "task" not in holder:
                time.sleep(0.01)
            loop.call_soon_threadsafe(holder["task"].cancel)
            thread.join(30)

        return Worker(stop)

    def close(self) -> None:
        import psycopg

        self.app.close()
        with psycopg.connect(self.p["pg"], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class PgQueuer(System):
    """pgqueuer's documented setup: a QueueManager over psycopg, an async entrypoint;
    C jobs at once through max_concurrent_tasks (batch C/2)."""

    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        import asyncio

        import psycopg
        from pgqueuer import PsycopgDriver, Queries
        from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        self.schema = p["schema"]
        with psycopg.connect(p["pg"], autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        sep = "&" if "?" in p["pg"] else "?"
        self.conninfo = f"{p['pg']}{sep}options=-csearch_path%3D{self.schema}"

        async def install() -> None:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            await Queries(PsycopgDriver(conn)).install()
            await conn.close()

        asyncio.run(install())
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))
        self.enqueue_batch = self._batch

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.queries.enqueue(queue, json.dumps(payload).encode())

    def _batch(self, queue: str, payloads: List[Dict[str, Any]]) -> None:
        self.queries.enqueue([queue] * len(payloads), [json.dumps(x).encode() for x in payloads], [0] * len(payloads))

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.queries.enqueue(queue, json.dumps(payload).encode(), 0, timedelta(seconds=delay))

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        import asyncio

        import psycopg
        from pgqueuer import PsycopgDriver, Queries, QueueManager

        loop = asyncio.new_event_loop()
        holder: Dict[str, Any] = {}

        async def main() -> None:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            qm = QueueManager(Queries(PsycopgDriver(conn)))

            @qm.entrypoint(queue)
            async def record(job: Any) -> None:
                bench_jobs.record(json.loads(job.payload))

            holder["qm"] = qm
            # This worker's cap (its concurrency_limit is a cross-worker limit that
            # dequeued 30 jobs a minute here at 1); it must be twice the batch.
            batch = max(1, concurrency // 2)
            await qm.run(batch_size=batch, max_concurrent_tasks=max(2 * batch, concurrency))
            await conn.close()

        thread = in_thread(lambda: loop.run_until_complete(main()))

        def stop() -> None:
            while "qm" not in holder:
                time.sleep(0.01)
            loop.call_soon_threadsafe(holder["qm"].shutdown.set)
            thread.join(30)

        return Worker(stop)

    def close(self) -> None:
        import psycopg

        self.conn.close()
        with psycopg.connect(self.p["pg"], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class Celery(System):
    """Celery's documented setup for reliable delivery: Redis broker, `acks_late`,
    prefetch 1, no result backend; `celery worker -c C` (prefork pool) as its own process."""

    def __init__(self, p: Dict[str, Any]) -> None:
        super().__init__(p)
        os.environ["BENCH_CELERY_BROKER"] = p["redis"]
        import bench_celery

        self.app = bench_celery.app
        self.task = bench_celery.record
        self.url = p["redis"]
        self.sink = bench_jobs.RedisSink(self.url)

    def enqueue(self, queue: str, payload: Dict[str, Any]) -> None:
        self.task.apply_async((payload,), queue=queue)

    def enqueue_delayed(self, queue: str, payload: Dict[str, Any], delay: float) -> None:
        self.task.apply_async((payload,), queue=queue, countdown=delay)

    def start_worker(self, queue: str, concurrency: int) -> Worker:
        celery_bin = os.path.join(os.path.dirname(sys.executable), "celery")
        env = dict(os.environ, PYTHONPATH=HERE, BENCH_SINK_URL=self.url, BENCH_CELERY_BROKER=self.url)
        proc = subprocess.Popen(
            [celery_bin, "-A", "bench_celery", "worker", "-Q", queue, "-c", str(concurrency), "-l", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
        )

        def stop() -> None:
            proc.terminate()  # warm shutdown
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

        return Worker(stop, proc.pid)


SYSTEMS = {"qtask-py": QtaskPy, "rq": Rq, "huey": Huey, "procrastinate": Procrastinate, "pgqueuer": PgQueuer,
           "celery": Celery}


# ---------------------------------------------------------------- rows


def wait_for(system: System, target: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while system.sink.progress() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.sink.progress()} of {target} handled after {limit:.0f} s")
        time.sleep(0.005)


def perf_control(command: str) -> None:
    """`enable` / `disable` to the perf control fifo, as qtask-bench does (bench/README.md)."""
    path = os.environ.get("QTASK_BENCH_PERF_CTL")
    if path:
        with open(path, "w") as fifo:
            fifo.write(command + "\n")


def drain(system: System, p: Dict[str, Any], c: int) -> Dict[str, float]:
    """One drain row: the tasks first, then a worker of `c`; the rate from the first
    handler start to the N-th, and this process's CPU per task over the drain."""
    n_drain, batch = p["n_drain"], p["batch"]
    queue = f"drain{c}"
    fill = system.enqueue_batch or (lambda q, xs: [system.enqueue(q, x) for x in xs])
    for start in range(0, n_drain, batch):
        fill(queue, [{"i": i} for i in range(start, min(n_drain, start + batch))])
    system.sink.reset(n_drain)
    perf_control("enable")
    cpu = time.process_time()
    worker = system.start_worker(queue, c)
    peak = [0.0]
    done = threading.Event()

    def sample(pid: int = worker.pid) -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss_mb(pid))

    if not p.get("drain_only"):  # the sampler's CPU would count as the worker's
        in_thread(sample)
    try:
        wait_for(system, n_drain, p["timeout"])
        cpu = time.process_time() - cpu
        perf_control("disable")
    finally:
        done.set()
        worker.stop()
    return {"rate": n_drain / (system.sink.span_ms() / 1000), "cpu_us": cpu * 1e6 / n_drain, "peak": peak[0]}


def rows(system: System, p: Dict[str, Any]) -> None:
    n_enq, n_drain, batch = p["n_enqueue"], p["n_drain"], p["batch"]
    if p.get("drain_only"):
        # Workers back to back (bench/README.md): the drain rows and their CPU per task.
        for c in p["concurrency"]:
            row = drain(system, p, c)
            emit(f"drain_c{c}", row["rate"])
            emit(f"drain_c{c}_cpu_us", row["cpu_us"])
        return
    # Idle: a worker of 8 on an empty queue, before anything else grew the heap.
    worker = system.start_worker("idle", 8)
    time.sleep(2)
    emit("rss_idle", tree_rss_mb(worker.pid))
    worker.stop()

    t0 = time.perf_counter()
    for i in range(n_enq):
        system.enqueue("enq1", {"i": i})
    emit("enqueue_1", n_enq / (time.perf_counter() - t0))

    def produce(k: int) -> None:
        for i in range(n_enq // 8):
            system.enqueue("enq8", {"i": i, "k": k})

    t0 = time.perf_counter()
    threads = [in_thread(lambda k=k: produce(k)) for k in range(8)]
    for t in threads:
        t.join()
    emit("enqueue_8", n_enq // 8 * 8 / (time.perf_counter() - t0))

    if system.enqueue_batch is not None:
        t0 = time.perf_counter()
        for start in range(0, n_enq, batch):
            system.enqueue_batch("enqb", [{"i": i} for i in range(start, min(n_enq, start + batch))])
        emit("enqueue_batch", n_enq / (time.perf_counter() - t0))

    busy = 0.0
    for c in p["concurrency"]:
        row = drain(system, p, c)
        busy = max(busy, row["peak"])
        emit(f"drain_c{c}", row["rate"])
    emit("rss_busy", busy)

    # Latency: 8 producers sharing a steady rate; a worker of 8.
    rate, n = p["rate"], int(p["rate"] * p["latency_secs"])
    system.sink.reset(n)
    worker = system.start_worker("latency", 8)
    time.sleep(1.0)
    start = time.perf_counter()

    def paced(k: int) -> None:
        for i in range(k, n, 8):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            system.enqueue("latency", {"t": time.time() * 1000})

    threads = [in_thread(lambda k=k: paced(k)) for k in range(8)]
    for t in threads:
        t.join()
    offered = n / (time.perf_counter() - start)
    try:
        wait_for(system, n, 120)
    finally:
        worker.stop()
    lags = system.sink.all_lags()
    emit("latency_p50", percentile(lags, 0.5))
    emit("latency_p99", percentile(lags, 0.99))
    note(f"latency: {n} tasks offered at {offered:.0f}/s")

    # Delayed: due 1 or 2 s after creation; lateness = handler start - due time.
    system.sink.reset(p["delayed"])
    worker = system.start_worker("delayed", 8)
    time.sleep(1.0)
    for i in range(p["delayed"]):
        delay = 1 + i % 2
        system.enqueue_delayed("delayed", {"due": time.time() * 1000 + delay * 1000}, delay)
    try:
        wait_for(system, p["delayed"], 60)
    finally:
        worker.stop()
    lags = system.sink.all_lags()
    emit("delayed_p50", percentile(lags, 0.5))
    emit("delayed_p99", percentile(lags, 0.99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("system", choices=sorted(SYSTEMS))
    ap.add_argument("--params", required=True, help="JSON object of sizes and URLs (run.py writes it)")
    args = ap.parse_args()
    p = json.loads(args.params)
    system = SYSTEMS[args.system](p)
    try:
        rows(system, p)
    finally:
        system.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
