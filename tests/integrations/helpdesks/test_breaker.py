"""A helpdesk that does not answer: bounded write-backs, its circuit opens, other helpdesks carry on.

Real loopback endpoints throughout: a closed port, an HTTP server that takes requests and never answers,
and the vendor stub helpdesk that counts the replies it stores.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command

from integrations.helpdesks.base import comparable
from triage.contracts import ActionKind, ProposedAction, TicketIn
from triage.models import Action, Ticket
from triage.services import ticket_ingest
from triage.writeback import run_actions_execute

REPLY = "Sorry your grinder arrived damaged.\nWe are sending a replacement hopper today."
DECISION = [
    ProposedAction(kind=ActionKind.SET_CATEGORY, note="damaged_item"),
    ProposedAction(kind=ActionKind.SET_PRIORITY, note="high"),
    ProposedAction(kind=ActionKind.SEND_REPLY),
    ProposedAction(kind=ActionKind.SOLVE),
]
# The budget leaves room for three attempts at a helpdesk that never answers: two timeouts (1 s) and the
# random wait before the third (tenacity's `wait_random_exponential`, at most 2 s there) stay under 4 s.
# At 3 s a wait drawn near its top made the budget stop the retries, rightly, after two failures, before the
# third opened the circuit: an occasional failure of the test, now drawn every time at the top (checked: at
# 3 s the "never answers" case then fails).
TIMEOUT, BUDGET = 0.5, 4.0


@pytest.fixture(autouse=True)
def _writeback_settings(settings, monkeypatch):
    from integrations.helpdesks.breaker import breakers_forget

    settings.TRIAGE_WRITEBACK_TIMEOUT = TIMEOUT
    settings.TRIAGE_WRITEBACK_ATTEMPTS = 3
    settings.TRIAGE_WRITEBACK_BUDGET = BUDGET
    settings.TRIAGE_WRITEBACK_BREAKER_FAILURES = 3
    settings.TRIAGE_WRITEBACK_BREAKER_COOLDOWN = 60.0
    waits: list[float] = []
    monkeypatch.setattr("integrations.helpdesks.http._sleep", waits.append)
    breakers_forget()
    yield waits
    breakers_forget()


class SilentHelpdesk:
    """Accepts HTTP requests on 127.0.0.1 and never answers them; counts what arrived."""

    def __init__(self):
        self.arrived: list[tuple[str, str]] = []
        self.stop = threading.Event()
        silent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _hold(self):
                silent.arrived.append((self.command, self.path))
                silent.stop.wait(30)

            do_GET = do_POST = do_PUT = do_PATCH = _hold

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def dead_helpdesk():
    servers: list[SilentHelpdesk] = []

    def _dead(kind: str) -> tuple[str, SilentHelpdesk | None]:
        if kind == "closed port":
            return closed_port_url(), None
        servers.append(SilentHelpdesk())
        return servers[-1].base_url, servers[-1]

    yield _dead
    for server in servers:
        server.close()


@pytest.fixture
def ticket_for():
    counter = iter(range(100, 10_000))

    def _ticket(source):
        return ticket_ingest(
            ticket_in=TicketIn(
                source=source.ticket_source,
                external_id=str(next(counter)),
                subject="Cracked hopper",
                body="My grinder hopper arrived cracked.",
                requester="maria@example.com",
            ),
            enqueue=False,
        ).run

    return _ticket


def timed(fn):
    started = time.monotonic()
    out = fn()
    return out, time.monotonic() - started


@pytest.mark.parametrize("kind", ["closed port", "never answers"])
def test_an_unreachable_helpdesk_opens_its_circuit_and_others_still_get_their_reply(
    kind, dead_helpdesk, helpdesk_source, stub_helpdesk, ticket_for, monkeypatch
):
    # every random wait drawn at its top: the budget must hold three attempts even then (see BUDGET)
    monkeypatch.setattr("tenacity.wait.random.uniform", lambda low, high: high)
    # given: one helpdesk source that cannot be reached, one healthy one
    dead_url, silent = dead_helpdesk(kind)
    dead = helpdesk_source("zendesk", base_url=dead_url, api_user="a@example.com", api_token="t")
    healthy_stub = stub_helpdesk("zendesk")
    healthy = helpdesk_source("zendesk", base_url=healthy_stub.base_url, api_user="a@example.com", api_token="t")
    first, second, other = ticket_for(dead), ticket_for(dead), ticket_for(healthy)

    # when: the first ticket of the dead helpdesk is written back
    actions, took = timed(lambda: run_actions_execute(run=first, actions=DECISION, reply=REPLY))

    # then: it failed within the budget, and its third failed request opened the circuit
    assert took < BUDGET + 1.0
    assert [a.status for a in actions] == [Action.Status.FAILED] * 4
    assert [a.attempts for a in actions] == [1, 1, 1, 1]
    opened = re.escape(f"helpdesk {dead.ticket_source} unreachable, circuit open until ")
    assert re.fullmatch(
        f"HelpdeskUnavailable: {opened}[0-9: -]+ UTC: PUT /api/v2/tickets/100/tags\\.json: (URLError|TimeoutError): .*",
        actions[0].error,
    ), actions[0].error
    assert all(re.fullmatch(f"HelpdeskUnavailable: {opened}[0-9: -]+ UTC: not sent", a.error) for a in actions[1:])
    if silent is not None:
        assert silent.arrived == [("PUT", "/api/v2/tickets/100/tags.json")] * 3

    # when: the next ticket for the same helpdesk
    actions = run_actions_execute(run=second, actions=DECISION, reply=REPLY)

    # then: it fails at once, nothing sent (below: "not sent", and nothing more arrived), with a reason staff can read
    assert [a.status for a in actions] == [Action.Status.FAILED] * 4
    until = datetime.strptime(re.search(r"until ([0-9: -]+) UTC", actions[2].error)[1], "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=UTC
    )
    assert timedelta(seconds=55) < until - datetime.now(UTC) <= timedelta(seconds=60)
    assert (
        actions[2].error == f"HelpdeskUnavailable: helpdesk {dead.ticket_source} unreachable, "
        f"circuit open until {until:%Y-%m-%d %H:%M:%S} UTC: not sent"
    )
    if silent is not None:
        assert len(silent.arrived) == 3

    # when: a ticket of the healthy helpdesk
    actions = run_actions_execute(run=other, actions=DECISION, reply=REPLY)

    # then: carried out, one reply
    assert [a.status for a in actions] == [Action.Status.DONE] * 4, [a.error for a in actions]
    assert [comparable(r) for r in healthy_stub.replies[other.ticket.external_id]] == [comparable(REPLY)]
    assert healthy_stub.reply_posts == 1


def test_after_the_cool_down_retry_writebacks_sends_the_reply_exactly_once(
    settings, helpdesk_source, stub_helpdesk, ticket_for
):
    # given: a helpdesk answering 503 to everything opened its circuit on a ticket's write-back
    settings.TRIAGE_WRITEBACK_BREAKER_COOLDOWN = 2.0
    stub = stub_helpdesk("zendesk")
    stub.fail_all = True
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="a@example.com", api_token="t")
    run = ticket_for(source)
    actions = run_actions_execute(
        run=run,
        actions=[ProposedAction(kind=ActionKind.SEND_REPLY), ProposedAction(kind=ActionKind.SOLVE)],
        reply=REPLY,
    )
    assert [a.status for a in actions] == [Action.Status.FAILED] * 2
    assert "circuit open until" in actions[0].error and "HTTP 503" in actions[0].error
    sent_while_down = len(stub.requests)
    assert sent_while_down == 3

    # when: the helpdesk is back, but retry_writebacks runs within the cool-down
    stub.fail_all = False
    call_command("retry_writebacks")

    # then: nothing was sent and no attempt was spent
    assert len(stub.requests) == sent_while_down
    assert (
        list(Action.objects.filter(run=run).order_by("pk").values_list("status", "attempts"))
        == [(Action.Status.FAILED, 1)] * 2
    )

    # when: after the cool-down, twice
    time.sleep(2.1)
    call_command("retry_writebacks")
    call_command("retry_writebacks")

    # then: the reply went out exactly once and the ticket is solved
    assert (
        list(Action.objects.filter(run=run).order_by("pk").values_list("status", "attempts", "error"))
        == [(Action.Status.DONE, 2, "")] * 2
    )
    assert [comparable(r) for r in stub.replies[run.ticket.external_id]] == [comparable(REPLY)]
    assert stub.reply_posts == 1
    assert stub.status[run.ticket.external_id] == "solved"


def test_an_http_4xx_is_not_retried_and_does_not_open_the_circuit(helpdesk_source, stub_helpdesk, ticket_for):
    # given: a Freshdesk helpdesk whose tickets are numeric; these are not, so every call is a 404
    stub = stub_helpdesk("freshdesk")
    source = helpdesk_source("freshdesk", base_url=stub.base_url, api_user="", api_token="t")
    runs = [ticket_for(source) for _ in range(4)]
    for run in runs:
        Ticket.objects.filter(pk=run.ticket_id).update(external_id=f"no-such-{run.pk}")

    # when
    outcomes = [
        run_actions_execute(run=run, actions=[ProposedAction(kind=ActionKind.SOLVE)], reply="")[0] for run in runs
    ]

    # then: one request per ticket, each failed with the helpdesk's answer, none refused by a circuit
    assert [a.status for a in outcomes] == [Action.Status.FAILED] * 4
    assert all(
        a.error.startswith("WritebackError: PUT /api/v2/tickets/no-such-") and "HTTP 404" in a.error for a in outcomes
    )
    assert len(stub.requests) == 4


def test_an_abandoned_in_flight_reply_is_read_back_not_posted_again(
    helpdesk_source, stub_helpdesk, ticket_for, run_held_elsewhere
):
    # given: a worker posted the reply and stopped before recording it (the action stays IN_FLIGHT)
    stub = stub_helpdesk("zendesk")
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="a@example.com", api_token="t")
    run = ticket_for(source)
    stub.replies[run.ticket.external_id].append(REPLY)
    action = Action.objects.create(
        run=run,
        kind=ActionKind.SEND_REPLY,
        idempotency_key=f"run:{run.pk}:0:send_reply",
        payload={"kind": "send_reply", "body": REPLY},
        status=Action.Status.IN_FLIGHT,
        attempts=1,
        claimed_at=datetime.now(UTC) - timedelta(seconds=60),
    )

    # when: a live worker holds the run (its lock), and the run is resumed elsewhere and retry_writebacks runs
    with run_held_elsewhere(run.pk):
        resumed = run_actions_execute(run=run, actions=[ProposedAction(kind=ActionKind.SEND_REPLY)], reply=REPLY)
        call_command("retry_writebacks")

    # then: left to the worker that holds it; nothing sent
    assert (resumed[0].pk, resumed[0].status, resumed[0].attempts) == (action.pk, Action.Status.IN_FLIGHT, 1)
    assert stub.requests == []

    # when: that worker is gone (its session, and with it the lock, ended)
    call_command("retry_writebacks")

    # then: claimed again at once (no lease to wait out), the reply was found on the ticket, not posted twice
    action.refresh_from_db()
    assert (action.status, action.attempts, action.result, action.claimed_at) == (
        Action.Status.DONE,
        2,
        {"vendor": "zendesk", "reply": "already posted", "reconciled": True},
        None,
    )
    assert stub.replies[run.ticket.external_id] == [REPLY]
    assert stub.reply_posts == 0


def test_with_redis_an_open_circuit_is_shared_by_every_worker(settings, dead_helpdesk, helpdesk_source, ticket_for):
    # given: breaker state in Redis (database 11 of the local Redis), a helpdesk on a closed port
    import redis

    from integrations.helpdesks.breaker import breakers_forget

    settings.REDIS_URL = "redis://127.0.0.1:6379/11"
    client = redis.Redis.from_url(settings.REDIS_URL)
    dead_url, _ = dead_helpdesk("closed port")
    dead = helpdesk_source("zendesk", base_url=dead_url, api_user="a@example.com", api_token="t")
    first, second = ticket_for(dead), ticket_for(dead)
    keys = f"triage:helpdesk:{dead.ticket_source}:pybreaker:*"
    try:
        # when: one worker's write-back opens the circuit, and another worker (a new process: nothing
        # in memory) writes back the next ticket
        opened = run_actions_execute(run=first, actions=[ProposedAction(kind=ActionKind.SOLVE)], reply="")[0]
        breakers_forget()
        actions = run_actions_execute(run=second, actions=[ProposedAction(kind=ActionKind.SOLVE)], reply="")

        # then: the second worker knew the circuit was open and sent nothing
        assert opened.status == Action.Status.FAILED and "circuit open until" in opened.error
        assert client.get(f"triage:helpdesk:{dead.ticket_source}:pybreaker:state") == b"open"
        assert actions[0].status == Action.Status.FAILED
        assert actions[0].error.endswith(" UTC: not sent"), actions[0].error
    finally:
        for key in client.scan_iter(keys):
            client.delete(key)
        breakers_forget()
