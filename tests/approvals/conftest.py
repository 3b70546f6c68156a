"""Fixtures for the staff app's tests: staff users with the real roles, and runs in known states
(built by `approvals.testing`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission

from approvals.models import ApprovalRequest
from approvals.testing import build_run
from triage.models import Ticket

AGENT_PERMISSIONS = [
    "view_approvalrequest", "change_approvalrequest", "add_decision", "view_decision", "view_ticket",
    "change_ticket", "view_pipelinerun", "view_steprun", "view_action",
]
PASSWORD = "s3cret-pass-for-tests"


@pytest.fixture
def make_user(db, django_user_model) -> Callable[..., Any]:
    """A user; `role` "agent" joins the Agents group, "money" adds approvals.approve_money."""

    def _make(username: str, *, roles: tuple[str, ...] = ("agent",), staff: bool = True, superuser: bool = False):
        user = django_user_model.objects.create_user(username=username, password=PASSWORD, is_staff=staff,
                                                     is_superuser=superuser)
        if "agent" in roles:
            agents, _ = Group.objects.get_or_create(name="Agents")
            agents.permissions.set(Permission.objects.filter(
                content_type__app_label__in=["approvals", "triage"], codename__in=AGENT_PERMISSIONS))
            user.groups.add(agents)
        if "viewer" in roles:
            user.user_permissions.add(*Permission.objects.filter(
                content_type__app_label__in=["approvals", "triage"],
                codename__in=["view_approvalrequest", "view_ticket", "view_pipelinerun"]))
        if "money" in roles:
            user.user_permissions.add(Permission.objects.get(codename="approve_money", content_type__app_label="approvals"))
        return user

    return _make


@pytest.fixture
def agent(make_user):
    return make_user("agent1")


@pytest.fixture
def money_agent(make_user):
    return make_user("senior1", roles=("agent", "money"))


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client


@pytest.fixture
def paused(db) -> Callable[..., ApprovalRequest]:
    """An open approval request for an ordinary (or, with money=True, a money) ticket."""

    def _paused(body: str = "Where is my order? It has been two weeks.", **kwargs: Any) -> ApprovalRequest:
        if kwargs.get("money") and "category" not in kwargs:
            kwargs["category"] = "refund_request"
        _, _, approval = build_run(body=body, **kwargs)
        assert approval is not None
        return approval

    return _paused


@pytest.fixture
def auto_handled(db) -> Callable[..., Ticket]:
    def _auto(body: str = "How do I reset my password?", **kwargs: Any) -> Ticket:
        ticket, _, _ = build_run(body=body, auto=True, category=kwargs.pop("category", "account_access"), **kwargs)
        return ticket

    return _auto
