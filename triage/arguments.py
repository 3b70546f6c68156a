"""Tool arguments: taken from the ticket (or the action) by plain code, then gated before any tool call.

No model picks a tool's arguments. Each argument has a source (an admin's mapping, else guessed from the
argument's name): the order number written in the ticket, the requester's e-mail, the action's idempotency
key, ... The gate (`gate_tool_arguments`, registered with the others in `triage.pipeline.gates`) then checks
them against the tool's own input JSON Schema and against the ticket: an identifier must appear in the
ticket or in the requester's data. A malformed argument never reaches the tool; the ticket goes to a person
with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from triage.contracts import Verdict

TOOL_ARGUMENTS = "tool_arguments"

# The sources an argument can be taken from. Those in TICKET_SOURCES are identifiers the gate looks for in
# the ticket and the requester's data; the others come from the action a person approved, or are ours.
SOURCES = ("order_id", "requester", "ticket_id", "idempotency_key", "amount", "currency", "note")
TICKET_SOURCES = frozenset({"order_id", "requester", "ticket_id"})
CONST = "const:"

# What an argument is most likely to mean, by its name: a mapping an admin leaves empty is guessed from these.
_NAME_SOURCES = (
    (re.compile(r"^(order|order_?(id|number|no|ref|reference))$", re.I), "order_id"),
    (re.compile(r"^(customer_?)?e_?mail(_address)?$|^requester$", re.I), "requester"),
    (re.compile(r"^(ticket|ticket_?id)$", re.I), "ticket_id"),
    (re.compile(r"^idempotency_?key$", re.I), "idempotency_key"),
    (re.compile(r"^amount$", re.I), "amount"),
    (re.compile(r"^currency$", re.I), "currency"),
    (re.compile(r"^(reason|note|comment)$", re.I), "note"),
)

# An order reference as customers write it: after "order" (number/no./#/id), or after "#", or a prefixed
# code such as A-10423. Bounded quantifiers only, so the pattern runs in linear time on hostile text.
ORDER_REFERENCE = (
    re.compile(
        r"\border\s{0,3}(?:number|no\.?|nr\.?|id|ref(?:erence)?)?\s{0,3}[:#]?\s{0,3}([A-Za-z]{0,4}-?\d{3,12})\b", re.I
    ),
    re.compile(r"#\s?([A-Za-z]{0,4}-?\d{3,12})\b"),
    re.compile(r"\b([A-Z]{1,4}-\d{3,12})\b"),
)


def order_reference(text: str) -> str | None:
    """The first order reference in `text`, as written (the tool's schema decides whether it is well formed)."""
    for pattern in ORDER_REFERENCE:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def guessed_sources(schema: Mapping[str, Any]) -> dict[str, str]:
    """A source for each property of the tool's input schema whose name says what it is."""
    guessed: dict[str, str] = {}
    for name in schema.get("properties") or {}:
        for pattern, source in _NAME_SOURCES:
            if pattern.match(name):
                guessed[name] = source
                break
    return guessed


@dataclass(frozen=True)
class TicketFacts:
    """What arguments may be taken from and checked against: the ticket, its requester's data, the action."""

    text: str
    requester: str = ""
    ticket_id: str = ""
    requester_data: tuple[str, ...] = ()  # the requester's other tickets, an earlier look-up's answer
    idempotency_key: str = ""
    amount: Decimal | None = None
    currency: str = ""
    note: str = ""


@dataclass(frozen=True)
class ArgumentPlan:
    """The arguments a tool would be called with, where each came from, and what could not be filled."""

    arguments: dict[str, Any]
    sources: dict[str, str]
    problems: list[str] = field(default_factory=list)


def arguments_for(*, schema: Mapping[str, Any], sources: Mapping[str, str], facts: TicketFacts) -> ArgumentPlan:
    """The tool's arguments from `sources` (an admin's {argument: source}, else guessed from the names).

    A source with nothing to give (no order number in the ticket, no amount on the action) leaves the
    argument out: a required one then fails the schema, which names it.
    """
    mapping = dict(sources) if sources else guessed_sources(schema)
    arguments: dict[str, Any] = {}
    problems: list[str] = []
    for name, source in mapping.items():
        if source.startswith(CONST):
            arguments[name] = source[len(CONST) :]
            continue
        if source not in SOURCES:
            problems.append(f"argument {name!r} has an unknown source {source!r}")
            continue
        value = _value(source, facts)
        if value is not None and value != "":
            arguments[name] = value
    return ArgumentPlan(arguments=arguments, sources=mapping, problems=problems)


def _value(source: str, facts: TicketFacts) -> Any:
    if source == "order_id":
        return order_reference(facts.text)
    if source == "amount":
        return float(facts.amount) if facts.amount is not None else None
    return {
        "requester": facts.requester,
        "ticket_id": facts.ticket_id,
        "idempotency_key": facts.idempotency_key,
        "currency": facts.currency,
        "note": facts.note,
    }[source]


def gate_tool_arguments(
    *, tool: str, schema: Mapping[str, Any], plan: ArgumentPlan, facts: TicketFacts, step: str
) -> Verdict:
    """The arguments satisfy the tool's input JSON Schema, and every identifier in them is the customer's.

    Schema: the tool's own (any JSON Schema draft it declares, formats checked). Ticket: a value taken as an
    identifier (order number, e-mail, ticket id) must appear in the ticket, or in the requester's data (their
    other tickets, an earlier look-up's answer); an order number that is nowhere in what the customer wrote
    fails, whatever produced it.
    """
    problems = list(plan.problems)
    try:
        validator_cls = validator_for(schema)
        validator_cls.check_schema(schema)
    except SchemaError as exc:
        problems.append(f"the tool's input schema is invalid ({exc.message})")
    else:
        validator = validator_cls(schema, format_checker=FormatChecker())
        for error in sorted(validator.iter_errors(plan.arguments), key=lambda e: list(map(str, e.absolute_path))):
            where = ".".join(str(p) for p in error.absolute_path) or "arguments"
            problems.append(f"{where}: {error.message}")
    evidence = _evidence(facts)
    by_name = guessed_sources({"properties": dict.fromkeys(plan.arguments)})
    for name, value in plan.arguments.items():
        # An identifier by its source or by its name: an order number an admin typed in is checked too.
        identifier = plan.sources.get(name) in TICKET_SOURCES or by_name.get(name) in TICKET_SOURCES
        if identifier and isinstance(value, str) and value.lower() not in evidence:
            problems.append(f"{name} {value!r} appears neither in the ticket nor in the requester's data")
    shown = {k: v for k, v in plan.arguments.items() if plan.sources.get(k) != "idempotency_key"}
    if problems:
        return Verdict(
            gate=TOOL_ARGUMENTS,
            step=step,
            passed=False,
            reason=f"The arguments for tool {tool} were refused before the call: " + "; ".join(problems[:5]) + ".",
            details={"tool": tool, "arguments": shown, "problems": problems},
        )
    return Verdict(
        gate=TOOL_ARGUMENTS,
        step=step,
        passed=True,
        reason=f"The arguments for tool {tool} match its input schema and the ticket.",
        details={"tool": tool, "arguments": shown},
    )


def _evidence(facts: TicketFacts) -> str:
    parts: Iterable[str] = (facts.text, facts.requester, facts.ticket_id, *facts.requester_data)
    return "\n".join(parts).lower()
