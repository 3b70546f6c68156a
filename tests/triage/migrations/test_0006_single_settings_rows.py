"""Migration 0006: the gate policy and provider settings become one row each, keeping the row in use."""

from __future__ import annotations

from decimal import Decimal

import pytest

from triage.models import GatePolicy, ProviderSettings
from triage.selectors import gate_policy_current
from triage.spend import provider_settings_current

pytestmark = pytest.mark.django_db

BEFORE = [("triage", "0005_remove_gatepolicy_money_gate")]
AFTER = [("triage", "0006_single_settings_rows")]


def test_the_row_in_use_is_kept_and_the_unread_rows_go(migrate):
    old = migrate(BEFORE)
    OldPolicy, OldProvider = old.get_model("triage", "GatePolicy"), old.get_model("triage", "ProviderSettings")
    OldPolicy.objects.all().delete()
    OldProvider.objects.all().delete()
    # "The current" row was the lowest pk; give it one that is not the singleton's.
    in_use = OldPolicy.objects.create(pk=5, name="strict", retrieval_min_score=0.6, confidence_gate=False)
    OldPolicy.objects.create(pk=9, name="never-read", retrieval_min_score=0.1)
    OldProvider.objects.create(pk=3, name="ours", enabled=False, daily_spend_cap=Decimal("7.50"))

    migrate(AFTER)
    # The assertions read through today's models and selectors: the later migrations add their columns.
    migrate()

    assert GatePolicy.objects.count() == 1 and ProviderSettings.objects.count() == 1
    policy = gate_policy_current()
    assert (policy.pk, policy.name, policy.retrieval_min_score, policy.confidence_gate) == (1, in_use.name, 0.6, False)
    provider = provider_settings_current()
    assert (provider.pk, provider.enabled, provider.daily_spend_cap) == (1, False, Decimal("7.50"))


def test_with_no_row_the_defaults_are_created_on_first_read():
    GatePolicy.objects.all().delete()
    ProviderSettings.objects.all().delete()

    policy = gate_policy_current()
    provider = provider_settings_current()

    assert (policy.pk, policy.retrieval_min_score, policy.confidence_gate) == (1, 0.35, True)
    assert (provider.pk, provider.enabled, provider.daily_spend_cap) == (1, True, None)
    assert gate_policy_current().pk == 1 and GatePolicy.objects.count() == 1


def test_saving_another_policy_edits_the_one_row():
    GatePolicy(name="default", retrieval_min_score=0.5).save()
    GatePolicy(name="default", retrieval_min_score=0.7).save()

    assert GatePolicy.objects.count() == 1
    assert gate_policy_current().retrieval_min_score == 0.7
