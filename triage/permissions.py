"""Who may do what: the inbox staff's group, and the one money permission, checked when a decision is
taken and again when it is carried out."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

# The permission a person needs for a decision that moves money (declared by the approvals app's model).
MONEY_PERMISSION = "approvals.approve_money"


def money_permitted(user_id: int | None) -> bool:
    """Whether user `user_id` exists, is active and holds the money permission now."""
    if user_id is None:
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and user.has_perm(MONEY_PERMISSION)


# What the inbox staff need (app label, codename): work approvals and read tickets and their traces. Not
# the money permission: that one is given to a person, on purpose.
AGENT_PERMISSIONS = (
    ("approvals", "view_approvalrequest"),
    ("approvals", "change_approvalrequest"),
    ("approvals", "add_decision"),
    ("approvals", "view_decision"),
    ("triage", "view_ticket"),
    ("triage", "change_ticket"),
    ("triage", "view_pipelinerun"),
    ("triage", "view_steprun"),
    ("triage", "view_action"),
)
AGENTS_GROUP = "Agents"


def agents_group_ensure() -> Group:
    """The "Agents" group with exactly `AGENT_PERMISSIONS` (created, or its permissions set back)."""
    agents, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in AGENT_PERMISSIONS
    ]
    agents.permissions.set(wanted)
    return agents
