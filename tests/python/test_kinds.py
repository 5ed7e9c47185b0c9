"""Kinds of task in one queue (``@client.task(queue, name=…)``), on every backend:
each task reaches the handler of its name, with its input as keyword arguments or
the ``qtask.Message`` first; the decorated function still calls as itself; its
``create`` / ``delay`` / ``options`` / ``new_task`` honour the options of
``client.create``; a name without a handler is retried with backoff, or goes to the
queue's ``@client.task(queue)`` handler when it has one."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

import qtask
from conftest import Backend, run_until

Q = "KINDS"


def test_two_kinds_in_one_queue_each_reach_their_handler(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()
        emails: List[Dict[str, Any]] = []
        charges: List[qtask.Message] = []

        @c.task(Q, name="send_email", delete_deadline=3600)
        def send_email(to: str, subject: str = "(none)") -> str:
            emails.append({"to": to, "subject": subject})
            return f"sent to {to}"

        @c.task(Q, name="billing.charge", delete_deadline=3600)
        async def charge(message: qtask.Message, amount: int) -> Dict[str, int]:
            charges.append(message)
            return {"charged": amount}

        # Still the functions: a direct call runs them and enqueues nothing.
        assert send_email("direct@example.com") == "sent to direct@example.com"
        assert c.count_tasks(queue=Q) == 0
        emails.clear()
        assert isinstance(send_email, qtask.TaskKind) and isinstance(charge, qtask.MessageKind)
        assert (send_email.name, send_email.queue, send_email.__name__) == ("send_email", Q, "send_email")

        mail = send_email.create("a@example.com")
        paid = charge.create(amount=42)
        report = run_until(c, lambda: emails and charges, "both kinds handled", concurrency=2)
        assert (report.finished, report.failed) == (2, 0), report

        assert emails == [{"to": "a@example.com", "subject": "(none)"}]
        row = c.get(paid)
        assert (row["name"], row["input"]) == ("billing.charge", {"amount": 42})
        message = charges[0]
        assert (message.task_id, message.attempt, message.name, message.queue) == (paid, 1, "billing.charge", Q)
        assert message.deadline_at == row["deadline_at"]
        assert message.input == {"amount": 42}
        assert message["task_id"] == paid and message["amount"] == 42
        assert c.result(paid) == {"charged": 42}
        assert c.get(mail)["status"] == "finished"


def test_create_honours_the_options_of_client_create(backend: Backend) -> None:
    with backend.client(sweeper=False) as c:
        c.install()

        @c.task(Q, name="send_email", max_count=5, timeout=30)
        def send_email(to: str, **headers: str) -> None:
            pass

        @c.task(Q, name="audit")
        def audit(event: str) -> None:
            pass

        # Positional arguments go under their parameter's name; **kwargs spread.
        first = send_email.options(order_no="ORDER-1").create("a@example.com", cc="b@example.com")
        again = send_email.options(order_no="ORDER-1").create("other@example.com")
        assert again.existing and again == first and not first.existing
        row = c.get(first)
        assert row["input"] == {"to": "a@example.com", "cc": "b@example.com"}
        assert (row["name"], row["queue"], row["order_no"]) == ("send_email", Q, "ORDER-1")
        assert (row["max_count"], row["timeout_ms"], row["priority"]) == (5, 30_000, 0)

        urgent = c.get(send_email.options(priority=7, max_count=2).create(to="c@example.com"))
        assert (urgent["priority"], urgent["max_count"], urgent["timeout_ms"]) == (7, 2, 30_000)

        for later in (send_email.delay(3600, "d@example.com"), send_email.options(delay=3600).create("e@example.com")):
            assert not later.dispatched
            delayed = c.get(later)
            assert (delayed["next_at"] or 0) - delayed["created_at"] >= 3_599_000

        # Several kinds in one create_many transaction; one bad item writes none.
        before = c.count_tasks(queue=Q)
        made = c.create_many([send_email.new_task("f@example.com"), audit.options(priority=3).new_task("login")])
        assert [c.get(t)["name"] for t in made] == ["send_email", "audit"]
        assert c.get(made[1])["priority"] == 3
        with pytest.raises(qtask.InvalidArgument):
            c.create_many([audit.new_task("x"), {**audit.new_task("y"), "priority": 5000}])
        with pytest.raises(qtask.InvalidArgument, match="delay"):
            send_email.options(delay=5).new_task("g@example.com")
        # Arguments that do not fit the handler are refused before anything is written.
        with pytest.raises(qtask.InvalidArgument, match="audit"):
            audit.create(nope=1)  # type: ignore[call-arg]
        assert c.count_tasks(queue=Q) == before + 2


def test_a_name_without_handler_is_retried_or_goes_to_the_queue_handler(backend: Backend) -> None:
    with backend.client(sweep_interval=0.2, retry_backoff=60, retry_backoff_max=60) as c:
        c.install()
        seen: List[str] = []

        @c.task(Q, name="send_email")
        def send_email(to: str) -> None:
            seen.append(to)

        @c.task("MIXED", name="known")
        def known() -> None:
            seen.append("known")

        @c.task("MIXED")
        def every_other(message: qtask.Message) -> None:
            seen.append(f"other:{message.name}:{message['n']}")

        new_kind = c.create("not_deployed_yet", {"n": 1}, queue=Q, max_count=3)
        unfit = c.create("send_email", {"wrong": 1}, queue=Q)
        c.create("known", {}, queue="MIXED")
        c.create("label", {"n": 2}, queue="MIXED")
        send_email.create(to="a@example.com")

        def settled() -> bool:
            return c.get(new_kind)["last_error"] is not None and c.get(unfit)["status"] == "failed" and len(seen) == 3

        report = run_until(c, settled, "every task settled", concurrency=2)
        assert sorted(seen) == ["a@example.com", "known", "other:label:2"]
        assert (report.finished, report.failed) == (3, 2), report
        waiting = c.get(new_kind)
        assert (waiting["status"], waiting["count"]) == ("waiting", 1)
        assert 'no handler for task name "not_deployed_yet" in queue "KINDS"' in (waiting["last_error"] or "")
        assert "send_email" in (waiting["last_error"] or "")
        assert "does not fit send_email" in (c.get(unfit)["last_error"] or "")


def test_registration_is_checked(sqlite: Backend) -> None:
    with sqlite.client(sweeper=False) as c:

        @c.task(Q, name="k")
        def k() -> None:
            pass

        with pytest.raises(qtask.InvalidArgument, match="already has a handler for 'k'"):
            c.task(Q, name="k")(k)
        with pytest.raises(qtask.InvalidArgument, match="args"):

            @c.task(Q, name="spread")
            def spread(*args: int) -> None:
                pass

        with pytest.raises(qtask.InvalidArgument, match="empty"):
            c.task(Q, name="")
        assert list(c.kinds[Q]) == ["k"] and c.handlers == {}
