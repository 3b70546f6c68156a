"""Fixtures for the Claude provider tests: the loopback Messages API and a chain that always asks Claude."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_anthropic import FakeAnthropic


@pytest.fixture(autouse=True)
def _fresh_breakers():
    from integrations.llm.breaker import breakers_reset

    breakers_reset()
    yield
    breakers_reset()


@pytest.fixture
def claude(settings, db):
    """Point the real SDK at a loopback server; make the local classifier always unsure (thresholds 1.0).

    Use: `fake = claude([replies...])`; the returned server logs every request.
    """
    from triage.models import Category

    Category.objects.update(confidence_threshold=1.0)
    settings.TRIAGE_CLASSIFY_CASCADE = ["anthropic"]
    settings.TRIAGE_DRAFT_PROVIDERS = ["local"]
    settings.ANTHROPIC_API_KEY = "sk-test"
    settings.TRIAGE_ANTHROPIC_MODELS = {
        "classify": ["claude-haiku-4-5", "claude-sonnet-4-6"],
        "draft": ["claude-sonnet-4-6", "claude-haiku-4-5"],
    }
    settings.TRIAGE_ANTHROPIC_TIMEOUT = 5.0
    settings.TRIAGE_DAILY_SPEND_CAP = 0
    settings.TRIAGE_BREAKER_FAILURES = 5
    settings.TRIAGE_BREAKER_COOLDOWN = 30.0
    servers: list[FakeAnthropic] = []

    def start(script=None, **kw) -> FakeAnthropic:
        fake = FakeAnthropic(script, **kw).__enter__()
        servers.append(fake)
        settings.ANTHROPIC_BASE_URL = fake.base_url
        return fake

    yield start
    for fake in servers:
        fake.__exit__(None, None, None)
