"""The Celery app of suite.py: Redis broker ($BENCH_CELERY_BROKER), acks_late, prefetch 1,
no result backend, as Celery's documentation recommends for tasks that must not be lost
when a worker dies."""

import os

from celery import Celery

import bench_jobs

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6391/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="record")
def record(payload):
    bench_jobs.record(payload)
