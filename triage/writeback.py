"""Where actions land when a ticket's source has no helpdesk to write back to (API, demo)."""

from __future__ import annotations

from typing import Any

from triage.models import Action, Ticket


def record_only(*, action: Action, ticket: Ticket) -> dict[str, Any]:
    """The action is carried out inside the product: recorded on the ticket's run, nothing sent out."""
    return {"recorded": True, "kind": action.kind, "ticket": ticket.pk}
