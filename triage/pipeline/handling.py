"""What handling a ticket means, decided by code from its category and text, never by a model:
its priority and the actions that carry it out (money categories carry a money action)."""

from __future__ import annotations

import re
from typing import Protocol

from triage.contracts import ActionKind, Priority, ProposedAction


class CategoryInfo(Protocol):
    label: str
    name: str
    money: bool
    description: str


# A word a customer uses when a ticket cannot wait. Linear: a plain alternation between word boundaries.
URGENT = re.compile(r"\b(urgent|asap|immediately|right now|emergency|fraud|stolen|hacked|locked out)\b", re.I)


def priority_for(*, text: str, stated: Priority = Priority.NORMAL) -> Priority:
    """The stated priority (a model's, or normal), raised to high when the customer says it is urgent."""
    if stated in (Priority.LOW, Priority.NORMAL) and URGENT.search(text):
        return Priority.HIGH
    return stated


def proposed_actions_for(*, category: CategoryInfo | None, priority: Priority) -> list[ProposedAction]:
    """What handling a ticket of this category means. Money categories carry a money action."""
    if category is None:
        return []
    actions = [
        ProposedAction(kind=ActionKind.SET_CATEGORY, note=category.label),
        ProposedAction(kind=ActionKind.SET_PRIORITY, note=str(priority)),
        ProposedAction(kind=ActionKind.SEND_REPLY),
    ]
    if category.money:
        kind = ActionKind.CANCEL_ORDER if "cancel" in category.label.lower() else ActionKind.REFUND
        actions.append(ProposedAction(kind=kind, note=f"requested in a '{category.label}' ticket"))
    else:
        actions.append(ProposedAction(kind=ActionKind.SOLVE))
    return actions
