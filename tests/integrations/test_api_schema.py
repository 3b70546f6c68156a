"""The JSON API against its own OpenAPI document, by schemathesis: requests generated from the schema (valid and
deliberately invalid ones), every answer checked against what the document says (status codes, content types,
bodies; no 5xx; a request the schema forbids is refused). Run on the Django application in process, in the
test's transaction; no run is worked (`none`: intake only)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from tests.integrations.conftest import TOKEN

# Loaded as the module is collected: the document is built from the contracts and settings, no database.
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture
def in_process(db, settings):
    settings.TRIAGE_QUEUE_BACKEND = "none"
    settings.DEBUG = False
    # As Django's test client does: a request's end must not close the connection holding the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=40,
    # The same requests on every run (a suite that gates a merge must not fail by the draw); a deeper search by
    # hand: raise max_examples, drop this (400 a operation, twice, on 2026-11-30: no failure).
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_what_the_api_document_says(case, in_process, api_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
