"""What a handler raises to end its attempt other than by returning or failing.

    @client.task("MAIL")
    def send(message):
        if rate_limited():
            raise qtask.Retry(after=30)        # back in 30 s; the attempt is given back
        if message["user"] is None:
            raise qtask.Cancel("user deleted")  # cancelled, never runs again
        if not valid(message):
            raise qtask.FailNow("bad address")  # failed for good, no more retries
        return {"sent": True}                  # finished; kept as the task's result

Any other exception fails the attempt (retried with backoff, the traceback kept as
``last_error``). With ``run_worker(time_limit=…)``, a handler past its limit gets
:class:`TimeLimitExceeded` raised in it (``async def`` ones are cancelled).
"""

from __future__ import annotations

from .errors import Error

__all__ = ["Retry", "Cancel", "FailNow", "TimeLimitExceeded"]


class Retry(Exception):
    """Raise in a handler: the task comes back after ``after`` seconds.

    The attempt is given back (the task's ``max_count`` grows by one) and its last
    error is kept; if the delay would pass the task's deadline, it fails for good.
    """

    def __init__(self, after: float) -> None:
        super().__init__(f"retry after {after}s")
        self.after = after


class Cancel(Exception):
    """Raise in a handler: the task ends as cancelled, ``reason`` kept as its last error."""

    def __init__(self, reason: str = "cancelled by the handler") -> None:
        super().__init__(reason)
        self.reason = reason


class FailNow(Exception):
    """Raise in a handler: the task fails for good, ``reason`` kept as its last error."""

    def __init__(self, reason: str = "failed by the handler") -> None:
        super().__init__(reason)
        self.reason = reason


class TimeLimitExceeded(Error):
    """Raised inside a sync handler that ran past the worker's ``time_limit``.

    The attempt has already failed ("time limit of Ns exceeded") and is retried with
    backoff; whatever the handler does afterwards is ignored. It arrives between two
    Python bytecodes, so a handler blocked in one long C call (``time.sleep(60)``)
    sees it only when that call returns.
    """
