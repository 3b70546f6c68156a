"""What the ticket API answers, as contracts: `TicketOut` for `POST /api/tickets` and `GET /api/tickets/{id}`.

The statuses are the models' own choices (Django's TextChoices are enums, which pydantic validates and
describes), the action kinds the hand-off contract's; the OpenAPI document is built from these models'
JSON schemas, so the document and what the code sends cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from triage.contracts import ActionKind
from triage.models import Action, PipelineRun, Ticket


def _enum(choices: type[Enum]) -> WithJsonSchema:
    """Inline the enumeration in the schema (its values), rather than a shared, oddly named definition."""
    return WithJsonSchema({"type": "string", "enum": [str(member.value) for member in choices]})


KindOut = Annotated[ActionKind, _enum(ActionKind)]
ActionStatusOut = Annotated[Action.Status, _enum(Action.Status)]
RunStatusOut = Annotated[PipelineRun.Status, _enum(PipelineRun.Status)]
RouteOut = Annotated[PipelineRun.Route, _enum(PipelineRun.Route)]
TicketStatusOut = Annotated[Ticket.Status, _enum(Ticket.Status)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionOut(_Out):
    kind: KindOut
    status: ActionStatusOut
    error: str | None
    payload: dict[str, Any]


class RunOutcome(_Out):
    """The ticket's latest run: where it went and what was carried out."""

    run: int
    status: RunStatusOut
    route: RouteOut | None
    error: str | None
    actions: list[ActionOut]


class TicketOut(_Out):
    id: int
    source: str
    external_id: str
    subject: str
    status: TicketStatusOut
    created_at: datetime
    outcome: RunOutcome | None


def ticket_out(ticket: Ticket) -> dict[str, Any]:
    """The API's answer for `ticket`, validated against `TicketOut`, ready for JSON."""
    run = ticket.runs.order_by("-pk").first()
    outcome = None
    if run is not None:
        outcome = RunOutcome(
            run=run.pk,
            status=PipelineRun.Status(run.status),
            route=PipelineRun.Route(run.route) if run.route else None,
            error=run.error or None,
            actions=[
                ActionOut(
                    kind=ActionKind(a.kind), status=Action.Status(a.status), error=a.error or None, payload=a.payload
                )
                for a in run.actions.order_by("pk")
            ],
        )
    return TicketOut(
        id=ticket.pk,
        source=ticket.source,
        external_id=ticket.external_id,
        subject=ticket.subject,
        status=Ticket.Status(ticket.status),
        created_at=ticket.created_at,
        outcome=outcome,
    ).model_dump(mode="json")
