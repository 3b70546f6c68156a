"""Exactly once when the worker dies between an external call and its record: every action kind, every helpdesk.

The kill is simulated by raising (a BaseException, as SystemExit or a signal would) right after the writer's
call returned: the action stays claimed and unrecorded (IN_FLIGHT), as a worker killed -9 at that moment
leaves it. The resume goes through `reconcile`: a reply is read back, a set operation (tags, priority,
status) is carried out again because doing so changes nothing, Intercom's close is read back because it is
not such a set, money actions were never sent, and a writer that can do neither is left for a person.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.helpdesks import VENDORS
from triage.contracts import ActionKind, ProposedAction, TicketIn
from triage.models import Action, PipelineRun
from triage.pipeline.runner import run_pipeline
from triage.services import ticket_ingest
from triage.writeback import HelpdeskWriter, run_actions_execute

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
ACTIONS = [
    ProposedAction(kind=ActionKind.SET_CATEGORY, note="damaged_item"),
    ProposedAction(kind=ActionKind.ADD_TAGS, note="hopper, replacement"),
    ProposedAction(kind=ActionKind.SET_PRIORITY, note="high"),
    ProposedAction(kind=ActionKind.SEND_REPLY),
    ProposedAction(kind=ActionKind.SOLVE),
    ProposedAction(kind=ActionKind.REFUND, amount="18.50", currency="EUR"),
]


class WorkerKilled(BaseException):
    """Not an Exception: nothing in the product catches it, as nothing can catch a kill -9."""


@pytest.fixture(autouse=True)
def _fast_writeback(settings, monkeypatch):
    from integrations.helpdesks.breaker import breakers_forget

    settings.TRIAGE_WRITEBACK_TIMEOUT = 2.0
    settings.TRIAGE_WRITEBACK_BREAKER_COOLDOWN = 0.0
    breakers_forget()
    monkeypatch.setattr("integrations.helpdesks.http._sleep", lambda seconds: None)


class KilledAfter:
    """Makes the helpdesk writer die right after its call for one kind returned (the call reached the helpdesk)."""

    def __init__(self) -> None:
        self.original = HelpdeskWriter.__call__

    def arm(self, kind: str) -> None:
        original = self.original

        def dying(writer, *, action, ticket):
            result = original(writer, action=action, ticket=ticket)
            if action.kind == kind:
                raise WorkerKilled(kind)
            return result

        HelpdeskWriter.__call__ = dying  # type: ignore[method-assign]  # the kill hook, undone by disarm

    def disarm(self) -> None:
        HelpdeskWriter.__call__ = self.original  # type: ignore[method-assign]


@pytest.fixture
def killed_after():
    hook = KilledAfter()
    yield hook
    hook.disarm()


def remote_state(stub, ticket: str) -> tuple:
    return (list(stub.replies[ticket]), sorted(stub.tags[ticket]), stub.priority.get(ticket), stub.status.get(ticket))


def sent_for(stub, key: str) -> int:
    """Write requests the helpdesk received for one action (its key, or its key and a tag name)."""
    keys = [headers.get("Idempotency-Key") or "" for method, _, headers, _ in stub.requests if method != "GET"]
    return sum(1 for sent in keys if sent == key or sent.startswith(key + ":"))


def ingested(source, external_id: str):
    return ticket_ingest(
        ticket_in=TicketIn(source=source.ticket_source, external_id=external_id, body="My hopper arrived cracked."),
        enqueue=False,
    ).run


@pytest.mark.parametrize("kind", [a.kind for a in ACTIONS])
@pytest.mark.parametrize("vendor", VENDORS)
def test_an_action_whose_worker_died_after_the_call_is_carried_out_once_on_resume(
    vendor, kind, helpdesk_source, stub_helpdesk, killed_after
):
    # given: a helpdesk ticket whose run carried out its actions up to `kind`, called the helpdesk for it,
    # and died before recording the answer
    stub = stub_helpdesk(vendor)
    source = helpdesk_source(vendor, base_url=stub.base_url, api_user="7", api_token="api-token-123")
    remote = REMOTE_IDS[vendor]
    run = ingested(source, remote)
    killed_after.arm(kind)
    with pytest.raises(WorkerKilled):
        run_actions_execute(run=run, actions=ACTIONS, reply=REPLY)
    cut = Action.objects.get(run=run, kind=kind)
    assert (cut.status, cut.attempts) == (Action.Status.IN_FLIGHT, 1)
    sent_once = sent_for(stub, cut.idempotency_key)

    # when: the run is resumed and carries out its actions again
    killed_after.disarm()
    done = run_actions_execute(run=run, actions=ACTIONS, reply=REPLY)

    # then: every action is done; those done before the kill were not touched again
    assert [a.status for a in done] == [Action.Status.DONE] * len(ACTIONS)
    position = [a.kind for a in ACTIONS].index(kind)
    assert [a.attempts for a in done[:position]] == [1] * position
    resumed = Action.objects.get(pk=cut.pk)
    assert resumed.attempts == 2
    sent_after = sent_for(stub, cut.idempotency_key)
    if kind == ActionKind.SEND_REPLY:
        # read back: found on the ticket, nothing sent again
        assert resumed.result == {"vendor": vendor, "reply": "already posted", "reconciled": True}
        assert (sent_once, sent_after) == (1, 1)
    elif kind == ActionKind.SOLVE and vendor == "intercom":
        # Intercom's close adds a conversation part each time: read back (state closed), not repeated
        assert resumed.result == {"vendor": "intercom", "status": "solved", "reconciled": True}
        assert (sent_once, sent_after) == (1, 1)
    elif kind == ActionKind.REFUND:
        # never sent to a helpdesk: recorded once, nothing requested for it
        assert resumed.result == {"vendor": vendor, "recorded": True, "kind": "refund"}
        assert (sent_once, sent_after) == (0, 0)
    else:
        # a set operation: carried out again on purpose, because repeating it changes nothing (below)
        assert sent_once >= 1 and sent_after == 2 * sent_once
    assert stub.reply_posts == 1

    # then: the ticket in the helpdesk ends exactly like one whose run was never interrupted
    reference = remote + "0"
    assert [a.status for a in run_actions_execute(run=ingested(source, reference), actions=ACTIONS, reply=REPLY)] == [
        Action.Status.DONE
    ] * len(ACTIONS)
    assert remote_state(stub, remote) == remote_state(stub, reference)
    assert len(stub.replies[remote]) == 1


def recording_writer(*, action, ticket):
    """A writer with no read-back and no idempotency key (an in-house billing hook, say)."""
    recording_writer.calls.append(action.idempotency_key)  # type: ignore[attr-defined]
    if getattr(recording_writer, "die", False):
        raise WorkerKilled(action.kind)
    return {"sent": True}


def test_a_writer_that_cannot_read_back_is_not_called_twice_but_left_for_a_person(
    settings, ingest, money_agent, agent_client
):
    # given: a ticket whose actions go to a writer without `reconcile`, and a decided refund whose worker
    # died right after calling it
    settings.TRIAGE_WRITEBACK_BACKENDS = {"test": "tests.triage.writeback.test_resume.recording_writer"}
    recording_writer.calls = []  # type: ignore[attr-defined]
    run = ingest("Please refund my order 1042, the beans never arrived.", enqueue=False).run
    refund = [ProposedAction(kind=ActionKind.REFUND, amount="18.50", currency="EUR")]
    recording_writer.die = True  # type: ignore[attr-defined]
    with pytest.raises(WorkerKilled):
        run_actions_execute(run=run, actions=refund, reply="")
    recording_writer.die = False  # type: ignore[attr-defined]

    # when: the run resumes its execute step
    again = run_actions_execute(run=run, actions=refund, reply="")

    # then: not called a second time; the action waits for a person, saying why
    action = again[0]
    assert recording_writer.calls == [action.idempotency_key]  # type: ignore[attr-defined]
    assert action.status == Action.Status.UNKNOWN and action.error.startswith("Outcome unknown")

    # when: an agent without the money permission asks to carry it out again, from the trace
    trace = reverse("ticket-trace", args=[run.ticket_id])
    page = agent_client.get(trace).content.decode()
    assert "outcome unknown: check in the helpdesk" in page and "It was not: carry it out" in page
    settle = reverse("action-settle", args=[run.ticket_id, action.pk])
    agent_client.post(settle, {"outcome": "carry_out"})

    # then: refused, nothing changed
    action.refresh_from_db()
    assert action.status == Action.Status.UNKNOWN and len(recording_writer.calls) == 1  # type: ignore[attr-defined]

    # when: a person with the money permission checked the billing system and found it not done
    agent_client.force_login(money_agent)
    response = agent_client.post(settle, {"outcome": "carry_out"})

    # then: carried out once more, now done
    action.refresh_from_db()
    assert response.status_code == 303
    assert action.status == Action.Status.DONE and len(recording_writer.calls) == 2  # type: ignore[attr-defined]
    assert action.attempts == 3


def test_an_unknown_outcome_a_person_confirmed_is_done_without_a_call(settings, ingest, agent_client):
    settings.TRIAGE_WRITEBACK_BACKENDS = {"test": "tests.triage.writeback.test_resume.recording_writer"}
    recording_writer.calls = []  # type: ignore[attr-defined]
    run = ingest("Where is my parcel?", enqueue=False).run
    tag = [ProposedAction(kind=ActionKind.ADD_TAGS, note="parcel")]
    recording_writer.die = True  # type: ignore[attr-defined]
    with pytest.raises(WorkerKilled):
        run_actions_execute(run=run, actions=tag, reply="")
    recording_writer.die = False  # type: ignore[attr-defined]
    action = run_actions_execute(run=run, actions=tag, reply="")[0]

    response = agent_client.post(reverse("action-settle", args=[run.ticket_id, action.pk]), {"outcome": "carried_out"})

    action.refresh_from_db()
    assert response.status_code == 303 and action.status == Action.Status.DONE
    assert action.result["outcome"] == "carried out, checked in the helpdesk"
    assert len(recording_writer.calls) == 1  # type: ignore[attr-defined]


def test_a_resumed_run_with_an_unknown_action_fails_with_the_reason_for_a_person(settings, ingest, money_agent):
    # given: an approved refund whose worker died right after calling a writer that cannot read back
    from approvals.models import ApprovalRequest
    from approvals.services import approval_decide

    settings.TRIAGE_WRITEBACK_BACKENDS = {"test": "tests.triage.writeback.test_resume.recording_writer"}
    recording_writer.calls = []  # type: ignore[attr-defined]
    run = ingest("My grinder arrived with the hopper cracked in two. I want my money back for it.", enqueue=False).run
    assert run_pipeline(run_id=run.pk).status == PipelineRun.Status.WAITING
    approval = ApprovalRequest.objects.get(run=run)
    approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")
    recording_writer.die = True  # type: ignore[attr-defined]
    with pytest.raises(WorkerKilled):
        run_pipeline(run_id=run.pk)
    recording_writer.die = False  # type: ignore[attr-defined]
    [killed] = recording_writer.calls  # type: ignore[attr-defined]

    # when: the run is resumed (its worker is gone; the sweeper hands it back)
    resumed = run_pipeline(run_id=run.pk)

    # then: the interrupted action was not called again (the others were carried out, once each); the run
    # failed with a reason that says what to check
    calls = recording_writer.calls  # type: ignore[attr-defined]
    assert calls.count(killed) == 1 and len(calls) == len(set(calls))
    assert resumed.status == PipelineRun.Status.FAILED
    assert "Outcome unknown, check in the helpdesk" in resumed.error
    unknown = Action.objects.get(run=run, status=Action.Status.UNKNOWN)
    assert unknown.idempotency_key == killed
