"""Shared fixtures. The test database is the embedded PostgreSQL's `test_triage`, created by
pytest-django; the demo company's categories, examples and knowledge base are loaded once per
session (each test runs in a transaction that is rolled back, so they stay as loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.contracts import TicketIn

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "triage" / "demo"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _fast_queue(settings):
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    settings.TRIAGE_BACKOFF_SCALE = 0.0


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from triage.datasets import dataset_load
    from triage.services import categories_import, classifier_train, examples_import, knowledge_base_import

    with django_db_blocker.unblock():
        data = dataset_load(DEMO, tickets=False)
        categories_import(rows=list(data.categories.items()))
        examples_import(rows=[(e.text, e.label) for e in data.examples])
        classifier_train()
        knowledge_base_import(directory=DEMO / "kb")
    yield


@pytest.fixture
def ingest(db):
    """Ingest a ticket (its run is worked at once: the queue is 'immediate' in tests)."""
    from triage.services import ticket_ingest

    counter = iter(range(1, 10_000))

    def _ingest(body: str, *, subject: str = "", requester: str = "sam@example.com", external_id: str | None = None,
                enqueue: bool = True):
        return ticket_ingest(
            ticket_in=TicketIn(source="test", external_id=external_id or f"t-{next(counter)}", subject=subject,
                               body=body, requester=requester),
            enqueue=enqueue,
        )

    return _ingest
