"""The no-op jobs of the benchmarks, importable by a worker by their dotted name.

`noop` serves bench_peers.py. `record` serves suite.py: it tells a sink that a
handler started (and how late, when the payload carries `t`, its creation time, or
`due`, its due time, in Unix ms). In the driver's own process the sink is
`LOCAL`; in a worker process of its own (RQ, Celery) it is the Redis named by
$BENCH_SINK_URL.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional


def noop(i: int) -> None:
    return None


class LocalSink:
    """Handler starts counted in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset(0)

    def reset(self, target: int) -> None:
        with self.lock:
            self.count, self.target = 0, target
            self.first: Optional[float] = None
            self.nth: Optional[float] = None
            self.lags: List[float] = []

    def hit(self, payload: Dict[str, Any]) -> None:
        now = time.time() * 1000
        with self.lock:
            if self.first is None:
                self.first = now
            lag = lateness(payload, now)
            if lag is not None:
                self.lags.append(lag)
            self.count += 1
            if self.count == self.target:
                self.nth = now

    def progress(self) -> int:
        return self.count

    def span_ms(self) -> float:
        assert self.first is not None and self.nth is not None
        return self.nth - self.first

    def all_lags(self) -> List[float]:
        return list(self.lags)


class RedisSink:
    """Handler starts counted in Redis, for workers in processes of their own."""

    def __init__(self, url: str, key: str = "bench-sink") -> None:
        import redis

        self.r = redis.Redis.from_url(url)
        self.key = key

    def reset(self, target: int) -> None:
        self.r.delete(*(f"{self.key}:{k}" for k in ("count", "first", "last", "lags")))
        self.target = target

    def hit(self, payload: Dict[str, Any]) -> None:
        now = time.time() * 1000
        pipe = self.r.pipeline(transaction=False)
        pipe.set(f"{self.key}:first", now, nx=True)
        pipe.set(f"{self.key}:last", now)
        lag = lateness(payload, now)
        if lag is not None:
            pipe.rpush(f"{self.key}:lags", lag)
        pipe.incr(f"{self.key}:count")
        pipe.execute()

    def progress(self) -> int:
        return int(self.r.get(f"{self.key}:count") or 0)

    def span_ms(self) -> float:
        first, last = self.r.mget(f"{self.key}:first", f"{self.key}:last")
        return float(last) - float(first)

    def all_lags(self) -> List[float]:
        return [float(x) for x in self.r.lrange(f"{self.key}:lags", 0, -1)]


def lateness(payload: Dict[str, Any], now: float) -> Optional[float]:
    for key in ("t", "due"):
        if isinstance(payload.get(key), (int, float)):
            return now - float(payload[key])
    return None


LOCAL = LocalSink()
_remote: Optional[RedisSink] = None


def sink() -> Any:
    global _remote
    url = os.environ.get("BENCH_SINK_URL")
    if not url:
        return LOCAL
    if _remote is None:
        _remote = RedisSink(url)
    return _remote


def record(payload: Dict[str, Any]) -> None:
    sink().hit(payload)
