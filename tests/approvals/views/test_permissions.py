"""Every denied path of the staff app: refused, and nothing changed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from approvals.models import Decision
from tests.factories import snapshot
from triage.models import Ticket

pytestmark = pytest.mark.django_db


def decide_url(approval) -> str:
    return reverse("approvals:decide", args=[approval.pk])


@pytest.mark.parametrize("url_name", ["approvals:inbox", "reports"])
def test_signed_out_visitors_are_sent_to_sign_in(client, url_name):
    response = client.get(reverse(url_name))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_signed_out_decision_is_sent_to_sign_in_and_changes_nothing(client, paused):
    approval = paused()
    before = snapshot(approval)

    response = client.post(decide_url(approval), {"verdict": "approve"})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert snapshot(approval) == before


def test_a_signed_out_htmx_request_redirects_the_whole_page(client, paused):
    approval = paused()

    response = client.post(decide_url(approval), {"verdict": "approve"}, headers={"HX-Request": "true"})

    assert response.status_code == 200 and response["HX-Redirect"].startswith("/accounts/login/")
    assert snapshot(approval)["decisions"] == 0


def test_signed_in_users_who_are_not_staff_see_nothing(client, make_user, paused):
    paused()
    client.force_login(make_user("customer", roles=(), staff=False))

    for url in (reverse("approvals:inbox"), reverse("reports")):
        assert client.get(url).status_code == 403


def test_staff_without_the_inbox_permission_cannot_read_it(client, make_user):
    client.force_login(make_user("bookkeeper", roles=()))

    assert client.get(reverse("approvals:inbox")).status_code == 403


def test_a_read_only_viewer_sees_the_inbox_without_buttons_and_cannot_decide(client, make_user, paused):
    approval = paused()
    client.force_login(make_user("viewer", roles=("viewer",)))
    before = snapshot(approval)

    page = client.get(reverse("approvals:inbox")).content.decode()
    response = client.post(decide_url(approval), {"verdict": "approve"})

    assert f'id="approval-{approval.pk}"' in page and 'data-action="approve"' not in page
    assert response.status_code == 403
    assert snapshot(approval) == before


def test_an_agent_sees_a_money_ticket_but_not_its_approve_button(agent_client, paused):
    money = paused("My grinder arrived broken, I want a refund of $80.", money=True)
    ordinary = paused()

    page = agent_client.get(reverse("approvals:inbox")).content.decode()

    money_card = page.split(f'id="approval-{money.pk}"')[1].split("</article>")[0]
    ordinary_card = page.split(f'id="approval-{ordinary.pk}"')[1].split("</article>")[0]
    assert "data-money-locked" in money_card and 'data-action="approve"' not in money_card
    assert 'data-action="edit"' not in money_card and 'data-action="reject"' in money_card
    assert 'data-action="approve"' in ordinary_card


@pytest.mark.parametrize("verdict", ["approve", "edit"])
def test_an_agent_approving_a_money_ticket_is_refused_403_and_nothing_changes(agent_client, paused, verdict):
    approval = paused("My grinder arrived broken, I want a refund of $80.", money=True)
    before = snapshot(approval)

    response = agent_client.post(
        decide_url(approval), {"verdict": verdict, "reply": "Refunded.", "category": "order_status"}
    )

    assert response.status_code == 403
    assert "money-approval permission" in response.content.decode()
    assert snapshot(approval) == before


def test_an_agent_changing_a_money_ticket_to_an_ordinary_category_is_still_refused(agent_client, paused):
    approval = paused("Refund me $80 now.", money=True)
    before = snapshot(approval)

    response = agent_client.post(
        decide_url(approval), {"verdict": "edit", "category": "order_status"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 403
    body = response.content.decode()
    assert "<html" not in body and f'id="approval-{approval.pk}"' in body and 'data-status="403"' in body
    assert snapshot(approval) == before


def test_an_agent_may_reject_a_money_ticket_because_rejecting_moves_no_money(agent_client, paused):
    approval = paused("Refund me $80 now.", money=True)

    response = agent_client.post(decide_url(approval), {"verdict": "reject", "reason": "Duplicate of #12"})

    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == "rejected"


def test_someone_with_the_money_permission_approves_a_money_ticket(client, money_agent, paused):
    approval = paused("Refund me $80 now.", money=True)
    client.force_login(money_agent)

    response = client.post(decide_url(approval), {"verdict": "approve"})

    assert response.status_code == 302
    assert Decision.objects.get(approval=approval).actor == money_agent


def test_a_decision_without_the_csrf_token_is_refused_and_changes_nothing(agent, paused):
    approval = paused()
    before = snapshot(approval)
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)

    response = client.post(decide_url(approval), {"verdict": "approve"})

    assert response.status_code == 403
    assert snapshot(approval) == before


def test_marking_mishandled_needs_the_change_ticket_permission(client, make_user, auto_handled):
    ticket = auto_handled()
    client.force_login(make_user("viewer", roles=("viewer",)))

    response = client.post(reverse("ticket-mishandled", args=[ticket.pk]))

    assert response.status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).mishandled_at is None


def test_the_reports_need_the_run_view_permission(client, make_user):
    user = make_user("inboxonly", roles=())
    user.user_permissions.add(Permission.objects.get(codename="view_approvalrequest"))
    client.force_login(user)

    assert client.get(reverse("reports")).status_code == 403
    assert client.get(reverse("approvals:inbox")).status_code == 200
