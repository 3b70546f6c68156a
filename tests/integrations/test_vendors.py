"""The vendor registry is the one list of helpdesk vendors: the model's choices, the webhook URLs, the write-back."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from integrations.helpdesks import vendor_module
from integrations.models import HelpdeskSource
from integrations.vendors import REGISTRY, VENDORS
from triage.writeback import helpdesk, record_only, writer_for


def test_the_connection_model_offers_exactly_the_registered_vendors_with_their_labels():
    assert HelpdeskSource.Vendor.choices == [(v.name, v.label) for v in REGISTRY]


@pytest.mark.parametrize("vendor", REGISTRY, ids=lambda v: v.name)
def test_every_registered_vendor_has_its_module_and_is_written_back(vendor):
    module = vendor_module(vendor.name)

    assert module.__name__ == vendor.module_path
    assert module.Client.vendor == vendor.name
    assert writer_for(f"{vendor.name}:12") is helpdesk


def test_a_source_of_an_unknown_vendor_is_recorded_only():
    with pytest.raises(LookupError):
        vendor_module("desk-o-matic")
    assert writer_for("desk-o-matic:12") is record_only
    assert not hasattr(settings, "TRIAGE_WRITEBACK_VENDORS")


@pytest.mark.django_db
def test_a_webhook_for_an_unknown_vendor_is_not_found(client):
    response = client.post(
        reverse("helpdesk-webhook", args=["desk-o-matic", 1]), data=b"{}", content_type="application/json"
    )

    assert response.status_code == 404
    assert tuple(v.name for v in REGISTRY) == VENDORS
