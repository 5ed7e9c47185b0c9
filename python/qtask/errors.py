"""The exceptions qtask raises, all rooted at :class:`qtask.Error`.

The native module maps every engine error to one of these (``qtask-py/src/error.rs``).
Where a built-in fits, the class subclasses it too, so ``except ValueError`` or
``except TimeoutError`` keeps working.
"""

from __future__ import annotations

import builtins

__all__ = [
    "Error",
    "InvalidArgument",
    "NotFound",
    "InvalidState",
    "DatabaseError",
    "QueueError",
    "TimeoutError",
    "ClosedError",
    "InternalError",
]


class Error(Exception):
    """Root of every qtask exception."""


class InvalidArgument(Error, ValueError):
    """qtask refused an argument (bad input, empty name, zero timeout, unknown setting...).

    Nothing was written.
    """


class NotFound(Error, KeyError):
    """No task with this id (it may have been cleaned up already)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidState(Error):
    """The task exists but its state forbids the operation (finishing a cancelled task...)."""


class DatabaseError(Error):
    """The database refused the statement or could not be reached."""


class QueueError(Error):
    """The queue (Redis) refused or could not be reached."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - deliberate, subclasses the built-in
    """An operation did not complete in time."""


class ClosedError(Error):
    """The client was closed before or during the call, or was opened before a fork."""


class InternalError(Error):
    """A bug, or an environment qtask cannot work in."""
