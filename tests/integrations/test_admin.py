"""Helpdesk sources and API tokens in admin: secrets never shown back in full; rotation keeps the old one."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.utils import timezone

from integrations.models import ApiToken, HelpdeskSource


def test_source_pages_mask_secrets_to_the_last_four(admin_client, helpdesk_source):
    source = helpdesk_source("zendesk", secret="whsec-very-secret-AB12", api_token="zd-api-token-CD34")

    listing = admin_client.get("/admin/integrations/helpdesksource/").content.decode()
    change = admin_client.get(f"/admin/integrations/helpdesksource/{source.pk}/change/").content.decode()

    for page in (listing, change):
        assert "whsec-very-secret" not in page and "zd-api-token" not in page
    assert "AB12" in listing and "CD34" in change


def test_saving_a_new_secret_in_admin_rotates_it_with_a_grace_period(admin_client, helpdesk_source, settings):
    source = helpdesk_source("intercom", secret="first-secret-1111")
    started = timezone.now()

    response = admin_client.post(
        f"/admin/integrations/helpdesksource/{source.pk}/change/",
        {
            "name": source.name,
            "vendor": "intercom",
            "base_url": "",
            "api_user": "",
            "active": "on",
            "new_secret": "second-secret-2222",
            "new_api_token": "",
        },
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.secret, source.previous_secret) == ("second-secret-2222", "first-secret-1111")
    grace = timedelta(seconds=settings.TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS)
    assert started + grace <= source.previous_secret_valid_until <= timezone.now() + grace


def test_saving_without_a_new_secret_keeps_it(admin_client, helpdesk_source):
    source = helpdesk_source("intercom", secret="kept-secret-3333")

    admin_client.post(
        f"/admin/integrations/helpdesksource/{source.pk}/change/",
        {
            "name": "renamed",
            "vendor": "intercom",
            "base_url": "",
            "api_user": "",
            "active": "on",
            "new_secret": "",
            "new_api_token": "",
        },
    )

    source.refresh_from_db()
    assert (source.name, source.secret, source.previous_secret) == ("renamed", "kept-secret-3333", "")


def test_new_api_token_is_shown_once_and_stored_as_sha256(admin_client):
    response = admin_client.post("/admin/integrations/apitoken/add/", {"name": "crm", "active": "on"}, follow=True)

    token = ApiToken.objects.get(name="crm")
    message = next(str(m) for m in response.context["messages"])
    shown = message.split("The new token is ")[1].split(" ")[0]
    assert hashlib.sha256(shown.encode()).hexdigest() == token.digest
    assert token.last4 == shown[-4:]
    assert shown not in admin_client.get(f"/admin/integrations/apitoken/{token.pk}/change/").content.decode()
    assert HelpdeskSource.objects.count() == 0
