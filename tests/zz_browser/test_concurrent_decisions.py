"""Two staff deciding the same item at the same moment, on two real database connections.

It lives with the browser tests because it needs committed rows (a transactional test, which
flushes the database afterwards), and this folder runs last.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from approvals.models import ApprovalRequest, Decision
from approvals.services import AlreadyDecided, approval_decide
from tests.factories import build_run
from triage.models import Action

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_simultaneous_decisions_one_wins_the_other_is_told_and_the_run_acts_once(settings):
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    users = get_user_model()
    first = users.objects.create_user("racer1", is_staff=True)
    second = users.objects.create_user("racer2", is_staff=True)
    _, run, approval = build_run(body="Where is my order?", category="order_status")
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def decide(user, verdict: str) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[user.username] = approval_decide(
                approval_id=approval.pk, actor=user, verdict=verdict, reason="race"
            )
        except AlreadyDecided as exc:
            outcomes[user.username] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=decide, args=(first, "approve")),
        threading.Thread(target=decide, args=(second, "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Which thread wins is a genuine race, so the assertions follow the winner; everything else is exact.
    won = [u for u, o in outcomes.items() if isinstance(o, Decision)]
    told = [o for o in outcomes.values() if isinstance(o, AlreadyDecided)]
    assert len(won) == 1 and len(told) == 1
    assert "already" in told[0].reason and won[0] in told[0].reason
    assert Decision.objects.filter(approval=approval).count() == 1
    status = ApprovalRequest.objects.get(pk=approval.pk).status
    assert status == ("approved" if won == ["racer1"] else "rejected")
    sent = Action.objects.filter(run=run, kind="send_reply").count()
    assert sent == (1 if won == ["racer1"] else 0)
