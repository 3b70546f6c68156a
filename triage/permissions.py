"""Who may move money: the one permission, checked when a decision is taken and again when it is carried out."""

from __future__ import annotations

from django.contrib.auth import get_user_model

# The permission a person needs for a decision that moves money (declared by the approvals app's model).
MONEY_PERMISSION = "approvals.approve_money"


def money_permitted(user_id: int | None) -> bool:
    """Whether user `user_id` exists, is active and holds the money permission now."""
    if user_id is None:
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and user.has_perm(MONEY_PERMISSION)
