"""The generic ticket API: bearer tokens, create, read, OpenAPI."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from integrations.models import ApiToken
from tests.integrations.conftest import TOKEN
from triage.models import PipelineRun, Ticket


def post(client, data, *, token=TOKEN, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = raw if raw is not None else json.dumps(data)
    return client.post("/api/tickets", data=body, content_type="application/json", headers=headers)


def test_create_returns_201_with_the_ticket_and_a_queued_run(client, api_token, settings):
    settings.TRIAGE_QUEUE_BACKEND = "none"
    started = timezone.now()

    response = post(
        client,
        {
            "external_id": "crm-1",
            "subject": "Late parcel",
            "body": "Where is my parcel?",
            "requester": "Kim@Example.com",
            "tags": ["crm"],
        },
    )

    assert response.status_code == 201, response.content
    data = response.json()
    ticket = Ticket.objects.get(pk=data["id"])
    assert (ticket.source, ticket.external_id, ticket.requester, ticket.tags) == (
        "api:crm",
        "crm-1",
        "kim@example.com",
        ["crm"],
    )
    assert data["outcome"]["status"] == PipelineRun.Status.QUEUED
    assert started <= ApiToken.objects.get(pk=api_token.pk).last_used_at <= timezone.now()


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
    assert data["status"] == "auto_handled"
    run = PipelineRun.objects.get(ticket_id=data["id"])
    assert {k: data["outcome"][k] for k in ("run", "status", "route", "error")} == {
        "run": run.pk,
        "status": "completed",
        "route": "auto",
        "error": None,
    }
    assert [(a["kind"], a["status"]) for a in data["outcome"]["actions"]] == [
        ("set_category", "done"),
        ("set_priority", "done"),
        ("send_reply", "done"),
        ("solve", "done"),
    ]


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


# --- unstorable text, huge integers, limits (the API client can fix its request: 400 naming the field) ----


def counts() -> tuple[int, int, int]:
    from integrations.models import WebhookDelivery

    return Ticket.objects.count(), PipelineRun.objects.count(), WebhookDelivery.objects.count()


def test_nul_and_lone_surrogates_in_free_text_are_cleaned_and_the_ticket_created(client, api_token):
    # given: NUL in the subject, a lone surrogate (as a JSON escape) in the body, NUL in a tag
    raw = (
        b'{"external_id": "crm-nul", "subject": "Late\\u0000 parcel", "body": "Where\\u0000 is it \\ud800?", '
        b'"tags": ["vip\\u0000"]}'
    )
    before = counts()

    # when
    response = post(client, None, raw=raw)

    # then
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get(pk=response.json()["id"])
    assert (ticket.subject, ticket.body, ticket.tags) == ("Late parcel", "Where is it \ufffd?", ["vip"])
    assert counts() == (before[0] + 1, before[1] + 1, before[2])


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        (b'{"external_id": "crm\\u0000-1", "body": "Hi"}', "external_id", "NUL"),
        (b'{"external_id": "crm-\\udfff", "body": "Hi"}', "external_id", "surrogate"),
        (b'{"external_id": "crm-1", "body": "Hi", "requester": "kim\\u0000@example.com"}', "requester", "NUL"),
        (b'{"external_id": "crm-1", "body": "Hi", "delivery_id": "d\\ud800"}', "delivery_id", "surrogate"),
        (b'{"external_id": "crm-1", "body": "\\u0000\\u0000"}', "body", "at least 1 character"),
        (
            b'{"external_id\\u0000": "crm-1", "body": "Hi"}',
            "external_id",
            "Field required",
        ),  # the key with NUL is not external_id
    ],
)
def test_nul_or_lone_surrogate_in_an_identifier_is_400_naming_it_and_nothing_stored(
    client, api_token, raw, field, says
):
    before = counts()

    response = post(client, None, raw=raw)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert says in response.json()["error"]
    assert counts() == before


@pytest.mark.parametrize(
    ("raw", "field", "error"),
    [
        (
            b'{"external_id": ' + b"9" * 5000 + b', "body": "Hi"}',
            "external_id",
            "external_id: an integer over 200 digits is out of range",
        ),
        (
            b'{"external_id": "crm-1", "body": "Hi", "tags": ["a", -' + b"1" * 4301 + b"]}",
            "tags.1",
            "tags.1: an integer over 200 digits is out of range",
        ),
        (
            b'{"external_id": "crm-1", "body": "Hi", "meta": {"ids": [' + b"7" * 201 + b"]}}",
            "meta.ids.0",
            "meta.ids.0: an integer over 200 digits is out of range",
        ),
        (b"[" + b"1" * 5000 + b"]", "(root)", "the body must be a JSON object"),
    ],
)
def test_huge_integer_is_400_naming_its_field_and_nothing_stored(client, api_token, raw, field, error):
    before = counts()

    response = post(client, None, raw=raw)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert response.json()["error"] == error
    assert counts() == before


def test_integer_of_200_digits_is_parsed_and_refused_as_the_wrong_type_only(client, api_token):
    # an integer as long as an id may be is a number, and external_id must be a string: the contract says so
    response = post(client, None, raw=b'{"external_id": ' + b"9" * 200 + b', "body": "Hi"}')

    assert response.status_code == 400
    assert response.json()["field"] == "external_id"
    assert "valid string" in response.json()["error"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"external_id": "x" * 201, "body": "Hi"}, "external_id"),
        ({"external_id": "crm-1", "subject": "s" * 501, "body": "Hi"}, "subject"),
        ({"external_id": "crm-1", "body": "b" * 100_001}, "body"),
        ({"external_id": "crm-1", "body": "Hi", "tags": ["ok", "t" * 101]}, "tags.1"),
        ({"external_id": "crm-1", "body": "Hi", "tags": [f"t{i}" for i in range(51)]}, "tags"),
        ({"external_id": "crm-1", "body": "Hi", "tags": [""]}, "tags.0"),
    ],
)
def test_field_over_its_limit_is_400_naming_it_and_nothing_stored(client, api_token, data, field):
    before = counts()

    response = post(client, data)

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert counts() == before


def test_fields_at_their_limits_are_accepted_unchanged(client, api_token):
    data = {
        "external_id": "x" * 200,
        "subject": "s" * 500,
        "body": "b" * 100_000,
        "tags": [f"{i:0>100}" for i in range(50)],
    }

    response = post(client, data)

    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get(pk=response.json()["id"])
    assert (ticket.external_id, ticket.subject, ticket.body, ticket.tags) == (
        data["external_id"],
        data["subject"],
        data["body"],
        data["tags"],
    )


def test_openapi_limits_are_the_contracts(client):
    from triage.contracts import TicketIn

    schema = client.get("/api/openapi.json").json()["components"]["schemas"]["TicketIn"]["properties"]

    assert schema["body"]["maxLength"] == TicketIn.max_length("body") == 100_000
    assert schema["subject"]["maxLength"] == TicketIn.max_length("subject")
    assert schema["tags"]["maxItems"] == TicketIn.max_length("tags")
    assert schema["tags"]["items"]["maxLength"] == TicketIn.max_length_of_tag() == 100


def test_the_requester_schema_is_what_the_api_accepts_an_address_or_none(client, api_token):
    """Found by schemathesis (2026-11-30): the schema said `format: email`, and the API (rightly) took ""."""
    from jsonschema import Draft202012Validator, FormatChecker

    schema = client.get("/api/openapi.json").json()["components"]["schemas"]["TicketIn"]["properties"]["requester"]
    valid = Draft202012Validator(schema, format_checker=FormatChecker()).is_valid

    for index, (requester, accepted) in enumerate([("", True), ("maria@example.com", True), ("not an address", False)]):
        response = post(client, {"external_id": f"req-{index}", "body": "Where is my parcel?", "requester": requester})
        assert (valid(requester), response.status_code) == (accepted, 201 if accepted else 400)


@pytest.mark.parametrize("path", ["/api/tickets/abc", "/api/tickets/1/", "/api/nothing", "/webhooks/zendesk/abc"])
def test_an_api_or_webhook_address_that_matches_no_route_answers_404_in_json(client, settings, path):
    """Found by schemathesis (2026-11-30): `/api/tickets/null,null` answered the site's HTML page."""
    settings.DEBUG = False

    response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": "no such resource"}


def test_a_500_under_the_api_answers_json_with_nothing_of_the_error(client, api_token, settings, monkeypatch):
    settings.DEBUG = False
    client.raise_request_exception = False

    def explode(**_):
        raise RuntimeError("secret detail that must not leak")

    monkeypatch.setattr("integrations.views._ticket_view", explode)
    created = post(client, {"external_id": "boom", "body": "Where is my parcel?"})

    assert created.status_code == 500 and created["Content-Type"] == "application/json"
    assert created.json() == {"error": "internal error"}
