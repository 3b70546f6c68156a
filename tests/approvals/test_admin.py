"""The approvals admin: decisions are an audit, shown but never changed or deleted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals.models import Decision
from approvals.services import approval_decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", roles=(), superuser=True))
    return client


def test_decisions_are_shown_in_admin_but_cannot_be_changed_or_deleted(admin_client, agent, paused):
    approval = paused()
    decision = approval_decide(approval_id=approval.pk, actor=agent, verdict="reject", reason="spam")

    view = admin_client.get(reverse("admin:approvals_decision_change", args=[decision.pk]))
    change = admin_client.post(reverse("admin:approvals_decision_change", args=[decision.pk]), {"reason": "nothing"})
    delete = admin_client.post(reverse("admin:approvals_decision_delete", args=[decision.pk]), {"post": "yes"})

    assert view.status_code == 200 and "spam" in view.content.decode()
    assert change.status_code == 403 and delete.status_code == 403
    assert Decision.objects.get(pk=decision.pk).reason == "spam"
