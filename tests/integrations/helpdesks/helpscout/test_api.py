"""Help Scout's OAuth2 client-credentials tokens: obtained from the token endpoint, reused until shortly
before they expire, obtained again then and on a 401 (once); replies carry the `customer` the Mailbox API
requires. Against a loopback Help Scout that issues real, expiring tokens."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from integrations.helpdesks import vendor_module
from integrations.helpdesks.http import WritebackError


@pytest.fixture
def helpscout(stub_helpdesk):
    stub = stub_helpdesk("helpscout")

    def client():
        return vendor_module("helpscout").Client(base_url=stub.base_url, api_user="app-id-1", api_token="app-secret-1")

    return stub, client


def test_a_token_is_obtained_with_the_client_credentials_and_reused(helpscout):
    stub, client = helpscout

    client().execute(kind="add_tags", payload={"note": "a"}, ticket_id="100", requester="", key="k1")
    client().execute(kind="add_tags", payload={"note": "b"}, ticket_id="100", requester="", key="k2")

    assert stub.token_requests == [
        {"grant_type": "client_credentials", "client_id": "app-id-1", "client_secret": "app-secret-1"}
    ]
    assert stub.violations == [] and stub.tags["100"] == ["a", "b"]


@pytest.mark.parametrize("elapsed, tokens", [(6800, 1), (7200 - 299, 2), (8000, 2)])
def test_the_token_is_renewed_before_it_expires(helpscout, monkeypatch, elapsed, tokens):
    stub, client = helpscout
    stub.token_lifetime = 7200
    client().execute(kind="add_tags", payload={"note": "a"}, ticket_id="100", requester="", key="k1")

    # when: `elapsed` seconds later (the cache's clock): kept until 300 s before its expires_in of 7200 s
    import django.core.cache.backends.base as base
    import django.core.cache.backends.locmem as locmem

    later = time.time() + elapsed

    class Clock:
        @staticmethod
        def time():
            return later

    monkeypatch.setattr(locmem, "time", Clock)  # where expiry is checked
    monkeypatch.setattr(base, "time", Clock)  # where it is computed
    client().execute(kind="add_tags", payload={"note": "b"}, ticket_id="100", requester="", key="k2")

    # then: a new token was obtained first where due, and no request was refused
    assert len(stub.token_requests) == tokens and stub.violations == []


def test_a_401_renews_the_token_once_and_the_request_succeeds(helpscout):
    stub, client = helpscout
    client().execute(kind="add_tags", payload={"note": "a"}, ticket_id="100", requester="", key="k1")
    stub.expire()  # Help Scout no longer accepts the cached token

    client().execute(kind="add_tags", payload={"note": "b"}, ticket_id="100", requester="", key="k2")

    assert len(stub.token_requests) == 2 and stub.tags["100"] == ["a", "b"]
    assert len(stub.violations) == 1  # the one refused request, answered 401


def test_credentials_that_help_scout_refuses_are_an_error_not_a_loop(helpscout, monkeypatch):
    stub, client = helpscout

    def issue_useless(body):  # the token endpoint answers, but the API refuses what it issues
        stub.token_requests.append(body)
        return {"token_type": "bearer", "access_token": "refused", "expires_in": 7200}

    monkeypatch.setattr(stub, "_issue_token", issue_useless)

    with pytest.raises(WritebackError) as failed:
        client().execute(kind="add_tags", payload={"note": "a"}, ticket_id="100", requester="", key="k1")

    assert failed.value.status == 401 and len(stub.token_requests) == 2  # the first token, one renewal, no more


def test_a_reply_names_the_customer_by_email_or_by_the_conversations_primary_customer(helpscout):
    stub, client = helpscout

    client().execute(kind="send_reply", payload={"body": "Hi"}, ticket_id="100", requester="ana@example.com", key="r1")
    client().execute(kind="send_reply", payload={"body": "Hello"}, ticket_id="101", requester="", key="r2")

    # the loopback Help Scout refuses a reply without `customer` (documented.helpscout), so none was refused
    assert stub.reply_posts == 2 and stub.violations == []
    assert len(stub.replies["100"]) == 1 and len(stub.replies["101"]) == 1


def test_tokens_are_shared_through_redis_by_every_process(helpscout, settings):
    # The brief's Redis database for these tests is 5.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/5"}
    }
    stub, client = helpscout
    try:
        cache.clear()
        client().execute(kind="add_tags", payload={"note": "a"}, ticket_id="100", requester="", key="k1")
        client().execute(kind="add_tags", payload={"note": "b"}, ticket_id="100", requester="", key="k2")
    finally:
        cache.clear()

    assert len(stub.token_requests) == 1
