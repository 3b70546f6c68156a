"""The run's lease is renewed between steps once a third of it has gone: a short run costs no extra write."""

from __future__ import annotations

import pytest

from triage.models import PipelineRun
from triage.pipeline import runner
from triage.pipeline.runner import run_pipeline

pytestmark = pytest.mark.django_db

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"


@pytest.fixture
def renewals(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = runner._heartbeat

    def spy(run_id: int) -> None:
        calls.append(run_id)
        real(run_id)

    monkeypatch.setattr(runner, "_heartbeat", spy)
    return calls


def test_a_run_that_finishes_well_inside_its_lease_renews_nothing(ingest, renewals, settings):
    settings.TRIAGE_RUN_LEASE = 120
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.COMPLETED
    assert renewals == []


def test_a_run_slower_than_a_third_of_its_lease_renews_it_before_each_later_step(ingest, renewals, settings):
    settings.TRIAGE_RUN_LEASE = 0  # every step starts after a third of the lease: renewed before each of the six
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.COMPLETED
    assert renewals == [result.run.pk] * len(runner.STEPS)
