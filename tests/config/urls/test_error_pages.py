"""404 and 500 pages show nothing internal: no URL list, no traceback, settings or source."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from triage import selectors

pytestmark = pytest.mark.django_db


def test_a_404_shows_the_not_found_page_and_no_url_list(agent_client, settings):
    settings.DEBUG = False

    response = agent_client.get("/no/such/page/")

    page = response.content.decode()
    assert response.status_code == 404
    assert 'id="not-found"' in page and "There is nothing at this address" in page
    # what Django's debug 404 shows: the URLconf and every pattern in it
    for leak in ("URLconf", "config.urls", "tickets/&lt;int:ticket_id&gt;", "ticket-trace", "webhooks/"):
        assert leak not in page


def test_a_missing_ticket_is_a_404_without_its_reason_or_patterns(agent_client, settings):
    settings.DEBUG = False

    response = agent_client.get(reverse("ticket-trace", args=[999_999]))

    assert response.status_code == 404 and 'id="not-found"' in response.content.decode()
    assert "No such ticket" not in response.content.decode()


def test_a_500_shows_the_error_page_and_no_traceback_settings_or_locals(agent, settings, monkeypatch):
    settings.DEBUG = False

    def explode(*, ticket_id: int) -> None:
        secret_local = "local-value-that-must-not-leak"  # noqa: F841 - a local the 500 page must not show
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(selectors, "ticket_trace", explode)
    client = Client(raise_request_exception=False)
    client.force_login(agent)

    response = client.get(reverse("ticket-trace", args=[1]))

    page = response.content.decode()
    assert response.status_code == 500
    assert 'id="server-error"' in page and "Something went wrong" in page
    for leak in (
        "Traceback",
        "internal detail",
        "local-value",
        "SECRET_KEY",
        "RuntimeError",
        "triage/views.py",
        "DATABASES",
    ):
        assert leak not in page
