"""The ticket API's answer is a contract: what is sent validates against it, and the OpenAPI document is built
from it, so the two cannot drift (the hand-written document had missed the `in_flight` action status)."""

from __future__ import annotations

import pytest

from integrations.openapi import openapi_document
from triage.api import TicketOut, ticket_out
from triage.contracts import ActionKind
from triage.models import Action, PipelineRun, Ticket
from triage.pipeline.runner import run_pipeline

pytestmark = pytest.mark.django_db


def test_the_answer_for_a_handled_ticket_validates_against_the_contract(ingest):
    result = ingest(
        "I forgot my password and the reset email never arrives, how do I get back into my account?", enqueue=False
    )
    run_pipeline(run_id=result.run.pk)

    answer = ticket_out(Ticket.objects.get(pk=result.ticket.pk))

    parsed = TicketOut.model_validate(answer)
    assert parsed.id == result.ticket.pk and parsed.status == Ticket.Status.AUTO_HANDLED
    assert parsed.outcome is not None and parsed.outcome.route == PipelineRun.Route.AUTO
    assert [a.kind for a in parsed.outcome.actions] == ["set_category", "set_priority", "send_reply", "solve"]


def test_the_openapi_answer_schemas_list_exactly_the_models_choices():
    schemas = openapi_document()["components"]["schemas"]

    assert schemas["Ticket"]["properties"]["status"]["enum"] == list(Ticket.Status.values)
    assert schemas["RunOutcome"]["properties"]["status"]["enum"] == list(PipelineRun.Status.values)
    assert schemas["ActionOut"]["properties"]["status"]["enum"] == list(Action.Status.values)
    assert "in_flight" in schemas["ActionOut"]["properties"]["status"]["enum"]
    assert schemas["ActionOut"]["properties"]["kind"]["enum"] == [k.value for k in ActionKind]
