"""Tool arguments from the ticket, and the gate before every tool call (pure functions: no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from triage.arguments import ArgumentPlan, TicketFacts, arguments_for, gate_tool_arguments, order_reference

REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": r"^A-\d{4,8}$"},
        "idempotency_key": {"type": "string", "minLength": 8},
        "amount": {"type": "number", "minimum": 0},
        "email": {"type": "string", "format": "email"},
    },
    "required": ["order_id", "idempotency_key"],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where is my order A-10423? It is late.", "A-10423"),
        ("my order #10423 never came", "10423"),
        ("Order number: A-555123 arrived broken", "A-555123"),
        ("see #A-20577 please", "A-20577"),
        ("I was charged twice for A-20577", "A-20577"),
        ("Where is my parcel?", None),
    ],
)
def test_order_reference_is_taken_as_the_customer_wrote_it(text, expected):
    assert order_reference(text) == expected


def test_arguments_are_guessed_from_their_names_when_no_mapping_is_given():
    facts = TicketFacts(
        text="Refund order A-10423 please",
        requester="kim@example.com",
        idempotency_key="run:1:3:refund",
        amount=Decimal("12.50"),
    )

    plan = arguments_for(schema=REFUND_SCHEMA, sources={}, facts=facts)

    assert plan.arguments == {
        "order_id": "A-10423",
        "idempotency_key": "run:1:3:refund",
        "amount": 12.5,
        "email": "kim@example.com",
    }


def test_well_formed_arguments_from_the_ticket_pass():
    facts = TicketFacts(text="Refund order A-10423 please", requester="kim@example.com", idempotency_key="run:1:3:r")
    plan = arguments_for(schema=REFUND_SCHEMA, sources={}, facts=facts)

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert verdict.passed, verdict.reason
    assert "idempotency_key" not in verdict.details["arguments"]


def test_a_value_that_breaks_the_tools_schema_fails_with_the_reason():
    facts = TicketFacts(text="my order #10423 never came", idempotency_key="run:1:3:refund")
    plan = arguments_for(schema=REFUND_SCHEMA, sources={}, facts=facts)

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert not verdict.passed
    assert "order_id: '10423' does not match '^A-\\\\d{4,8}$'" in verdict.reason


def test_a_missing_required_argument_fails():
    facts = TicketFacts(text="Where is my parcel?", idempotency_key="run:1:3:refund")
    plan = arguments_for(schema=REFUND_SCHEMA, sources={}, facts=facts)

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert not verdict.passed and "'order_id' is a required property" in verdict.reason


def test_an_order_id_not_in_the_ticket_nor_the_requesters_data_fails_whatever_produced_it():
    facts = TicketFacts(text="Refund order A-10423 please", idempotency_key="run:1:3:refund")
    plan = ArgumentPlan(
        arguments={"order_id": "A-99999", "idempotency_key": "run:1:3:refund"},
        sources={"order_id": "const:A-99999", "idempotency_key": "idempotency_key"},
    )

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert not verdict.passed
    assert "order_id 'A-99999' appears neither in the ticket nor in the requester's data" in verdict.reason


def test_an_order_id_from_the_requesters_earlier_ticket_passes():
    facts = TicketFacts(
        text="Refund my last order please",
        requester_data=("Order A-20577 arrived broken",),
        idempotency_key="run:1:3:refund",
    )
    plan = ArgumentPlan(
        arguments={"order_id": "A-20577", "idempotency_key": "run:1:3:refund"},
        sources={"order_id": "const:A-20577", "idempotency_key": "idempotency_key"},
    )

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert verdict.passed, verdict.reason


def test_a_format_the_schema_declares_is_checked():
    facts = TicketFacts(text="Refund order A-10423 please", requester="not-an-address", idempotency_key="run:1:3:r")
    plan = arguments_for(schema=REFUND_SCHEMA, sources={}, facts=facts)

    verdict = gate_tool_arguments(tool="create_refund", schema=REFUND_SCHEMA, plan=plan, facts=facts, step="execute")

    assert not verdict.passed and "email: 'not-an-address' is not a 'email'" in verdict.reason


def test_an_unknown_source_and_an_invalid_schema_are_reasons_too():
    facts = TicketFacts(text="order A-10423")
    plan = arguments_for(schema={"type": "object"}, sources={"order_id": "the model's guess"}, facts=facts)

    verdict = gate_tool_arguments(tool="t", schema={"type": "no-such-type"}, plan=plan, facts=facts, step="lookup")

    assert not verdict.passed
    assert "unknown source" in verdict.reason and "input schema is invalid" in verdict.reason
