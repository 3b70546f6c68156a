"""The generic ticket API: bearer tokens, create, read, OpenAPI."""

from __future__ import annotations

import hashlib
import json

import pytest

from integrations.models import ApiToken
from triage.models import PipelineRun, Ticket

TOKEN = "tok_live_7d1f0a9e4b2c"


@pytest.fixture
def api_token(db):
    return ApiToken.objects.create(name="crm", digest=hashlib.sha256(TOKEN.encode()).hexdigest(), last4=TOKEN[-4:], source="api:crm")


def post(client, data, *, token=TOKEN, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = raw if raw is not None else json.dumps(data)
    return client.post("/api/tickets", data=body, content_type="application/json", headers=headers)


def test_create_returns_201_with_the_ticket_and_a_queued_run(client, api_token, settings):
    settings.TRIAGE_QUEUE_BACKEND = "none"

    response = post(client, {"external_id": "crm-1", "subject": "Late parcel", "body": "Where is my parcel?",
                             "requester": "Kim@Example.com", "tags": ["crm"]})

    assert response.status_code == 201, response.content
    data = response.json()
    ticket = Ticket.objects.get(pk=data["id"])
    assert (ticket.source, ticket.external_id, ticket.requester, ticket.tags) == ("api:crm", "crm-1", "kim@example.com", ["crm"])
    assert data["outcome"]["status"] == PipelineRun.Status.QUEUED
    assert ApiToken.objects.get(pk=api_token.pk).last_used_at is not None


def test_create_twice_returns_the_same_ticket_and_no_second_run(client, api_token):
    first = post(client, {"external_id": "crm-2", "body": "Hello"})
    second = post(client, {"external_id": "crm-2", "body": "Hello"})

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert PipelineRun.objects.filter(ticket_id=first.json()["id"]).count() == 1


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_401_and_nothing_created(client, api_token, token):
    before = Ticket.objects.count()

    response = post(client, {"external_id": "crm-3", "body": "Hello"}, token=token)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Ticket.objects.count() == before


def test_inactive_token_is_refused(client, api_token):
    api_token.active = False
    api_token.save()

    assert post(client, {"external_id": "crm-4", "body": "Hello"}).status_code == 401


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"body": "Hello"}, "external_id"),
        ({"external_id": "x"}, "body"),
        ({"external_id": "x", "body": "Hi", "requester": "not-an-email"}, "requester"),
        ({"external_id": "x", "body": "Hi", "colour": "red"}, "colour"),
        ([1, 2], "(root)"),
    ],
)
def test_invalid_input_is_400_naming_the_field(client, api_token, data, field):
    before = Ticket.objects.count()

    response = post(client, data)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert Ticket.objects.count() == before


def test_malformed_json_is_400_and_oversized_body_413(client, api_token, settings):
    settings.TRIAGE_WEBHOOK_MAX_BYTES = 1000

    malformed = post(client, None, raw=b'{"external_id": ')
    oversized = post(client, {"external_id": "big", "body": "x" * 2000})

    assert (malformed.status_code, oversized.status_code) == (400, 413)


def test_get_returns_status_and_outcome(client, api_token, settings, django_capture_on_commit_callbacks):
    # given: a ticket whose run went through the chain
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    with django_capture_on_commit_callbacks(execute=True):
        created = post(client, {"external_id": "crm-5", "subject": "Password", "body": "How do I reset my password?"})

    # when
    response = client.get(f"/api/tickets/{created.json()['id']}", headers={"Authorization": f"Bearer {TOKEN}"})

    # then
    assert response.status_code == 200
    data = response.json()
    assert data["external_id"] == "crm-5"
    assert data["outcome"]["status"] in ("completed", "waiting", "failed")
    assert data["status"] != "new"


def test_get_needs_a_token_and_an_existing_ticket(client, api_token):
    assert client.get("/api/tickets/1").status_code == 401
    assert client.get("/api/tickets/999999999", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_openapi_document_describes_the_endpoints(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/tickets", "/api/tickets/{id}"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # the request schema's fields are exactly what the contract accepts (besides the source we set)
    from triage.contracts import TicketIn

    assert set(doc["components"]["schemas"]["TicketIn"]["properties"]) == set(TicketIn.model_fields) - {"source"}
