"""API tokens are scoped: each is a ticket source of its own, and sees and creates only its tickets."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from integrations.models import ApiToken
from integrations.tokens import api_token_authenticate, api_token_issue, token_digest
from triage.models import PipelineRun, Ticket

MIGRATION = "0002_scoped_api_tokens_and_delivery_adjustments"


@pytest.fixture
def two_clients(db):
    """Two API clients, as issued in the admin: (token, raw value) each."""
    return api_token_issue(name="crm"), api_token_issue(name="shop")


def post(client, raw: str, data):
    return client.post(
        "/api/tickets",
        data=json.dumps(data),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


def get(client, raw: str, ticket_id: int):
    return client.get(f"/api/tickets/{ticket_id}", headers={"Authorization": f"Bearer {raw}"})


def test_issued_token_is_a_source_of_its_own_stored_as_sha256(db):
    token, raw = api_token_issue(name="crm")

    assert token.source == f"api:{token.pk}"
    assert (token.digest, token.last4) == (token_digest(raw), raw[-4:])
    assert raw not in {token.digest, token.source, token.name}
    assert api_token_authenticate(authorization=f"Bearer {raw}") == token
    assert api_token_authenticate(authorization=f"Basic {raw}") is None


def test_a_token_creates_tickets_in_its_own_source_whatever_the_request_says(client, two_clients):
    (crm, crm_raw), _ = two_clients

    response = post(client, crm_raw, {"external_id": "e-1", "body": "Hello", "source": "zendesk:1"})

    assert response.status_code == 201, response.content
    assert Ticket.objects.get(pk=response.json()["id"]).source == crm.source == response.json()["source"]


def test_another_tokens_ticket_is_404_like_a_missing_one(client, two_clients):
    # given: a ticket of the crm client
    (_, crm_raw), (_, shop_raw) = two_clients
    ticket_id = post(client, crm_raw, {"external_id": "e-1", "body": "Hello"}).json()["id"]

    # when: the shop client reads it, and reads an id that does not exist
    other = get(client, shop_raw, ticket_id)
    missing = get(client, shop_raw, ticket_id + 10_000)

    # then: the same answer, so ids do not leak; its owner still reads it
    assert (other.status_code, other.json()) == (404, missing.json())
    assert missing.status_code == 404
    assert get(client, crm_raw, ticket_id).status_code == 200


def test_another_clients_external_id_is_a_separate_ticket(client, two_clients):
    # given: the crm client's ticket e-1
    (crm, crm_raw), (shop, shop_raw) = two_clients
    first = post(client, crm_raw, {"external_id": "e-1", "subject": "Refund", "body": "Please refund order 1"})

    # when: the shop client posts its own e-1, and the crm client retries its e-1
    other = post(client, shop_raw, {"external_id": "e-1", "body": "Where is my parcel?"})
    retry = post(client, crm_raw, {"external_id": "e-1", "subject": "Refund", "body": "Please refund order 1"})

    # then: the shop gets a new ticket of its own, and never sees the crm client's; the retry changes nothing
    assert (first.status_code, other.status_code, retry.status_code) == (201, 201, 200)
    assert other.json()["id"] != first.json()["id"] == retry.json()["id"]
    assert other.json()["source"] == shop.source and other.json()["subject"] == ""
    assert Ticket.objects.filter(external_id="e-1").count() == 2
    assert PipelineRun.objects.filter(ticket__external_id="e-1").count() == 2
    assert Ticket.objects.get(pk=first.json()["id"]).source == crm.source


def test_deactivated_token_reads_nothing(client, two_clients):
    (crm, crm_raw), _ = two_clients
    ticket_id = post(client, crm_raw, {"external_id": "e-1", "body": "Hello"}).json()["id"]
    ApiToken.objects.filter(pk=crm.pk).update(active=False)

    assert get(client, crm_raw, ticket_id).status_code == 401


def test_admin_issues_a_scoped_token(admin_client):
    response = admin_client.post("/admin/integrations/apitoken/add/", {"name": "crm", "active": "on"}, follow=True)

    token = ApiToken.objects.get(name="crm")
    message = next(str(m) for m in response.context["messages"])
    assert token.source == f"api:{token.pk}"
    assert token.source in message
    assert ApiToken.objects.count() == 1


# --- the migration binds existing tokens --------------------------------------------------------------


def migrate_back_then_forward(make_tokens) -> dict[str, str]:
    """Unapply the migration (inside the test's transaction: PostgreSQL rolls DDL back), create tokens as
    they were before it, apply it again; the tokens' sources by name."""
    # Going back unapplies the later migrations that depend on these (triage's too); their ALTER TABLEs
    # refuse to run while rows written earlier in this transaction still have deferred checks pending.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    executor = MigrationExecutor(connection)
    executor.migrate([("integrations", "0001_initial")])
    old_apps = executor.loader.project_state([("integrations", "0001_initial")]).apps
    make_tokens(old_apps.get_model("integrations", "ApiToken"))
    executor = MigrationExecutor(connection)
    executor.migrate([("integrations", MIGRATION)])
    return dict(ApiToken.objects.values_list("name", "source"))


def test_migration_lets_a_lone_token_keep_the_api_tickets_it_made(db):
    # given: one token, and a ticket it created before tokens were scoped
    Ticket.objects.create(source="api", external_id="old-1", body="Hello")

    sources = migrate_back_then_forward(lambda Token: Token.objects.create(name="crm", digest="a" * 64, last4="aaaa"))

    assert sources == {"crm": "api"}


def test_migration_gives_each_of_several_tokens_a_source_of_its_own(db):
    def make(Token):
        for name in ("crm", "shop", "old"):
            Token.objects.create(name=name, digest=name.ljust(64, "0"), last4=name[:4], active=name != "old")

    sources = migrate_back_then_forward(make)

    ids = dict(ApiToken.objects.values_list("name", "pk"))
    assert sources == {name: f"api:{ids[name]}" for name in ("crm", "shop", "old")}
