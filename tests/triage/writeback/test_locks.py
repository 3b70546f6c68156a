"""While a helpdesk is being called, no row lock is held: staff pages, the retry command and other
workers can lock the action and its run at once.

The rows must be committed for other connections to see them, so every query of this test runs in a
thread of its own (Django gives each thread its own connection, in autocommit), outside pytest-django's
per-test transaction; the test deletes what it committed. (A transactional test would flush the tables
afterwards, the session's demo data with them.)
"""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from integrations.helpdesks.base import comparable
from triage.contracts import ActionKind, ProposedAction, TicketIn
from triage.models import Action, PipelineRun
from triage.services import ticket_ingest
from triage.writeback import run_actions_execute

SECRET = "whsec-test-4f1c2b9a7e"
REPLY = "Sorry your grinder arrived damaged.\nWe are sending a replacement hopper today."


def in_thread(fn, *, timeout: float = 15.0):
    """Run `fn` on a connection of its own and return what it returned (or raise what it raised)."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} still running after {timeout}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def committed(db):
    """Rows appended here were committed by `in_thread` and are deleted after the test."""
    made: list = []
    yield made
    in_thread(lambda: [row.delete() for row in reversed(made)])


@pytest.fixture
def held_helpdesk(stub_helpdesk):
    """A stub Zendesk that holds every write (non-GET request) until released."""
    stub = stub_helpdesk("zendesk")
    stub.write_arrived = threading.Event()
    stub.release = threading.Event()
    dispatch = stub.dispatch

    def held(method, path, headers, body):
        if method != "GET":
            stub.write_arrived.set()
            stub.release.wait(10)
        return dispatch(method, path, headers, body)

    stub.dispatch = held
    yield stub
    stub.release.set()


def test_no_row_lock_is_held_while_the_helpdesk_is_called(committed, held_helpdesk, settings):
    # given: a committed ticket of a helpdesk source whose API holds the reply request
    from integrations.models import HelpdeskSource

    settings.TRIAGE_WRITEBACK_TIMEOUT = 5.0

    def given():
        source = HelpdeskSource.objects.create(
            vendor="zendesk",
            name=f"held-{uuid.uuid4().hex[:6]}",
            secret=SECRET,
            base_url=held_helpdesk.base_url,
            api_user="a@example.com",
            api_token="t",
        )
        committed.append(source)
        run = ticket_ingest(
            ticket_in=TicketIn(
                source=source.ticket_source,
                external_id="5158",
                subject="Cracked hopper",
                body="My grinder hopper arrived cracked.",
                requester="maria@example.com",
            ),
            enqueue=False,
        ).run
        committed.append(run.ticket)
        return run

    run = in_thread(given)
    outcome: dict = {}

    def worker():
        try:
            outcome["actions"] = run_actions_execute(
                run=run, actions=[ProposedAction(kind=ActionKind.SEND_REPLY)], reply=REPLY
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertions below
            outcome["error"] = exc
        finally:
            connection.close()

    def lock_both_without_waiting():
        with transaction.atomic():
            action = Action.objects.select_for_update(nowait=True).get(run_id=run.pk)
            locked_run = PipelineRun.objects.select_for_update(nowait=True).get(pk=run.pk)
            return action, locked_run

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert held_helpdesk.write_arrived.wait(10), "the reply request never reached the helpdesk"

        # when: another connection locks the action and the run without waiting, mid-call
        action, locked_run = in_thread(lock_both_without_waiting)

        # then: both locks were granted; the action shows it is in flight
        assert (action.status, action.attempts, action.claimed_at is not None) == (Action.Status.IN_FLIGHT, 1, True)
        assert locked_run.pk == run.pk
    finally:
        held_helpdesk.release.set()
        thread.join(15)

    # then: the held call finished and was recorded once
    assert "error" not in outcome, outcome.get("error")
    done = outcome["actions"][0]
    assert (done.status, done.attempts, done.claimed_at, done.result) == (
        Action.Status.DONE,
        1,
        None,
        {"vendor": "zendesk", "reply": "posted"},
    )
    assert [comparable(r) for r in held_helpdesk.replies["5158"]] == [comparable(REPLY)]
    assert held_helpdesk.reply_posts == 1
