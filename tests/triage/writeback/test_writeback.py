"""Write-back against loopback helpdesks speaking each vendor's documented REST endpoints."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from integrations.helpdesks import VENDORS
from integrations.helpdesks.base import comparable
from triage.contracts import ActionKind, ProposedAction, TicketIn
from triage.models import Action
from triage.services import ticket_ingest
from triage.writeback import helpdesk, record_only, run_actions_execute, writer_for

REMOTE_IDS = {
    "zendesk": "5158",
    "freshdesk": "1042",
    "helpscout": "2391938111",
    "intercom": "147",
    "front": "cnv_55c8c149",
    "chatwoot": "312",
    "zammad": "41",
}
REPLY = "Sorry your grinder arrived damaged.\nWe are sending a replacement hopper today."
DECISION = [
    ProposedAction(kind=ActionKind.SET_CATEGORY, note="damaged_item"),
    ProposedAction(kind=ActionKind.SET_PRIORITY, note="high"),
    ProposedAction(kind=ActionKind.SEND_REPLY),
    ProposedAction(kind=ActionKind.SOLVE),
]


@pytest.fixture(autouse=True)
def _fast_writeback(settings, monkeypatch):
    from integrations.helpdesks.breaker import breakers_forget

    settings.TRIAGE_WRITEBACK_TIMEOUT = 0.4
    settings.TRIAGE_WRITEBACK_ATTEMPTS = 5
    # The circuit still opens, but is ready for a probe again at once (the breaker has tests of its own).
    settings.TRIAGE_WRITEBACK_BREAKER_COOLDOWN = 0.0
    breakers_forget()
    waits: list[float] = []
    monkeypatch.setattr("integrations.helpdesks.http._sleep", waits.append)
    return waits


@pytest.fixture
def connected(helpdesk_source, stub_helpdesk):
    """A stub helpdesk, a source pointing at it, and a run for one of its tickets."""

    def _connected(vendor: str):
        stub = stub_helpdesk(vendor)
        source = helpdesk_source(vendor, base_url=stub.base_url, api_user="7", api_token="api-token-123")
        run = ticket_ingest(
            ticket_in=TicketIn(
                source=source.ticket_source,
                external_id=REMOTE_IDS[vendor],
                subject="Cracked hopper",
                body="My grinder hopper arrived cracked.",
                requester="maria@example.com",
            ),
            enqueue=False,
        ).run
        return stub, run

    return _connected


def replies_on(stub, vendor: str) -> list[str]:
    return [comparable(r) for r in stub.replies[REMOTE_IDS[vendor]]]


def test_helpdesk_tickets_are_written_back_and_others_recorded_only(helpdesk_source):
    source = helpdesk_source("zendesk")

    assert writer_for(source.ticket_source) is helpdesk
    assert writer_for("api") is record_only
    assert writer_for("zendesk:not-a-number") is record_only


@pytest.mark.parametrize("vendor", VENDORS)
def test_decision_lands_in_the_helpdesk_with_exactly_one_reply(vendor, connected):
    # given
    stub, run = connected(vendor)

    # when: the decision is carried out, then carried out again (a resumed run)
    first = run_actions_execute(run=run, actions=DECISION, reply=REPLY)
    again = run_actions_execute(run=run, actions=DECISION, reply=REPLY)

    # then
    assert [a.status for a in first] == [Action.Status.DONE] * 4, [a.error for a in first]
    assert [a.attempts for a in again] == [1, 1, 1, 1]
    remote = REMOTE_IDS[vendor]
    assert replies_on(stub, vendor) == [comparable(REPLY)]
    assert stub.reply_posts == 1
    assert "triage-damaged_item" in stub.tags[remote]
    if vendor in ("helpscout", "front", "intercom"):  # no priority the API can set: written as a tag
        assert "priority-high" in stub.tags[remote]
    else:
        assert stub.priority[remote] == "high"
    assert stub.status[remote] == "solved"
    writes = [headers for method, _, headers, kind in stub.requests if method != "GET" and kind != "token"]
    assert all(h.get("Idempotency-Key", "").startswith(f"run:{run.pk}:") for h in writes)


@pytest.mark.parametrize("vendor", VENDORS)
def test_429_500_and_a_timeout_still_post_exactly_one_reply(vendor, connected, _fast_writeback):
    # given: the helpdesk rate-limits, then fails, then stores the reply but answers too late
    stub, run = connected(vendor)
    stub.faults = [("429", 7), ("500",), ("slow", 1.0)]

    # when
    actions = run_actions_execute(run=run, actions=[ProposedAction(kind=ActionKind.SEND_REPLY)], reply=REPLY)

    # then: Retry-After was honoured, and the late-answered reply was found instead of posted again
    assert actions[0].status == Action.Status.DONE, actions[0].error
    assert actions[0].result["reply"] == "already posted"
    assert _fast_writeback[0] == 7.0
    assert replies_on(stub, vendor) == [comparable(REPLY)]
    assert stub.reply_posts == 3


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_write_back_that_keeps_failing_is_failed_with_its_error_and_retried_later(vendor, connected):
    # given: the helpdesk is down while the run finishes
    stub, run = connected(vendor)
    stub.fail_all = True

    # when
    actions = run_actions_execute(
        run=run,
        actions=[ProposedAction(kind=ActionKind.SEND_REPLY), ProposedAction(kind=ActionKind.SOLVE)],
        reply=REPLY,
    )

    # then: visible as failed, with the error
    assert [a.status for a in actions] == [Action.Status.FAILED] * 2
    assert "503" in actions[0].error
    assert stub.replies[REMOTE_IDS[vendor]] == []

    # when: it is back and the retry command runs (twice)
    stub.fail_all = False
    call_command("retry_writebacks")
    call_command("retry_writebacks")

    # then
    statuses = list(Action.objects.filter(run=run).order_by("pk").values_list("status", flat=True))
    assert statuses == [Action.Status.DONE] * 2
    assert replies_on(stub, vendor) == [comparable(REPLY)]
    assert stub.status[REMOTE_IDS[vendor]] == "solved"


def test_money_actions_are_recorded_not_sent_to_the_helpdesk(connected):
    stub, run = connected("zendesk")

    actions = run_actions_execute(
        run=run, actions=[ProposedAction(kind=ActionKind.REFUND, note="duplicate charge")], reply=""
    )

    assert actions[0].status == Action.Status.DONE
    assert actions[0].result == {"vendor": "zendesk", "recorded": True, "kind": "refund"}
    assert stub.requests == []


def test_webhook_to_decision_to_helpdesk_end_to_end(
    helpdesk_source, stub_helpdesk, deliver, sign, payload, django_capture_on_commit_callbacks, admin_user, settings
):
    # given: a Zendesk source whose REST API is the loopback stub; runs are worked at once
    from approvals.models import ApprovalRequest
    from approvals.services import approval_decide
    from triage.models import PipelineRun

    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    stub = stub_helpdesk("zendesk")
    source = helpdesk_source("zendesk", base_url=stub.base_url, api_user="agent@example.com", api_token="zd")
    body = payload("zendesk/ticket_created_event.json")

    # when: the ticket arrives, and (if a gate stopped it) a person approves with an edited reply
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(source, body, sign("zendesk", body))
    run = PipelineRun.objects.get(pk=response.json()["run"])
    if run.status == PipelineRun.Status.WAITING:
        approval = ApprovalRequest.objects.get(run=run)
        with django_capture_on_commit_callbacks(execute=True):
            approval_decide(
                approval_id=approval.pk, actor=admin_user, verdict="edit", reply="A new hopper is on its way."
            )
        with django_capture_on_commit_callbacks(execute=True):  # a second delivery of the decision changes nothing
            PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.QUEUED)
            from triage.tasks import run_task

            run_task(run.pk)
    run.refresh_from_db()

    # then: exactly one reply per decision reached the helpdesk, and the trace says so
    sent = Action.objects.filter(run=run, kind=ActionKind.SEND_REPLY, status=Action.Status.DONE)
    assert run.status == PipelineRun.Status.COMPLETED, (run.status, run.error)
    assert len(stub.replies["5158"]) == sent.count() == 1
    assert stub.reply_posts == 1


HOSTILE_REPLY = (
    'Hi there,\n\n<img src=x onerror="alert(1)"> & <a href="https://evil.example.com">confirm your card</a>\nThanks'
)
# Vendors whose reply field is rendered as HTML get escaped text with its line breaks as markup; the others
# take plain text (Zendesk `comment.body`, Zammad `content_type: text/plain`, Chatwoot `content`).
HTML_REPLY = {
    "front": "<p>Hi there,</p>\n\n<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;a href=&quot;"
    "https://evil.example.com&quot;&gt;confirm your card&lt;/a&gt;<br>Thanks</p>",
    "freshdesk": "Hi there,<br><br>&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;a href=&quot;"
    "https://evil.example.com&quot;&gt;confirm your card&lt;/a&gt;<br>Thanks",
}
HTML_REPLY["intercom"] = HTML_REPLY["helpscout"] = HTML_REPLY["front"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_reply_reaches_each_helpdesk_escaped_where_it_renders_html(vendor, connected):
    # given
    stub, run = connected(vendor)

    # when
    actions = run_actions_execute(run=run, actions=[ProposedAction(kind=ActionKind.SEND_REPLY)], reply=HOSTILE_REPLY)

    # then: exactly the body the vendor needs, no live markup where it renders HTML
    assert actions[0].status == Action.Status.DONE, actions[0].error
    assert stub.replies[REMOTE_IDS[vendor]] == [HTML_REPLY.get(vendor, HOSTILE_REPLY)]


@pytest.mark.parametrize("vendor", ["front", "intercom", "helpscout"])
def test_an_escaped_reply_answered_too_late_is_recognised_as_posted(vendor, connected, _fast_writeback):
    # given: the helpdesk stores the reply but answers after the timeout
    stub, run = connected(vendor)
    stub.faults = [("slow", 1.0)]

    # when
    actions = run_actions_execute(run=run, actions=[ProposedAction(kind=ActionKind.SEND_REPLY)], reply=HOSTILE_REPLY)

    # then: found as already posted (compared as escaped HTML), not posted twice
    assert actions[0].status == Action.Status.DONE, actions[0].error
    assert actions[0].result["reply"] == "already posted"
    assert stub.replies[REMOTE_IDS[vendor]] == [HTML_REPLY[vendor]]


@pytest.mark.django_db
def test_record_only_actions_are_written_in_one_transaction_each_once(django_assert_num_queries):
    # Given a product ticket (recorded only) whose run left one action failed by an earlier attempt
    run = ticket_ingest(
        ticket_in=TicketIn(source="api", external_id="rec-1", body="My grinder hopper arrived cracked."),
        enqueue=False,
    ).run
    Action.objects.create(
        run=run,
        kind=ActionKind.SET_CATEGORY,
        payload={},
        idempotency_key=f"run:{run.pk}:0:{ActionKind.SET_CATEGORY}",
        status=Action.Status.FAILED,
        attempts=1,
        error="earlier failure",
    )

    # When the run's four actions are carried out: which kinds go through an MCP tool (none), one lock-and-read,
    # one update, one insert for the rest
    with django_assert_num_queries(1 + 3 + 2):  # + the savepoint and its release (the test's own transaction)
        done = run_actions_execute(run=run, actions=DECISION, reply=REPLY)

    # Then every action is done exactly once, the failed one finished in place, none sent anywhere
    assert [(a.kind, a.status) for a in done] == [(p.kind, Action.Status.DONE) for p in DECISION]
    rows = list(Action.objects.filter(run=run).order_by("idempotency_key").values_list("kind", "status", "attempts"))
    assert sorted(rows) == sorted(
        [("set_category", "done", 2), ("set_priority", "done", 1), ("send_reply", "done", 1), ("solve", "done", 1)]
    )
    assert Action.objects.get(run=run, kind="send_reply").payload["body"] == REPLY
    assert all(a.result == {"recorded": True, "kind": a.kind, "ticket": run.ticket_id} for a in done)

    # And a second call changes nothing
    before = list(Action.objects.filter(run=run).values_list("pk", "status", "attempts", "executed_at"))
    run_actions_execute(run=run, actions=DECISION, reply=REPLY)
    assert list(Action.objects.filter(run=run).values_list("pk", "status", "attempts", "executed_at")) == before
