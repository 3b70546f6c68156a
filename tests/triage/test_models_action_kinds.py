"""Action kinds have one home, the contract's `ActionKind`: the stored choices and the API document follow it."""

from __future__ import annotations

from triage.contracts import MONEY_ACTIONS, ActionKind, ProposedAction, stored_action_moves_money
from triage.models import Action


def test_the_stored_kinds_are_the_contract_kinds():
    assert Action.Kind.choices == [(k.value, k.name.replace("_", " ").title()) for k in ActionKind]


def test_a_stored_action_moves_money_by_the_contract_rule():
    assert {k for k in ActionKind if stored_action_moves_money({"kind": k.value})} == MONEY_ACTIONS
    assert stored_action_moves_money(ProposedAction(kind=ActionKind.SEND_REPLY, amount=0).model_dump(mode="json"))
    assert not stored_action_moves_money({"kind": "send_reply", "amount": None})
    # One that no longer parses is treated as moving money: a person with the permission decides.
    assert stored_action_moves_money({"kind": "teleport"})
