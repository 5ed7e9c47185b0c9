"""Kinds of task: ``@client.task(queue, name=…)`` handlers that also enqueue.

The worker engine hands each message with its task name; ``_worker.py`` calls the
handler registered for that name. A kind's input is the handler's keyword
arguments, so ``send_email.create(to="a@b")`` is type-checked against
``send_email``'s parameters (ParamSpec). Options (order number, delay, priority…)
never share that namespace: they are set with ``send_email.options(…)``, as
Dramatiq's ``send_with_options`` and Celery's ``apply_async`` keep them apart.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, Mapping, Optional, TypeVar

from .errors import InvalidArgument
from .outcomes import FailNow
from .types import Created, Message, NewTask

if TYPE_CHECKING:
    from ._client import Client

if sys.version_info >= (3, 10):
    from typing import Concatenate, ParamSpec

    P = ParamSpec("P")
else:  # pragma: no cover - 3.9: only subscripted at run time; checkers read the branch above
    P = TypeVar("P")
R = TypeVar("R")

_OPTIONS = ("timeout", "deadline", "delete_deadline", "max_count", "order_no", "priority", "delay", "connection")


def takes_message(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s first parameter is annotated ``qtask.Message``: then it gets
    the message object, and its other parameters the input."""
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return False
    try:
        annotation = typing.get_type_hints(fn).get(params[0].name)
    except Exception:  # an annotation that does not resolve: read its text
        annotation = params[0].annotation
    return annotation is Message or annotation in ("Message", "qtask.Message")


def check_input_parameters(fn: Callable[..., Any], skip_first: bool) -> None:
    """A kind's input is a JSON object: a ``*args`` parameter has no key to go under."""
    params = list(inspect.signature(fn).parameters.values())[1 if skip_first else 0 :]
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            raise InvalidArgument(f"{fn.__qualname__}: *{p.name} cannot be a task's input; use keyword parameters")


class TaskKind(Generic[P, R]):
    """One kind of task (a task name) in a queue, and its handler.

    Made by :meth:`qtask.Client.task` with ``name=``. Calling it calls the function;
    :meth:`create`, :meth:`delay` and :meth:`new_task` enqueue a task of this kind,
    its input being the call's arguments by parameter name.
    """

    def __init__(
        self,
        client: Client,
        fn: Callable[..., Any],
        queue: str,
        name: str,
        options: Mapping[str, Any],
    ) -> None:
        self._client = client
        self._fn = fn
        self._queue = queue
        self._name = name
        self._options = {k: v for k, v in options.items() if v is not None}
        self.takes_message = takes_message(fn)
        check_input_parameters(fn, self.takes_message)
        signature = inspect.signature(fn)
        if self.takes_message:
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        self._signature = signature
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        """The task name this kind is registered under."""
        return self._name

    @property
    def queue(self) -> str:
        return self._queue

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return typing.cast(R, self._fn(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<qtask kind {self._name!r} in queue {self._queue!r}: {self._fn.__qualname__}>"

    def input(self, *args: P.args, **kwargs: P.kwargs) -> Dict[str, Any]:
        """The task input this call makes: arguments by parameter name (defaults left
        to the handler, ``**kwargs`` spread)."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidArgument(f"{self._name}: {e}") from None
        values: Dict[str, Any] = {}
        for key, value in bound.arguments.items():
            if self._signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                values.update(value)
            else:
                values[key] = value
        return values

    def options(
        self,
        *,
        order_no: Optional[str] = None,
        priority: Optional[int] = None,
        delay: Optional[float] = None,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
        delete_deadline: Optional[float] = None,
        max_count: Optional[int] = None,
        connection: Any = None,
    ) -> TaskKind[P, R]:
        """A copy of this kind whose tasks are created with these options (those of
        :meth:`qtask.Client.create`, plus ``delay`` in seconds), over the decorator's:
        ``send_email.options(order_no="A-1", priority=5).create(to="a@b")``."""
        given = dict(
            order_no=order_no,
            priority=priority,
            delay=delay,
            timeout=timeout,
            deadline=deadline,
            delete_deadline=delete_deadline,
            max_count=max_count,
            connection=connection,
        )
        merged = {**self._options, **{k: v for k, v in given.items() if v is not None}}
        return type(self)(self._client, self._fn, self._queue, self._name, merged)

    def create(self, *args: P.args, **kwargs: P.kwargs) -> Created:
        """Creates a task of this kind, its input the arguments, with this kind's
        options; as :meth:`qtask.Client.create` (or :meth:`qtask.Client.delay` when
        the options hold a ``delay``)."""
        input = self.input(*args, **kwargs)
        options = dict(self._options)
        if "delay" in options:
            return self._client.delay(self._name, input, queue=self._queue, **options)
        return self._client.create(self._name, input, queue=self._queue, **options)

    def delay(self, seconds: float, /, *args: P.args, **kwargs: P.kwargs) -> Created:
        """Creates a task of this kind due ``seconds`` from now (:meth:`qtask.Client.delay`)."""
        input = self.input(*args, **kwargs)
        options = {**self._options, "delay": seconds}
        return self._client.delay(self._name, input, queue=self._queue, **options)

    def new_task(self, *args: P.args, **kwargs: P.kwargs) -> NewTask:
        """The item of :meth:`qtask.Client.create_many` for this call, with this kind's
        options (all but ``delay`` and ``connection``, which ``create_many`` has not
        per item), so that several kinds go in one transaction."""
        unsupported = sorted({"delay", "connection"} & set(self._options))
        if unsupported:
            raise InvalidArgument(f"{self._name}: create_many items take no {', '.join(unsupported)}")
        task: Dict[str, Any] = {"name": self._name, "input": self.input(*args, **kwargs), "queue": self._queue}
        task.update(self._options)
        return typing.cast(NewTask, task)


class MessageKind(TaskKind[P, R]):
    """A :class:`TaskKind` whose handler's first parameter is the :class:`qtask.Message`
    (task id, attempt, name, deadline); its other parameters are the input."""

    def __call__(self, message: Message, /, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[override]
        return typing.cast(R, self._fn(message, *args, **kwargs))

    def options(self, **options: Any) -> MessageKind[P, R]:
        return typing.cast(MessageKind[P, R], super().options(**options))


def run(kind: TaskKind[Any, Any], message: Message) -> Any:
    """Calls ``kind``'s handler on ``message``. Input that does not fit its parameters
    fails the task for good: running it again cannot help."""
    try:
        kind._signature.bind(**message.input)
    except TypeError as e:
        raise FailNow(f"the input does not fit {kind.name}{kind._signature}: {e}") from None
    if kind.takes_message:
        return kind._fn(message, **message.input)
    return kind._fn(**message.input)


class KindDecorator:
    """What ``client.task(queue, name=…)`` returns: registers the decorated function."""

    def __init__(self, register: Callable[[Callable[..., Any]], TaskKind[Any, Any]]) -> None:
        self._register = register

    @typing.overload
    def __call__(self, fn: Callable[Concatenate[Message, P], R]) -> MessageKind[P, R]: ...

    @typing.overload
    def __call__(self, fn: Callable[P, R]) -> TaskKind[P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> TaskKind[Any, Any]:
        return self._register(fn)
