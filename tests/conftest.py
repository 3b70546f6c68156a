"""Shared fixtures. The test database is the embedded PostgreSQL's `test_triage`, created by
pytest-django; the demo company's categories, examples and knowledge base are loaded once per
session (each test runs in a transaction that is rolled back, so they stay as loaded). Staff users with the
real roles, and runs in known states (built by `tests.factories`), for every test that needs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission

from approvals.models import ApprovalRequest
from tests.factories import build_run
from triage.contracts import TicketIn
from triage.models import Ticket
from triage.permissions import agents_group_ensure

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "triage" / "demo"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"

# Helpdesk sources, vendor-correct signing and the loopback helpdesk: used by the intake tests, the
# write-back tests (tests/triage/writeback) and the integrations admin tests.
pytest_plugins = ["tests.integrations.helpdesks.stubs", "tests.integrations.mcp.fixtures"]


@pytest.fixture(autouse=True)
def _fast_queue(settings):
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    settings.TRIAGE_BACKOFF_SCALE = 0.0
    yield
    # A test that used the in-process worker leaves no pool or sweeper behind to touch the next test's data.
    from triage.tasks import inprocess_stop

    inprocess_stop(timeout=10)


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
        # The demo company's target, as `manage.py demo` sets it: its examples cannot show 1% at 90%.
        from triage.management.commands.demo import DEMO_TARGET
        from triage.models import GatePolicy

        policy = GatePolicy.get_solo()
        policy.target_mishandled_rate = DEMO_TARGET
        policy.save()
    yield


@pytest.fixture
def ingest(db):
    """Ingest a ticket (its run is worked at once: the queue is 'immediate' in tests)."""
    from triage.services import ticket_ingest

    counter = iter(range(1, 10_000))

    def _ingest(
        body: str,
        *,
        subject: str = "",
        requester: str = "sam@example.com",
        external_id: str | None = None,
        enqueue: bool = True,
    ):
        return ticket_ingest(
            ticket_in=TicketIn(
                source="test",
                external_id=external_id or f"t-{next(counter)}",
                subject=subject,
                body=body,
                requester=requester,
            ),
            enqueue=enqueue,
        )

    return _ingest


PASSWORD = "s3cret-pass-for-tests"


@pytest.fixture
def make_user(db, django_user_model) -> Callable[..., Any]:
    """A user; `role` "agent" joins the Agents group, "money" adds approvals.approve_money."""

    def _make(username: str, *, roles: tuple[str, ...] = ("agent",), staff: bool = True, superuser: bool = False):
        user = django_user_model.objects.create_user(
            username=username, password=PASSWORD, is_staff=staff, is_superuser=superuser
        )
        if "agent" in roles:
            user.groups.add(agents_group_ensure())
        if "viewer" in roles:
            user.user_permissions.add(
                *Permission.objects.filter(
                    content_type__app_label__in=["approvals", "triage"],
                    codename__in=["view_approvalrequest", "view_ticket", "view_pipelinerun"],
                )
            )
        if "money" in roles:
            user.user_permissions.add(
                Permission.objects.get(codename="approve_money", content_type__app_label="approvals")
            )
        return user

    return _make


@pytest.fixture
def agent(make_user):
    return make_user("agent1")


@pytest.fixture
def money_agent(make_user):
    return make_user("senior1", roles=("agent", "money"))


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client


@pytest.fixture
def paused(db) -> Callable[..., ApprovalRequest]:
    """An open approval request for an ordinary (or, with money=True, a money) ticket."""

    def _paused(body: str = "Where is my order? It has been two weeks.", **kwargs: Any) -> ApprovalRequest:
        if kwargs.get("money") and "category" not in kwargs:
            kwargs["category"] = "refund_request"
        _, _, approval = build_run(body=body, **kwargs)
        assert approval is not None
        return approval

    return _paused


@pytest.fixture
def auto_handled(db) -> Callable[..., Ticket]:
    def _auto(body: str = "How do I reset my password?", **kwargs: Any) -> Ticket:
        ticket, _, _ = build_run(body=body, auto=True, category=kwargs.pop("category", "account_access"), **kwargs)
        return ticket

    return _auto


def other_session(*, dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection of its own, as another process would hold, to the database Django uses now (or to
    `dbname`: advisory locks belong to one database)."""
    from django.db import connection

    params = {**connection.get_connection_params(), **({"dbname": dbname} if dbname else {})}
    keys = ("dbname", "user", "password", "host", "port")
    conninfo = psycopg.conninfo.make_conninfo(**{k: str(params[k]) for k in keys if params.get(k)})
    return psycopg.connect(conninfo, autocommit=autocommit)


@pytest.fixture
def run_held_elsewhere():
    """Hold a run's advisory lock on a connection of its own, as a live worker does, for the `with` block."""
    import threading
    from contextlib import contextmanager

    from django.db import connection

    from triage.durability import run_lock

    @contextmanager
    def _held(run_id: int):
        taken, release = threading.Event(), threading.Event()

        def worker() -> None:
            try:
                with run_lock(run_id) as acquired:
                    if acquired:
                        taken.set()
                        release.wait(30)
            finally:
                connection.close()

        thread = threading.Thread(target=worker)
        thread.start()
        assert taken.wait(10), f"run {run_id}'s lock could not be taken"
        try:
            yield
        finally:
            release.set()
            thread.join(10)

    return _held
