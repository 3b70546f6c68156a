"""The tool step's domain: which MCP tool grounds a category's drafts or carries out an action, with which
arguments, and on what conditions.

- A look-up (`lookup_call`) runs in the chain's `lookup` step: read-only tools only, arguments from the
  ticket, gated (`triage.arguments`), its answer handed to the draft as evidence.
- An action tool (`action_tool_write`) is a write-back: `triage.writeback` carries a run's action out
  through it when the action's kind is mapped to a tool. A money-moving kind runs only from a decision by a
  person who holds the money permission now; the action's idempotency key goes to the tool as an argument
  (when its schema has one) and in the request's `_meta`, and comes back recorded with the result.

MCP itself (sessions, transports, the SDK) is `integrations.mcp`'s; nothing here speaks the protocol.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from integrations.mcp.client import IDEMPOTENCY_META_KEY, ToolCallFailed, ToolOutcome
from integrations.mcp.registry import mcp_tool_call
from integrations.models import McpTool
from integrations.retry import wait_seconds
from triage.arguments import ArgumentPlan, TicketFacts, arguments_for, gate_tool_arguments
from triage.contracts import MONEY_ACTIONS, Resolution, ToolLookup, Verdict
from triage.models import Action, ActionTool, Category, LookupTool, StepRun, Ticket
from triage.permissions import money_permitted

logger = logging.getLogger(__name__)


class ToolRefused(RuntimeError):
    """A tool call refused before it was made (arguments, permission); `verdict` says why, for a person."""

    def __init__(self, reason: str, verdict: Verdict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.verdict = verdict


# --- reads ------------------------------------------------------------------------------------------


def lookup_tool_for(*, category: Category | None) -> LookupTool | None:
    """The active look-up mapped to `category` (read with it by `categories_by_label`: no query here)."""
    if category is None:
        return None
    try:
        mapping = category.lookup
    except ObjectDoesNotExist:
        return None
    return mapping if mapping.active and mapping.tool.server.active else None


def action_tool_for(*, kind: str) -> ActionTool | None:
    """The active tool mapped to action kind `kind`, with its server."""
    return ActionTool.objects.select_related("tool__server").filter(kind=kind, active=True).first()


def ticket_facts(*, ticket: Ticket, action: Action | None = None, lookups: tuple[str, ...] = ()) -> TicketFacts:
    """What a tool's arguments come from and are checked against: the ticket, the requester's other tickets
    (their data), earlier look-up answers, and the action a person approved."""
    text = f"{ticket.subject}\n{ticket.body}"
    history: tuple[str, ...] = ()
    if ticket.requester:
        history = tuple(
            f"{s}\n{b}"
            for s, b in Ticket.objects.filter(requester=ticket.requester)
            .exclude(pk=ticket.pk)
            .order_by("-created_at")
            .values_list("subject", "body")[:20]
        )
    payload = action.payload if action is not None else {}
    amount = payload.get("amount")
    return TicketFacts(
        text=text,
        requester=ticket.requester,
        ticket_id=ticket.external_id,
        requester_data=history + lookups,
        idempotency_key=action.idempotency_key if action is not None else "",
        amount=Decimal(str(amount)) if amount is not None else None,
        currency=str(payload.get("currency") or ""),
        note=str(payload.get("note") or "")[:500],
    )


# --- look-ups (the chain's lookup step) -----------------------------------------------------------------


def lookup_plan(*, mapping: LookupTool, ticket: Ticket) -> tuple[ArgumentPlan, Verdict]:
    """The look-up's arguments from the ticket, and the argument gate's verdict on them."""
    tool = mapping.tool
    facts = ticket_facts(ticket=ticket)
    plan = arguments_for(schema=tool.input_schema, sources=mapping.arguments, facts=facts)
    verdict = gate_tool_arguments(tool=tool.name, schema=tool.input_schema, plan=plan, facts=facts, step="lookup")
    if not tool.read_only:
        verdict = verdict.model_copy(
            update={
                "passed": False,
                "reason": f"Tool {tool.name} is not marked read-only, so it may not run as a look-up.",
            }
        )
    if not tool.listed:
        verdict = verdict.model_copy(
            update={"passed": False, "reason": f"Tool {tool.name} is no longer listed by its server."}
        )
    return plan, verdict


def lookup_call(*, mapping: LookupTool, plan: ArgumentPlan) -> ToolLookup:
    """Call the look-up (once: the runner retries the step by its policy) and keep its answer as evidence."""
    outcome = mcp_tool_call(tool=mapping.tool, arguments=plan.arguments)
    return ToolLookup(
        server=mapping.tool.server.name,
        tool=mapping.tool.name,
        arguments=plan.arguments,
        result=outcome.structured or {},
        text=outcome.text[:20_000],
    )


# --- action tools (write-backs) -----------------------------------------------------------------------------


def action_tool_write(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """Carry `action` out through the MCP tool its kind is mapped to; the writer `triage.writeback` calls.

    Refused before any call (`ToolRefused`, recorded on the action as FAILED with the reason): a mapping that
    is gone, a money-moving kind without an approved decision by a person who holds the money permission now,
    arguments the gate refuses. Then the call, retried by policy on errors that may pass (TRIAGE_TOOL_ATTEMPTS,
    backoff); what is still failing is raised, recorded FAILED, and retried later by `retry_writebacks` or a
    person on the trace page, always with the same idempotency key.
    """
    mapping = action_tool_for(kind=action.kind)
    if mapping is None:
        raise ToolRefused(f"no active tool is mapped to action {action.kind} any more")
    if action.kind in MONEY_ACTIONS or action.payload.get("amount") is not None:
        _money_decision_check(action=action)
    tool = mapping.tool
    facts = ticket_facts(ticket=ticket, action=action, lookups=_run_lookups(action))
    plan = arguments_for(schema=tool.input_schema, sources=mapping.arguments, facts=facts)
    verdict = gate_tool_arguments(tool=tool.name, schema=tool.input_schema, plan=plan, facts=facts, step="execute")
    if not verdict.passed:
        raise ToolRefused(verdict.reason, verdict)
    outcome = _call_with_retries(tool=tool, plan=plan, key=action.idempotency_key)
    return {
        "tool": tool.name,
        "server": tool.server.name,
        "arguments": {k: v for k, v in plan.arguments.items() if plan.sources.get(k) != "idempotency_key"},
        "idempotency_key": action.idempotency_key,
        "result": outcome.structured if outcome.structured is not None else outcome.text[:5000],
    }


def _money_decision_check(*, action: Action) -> None:
    resolution = Resolution.model_validate(action.run.resolution) if action.run.resolution else None
    if resolution is None or resolution.verdict != "approve":
        raise ToolRefused(f"Refused: {action.kind} moves money and no person approved it; nothing was sent.")
    if not money_permitted(resolution.decided_by):
        raise ToolRefused(
            f"Refused: {action.kind} moves money and the decision was not taken by a person who holds the "
            "money-approval permission now; nothing was sent."
        )


def _run_lookups(action: Action) -> tuple[str, ...]:
    """Earlier look-up answers of the action's run: the requester's data an argument may come from."""
    outputs = StepRun.objects.filter(run=action.run_id, step="lookup", status=StepRun.Status.SUCCEEDED).values_list(
        "output", flat=True
    )
    return tuple(ToolLookup.model_validate(o).facts for o in outputs if isinstance(o, dict) and "tool" in o)


def _call_with_retries(*, tool: McpTool, plan: ArgumentPlan, key: str) -> ToolOutcome:
    attempts = max(1, int(getattr(settings, "TRIAGE_TOOL_ATTEMPTS", 3)))
    base = float(getattr(settings, "TRIAGE_TOOL_BACKOFF", 0.5))
    for attempt in range(1, attempts + 1):
        try:
            return mcp_tool_call(tool=tool, arguments=plan.arguments, meta={IDEMPOTENCY_META_KEY: key})
        except ToolCallFailed as exc:
            if not exc.retryable or attempt == attempts:
                raise
            logger.warning("tool %s for %s failed (attempt %s of %s): %s", tool.name, key, attempt, attempts, exc)
            time.sleep(wait_seconds(attempt=attempt, error=exc, base=base) * settings.TRIAGE_BACKOFF_SCALE)
    raise AssertionError("unreachable")  # pragma: no cover
