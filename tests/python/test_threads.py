"""One client shared by many threads, with the GIL released in every blocking call."""

from __future__ import annotations

import threading
from typing import Dict, List, Optional

import qtask
from conftest import Backend, wait_until

POPPERS = 6


def test_blocked_pops_do_not_hold_the_gil(backend: Backend) -> None:
    """Threads sit in pop(wait=20) while this thread runs Python and creates their work.

    If pop held the GIL, the main thread could not create anything while a pop
    waits: each pop would end empty-handed after its wait and the assertion on what
    the threads received would fail (this test would not merely be slower).
    """
    with backend.client(sweep_interval=0.2) as c:
        c.install()
        started = threading.Barrier(POPPERS + 1)
        received: Dict[int, Optional[qtask.Message]] = {}
        lock = threading.Lock()

        def popper(n: int) -> None:
            started.wait()
            message = c.pop("GIL", wait=20.0)
            with lock:
                received[n] = message

        threads = [threading.Thread(target=popper, args=(n,)) for n in range(POPPERS)]
        for t in threads:
            t.start()
        started.wait()
        # Pure Python work while every popper is (about to be) blocked in native code.
        spins = 0
        while spins < 200_000:
            spins += 1
        ids = {c.create("gil", {"n": n}, queue="GIL") for n in range(POPPERS)}
        for t in threads:
            t.join()
        assert spins == 200_000
        got = {m["task_id"] for m in received.values() if m is not None}
        assert got == ids, f"pops got {len(got)} of {POPPERS} tasks"


def test_many_threads_share_one_client(db_backend: Backend) -> None:
    with db_backend.client(sweep_interval=0.2, max_connections=4) as c:
        c.install()
        per_thread, threads_n = 25, 8
        created: List[int] = []
        errors: List[BaseException] = []
        lock = threading.Lock()

        def producer(n: int) -> None:
            try:
                mine = [c.create("p", {"t": n, "i": i}, queue="SHARE", delete_deadline=3600) for i in range(per_thread)]
                with lock:
                    created.extend(mine)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=producer, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(set(created)) == per_thread * threads_n

        # Consumers on other threads, sharing the same client, finish them all.
        finished: List[int] = []

        def consumer() -> None:
            while True:
                m = c.pop("SHARE", wait=0.5)
                if m is None:
                    if len(finished) >= len(created):
                        return
                    continue
                if c.processing(m["task_id"]):
                    c.finish(m["task_id"])
                    with lock:
                        finished.append(m["task_id"])

        consumers = [threading.Thread(target=consumer) for _ in range(4)]
        for t in consumers:
            t.start()
        wait_until(lambda: len(finished) >= len(created), "every task finished")
        for t in consumers:
            t.join()
        assert sorted(finished) == sorted(created)
        assert c.stats()["finished"] == len(created)
