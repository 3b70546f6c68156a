"""Checkpoint retention (`triage.retention`): finished runs' step payloads slimmed after the admin's
policy, every figure kept, unfinished and waiting runs untouched; its command, admin and schedule."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from redis import Redis
from rq.cron import CronScheduler

from approvals.services import approval_decide
from tests.factories import build_run
from triage.metrics import ReferenceLabels, StaffFeedback, chain_figures
from triage.models import Action, Category, PipelineRun, RetentionPolicy, StepRun, Ticket
from triage.retention import checkpoints_prune, checkpoints_prune_task
from triage.schedule import scheduled_jobs

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - timedelta(days=120)  # past the default 90 days


def _age(*runs: PipelineRun, finished: object = OLD) -> None:
    PipelineRun.objects.filter(pk__in=[r.pk for r in runs]).update(finished_at=finished)


def _payloads(run: PipelineRun) -> list[tuple[object, object, object]]:
    return list(StepRun.objects.filter(run=run).order_by("pk").values_list("output", "verdicts", "pruned_at"))


def _figures() -> list[object]:
    runs = PipelineRun.objects.filter(ticket__source="test")
    money = frozenset(Category.objects.filter(money=True).values_list("label", flat=True))
    return [
        chain_figures(runs=runs, truth=StaffFeedback(), human_cost=Decimal("4")),
        chain_figures(runs=runs, truth=ReferenceLabels(money_labels=money), human_cost=Decimal("4")),
    ]


@pytest.fixture
def finished_runs(ingest, money_agent, django_capture_on_commit_callbacks):
    """Real runs through the chain, aged past the policy: one auto-handled, one a person approved, one a person
    rejected (the finished ones, returned), and one still waiting for a person."""
    with django_capture_on_commit_callbacks(execute=True):
        auto = [
            ingest("How do I reset my password? The reset link in the email does not arrive.").run,
            ingest("Where is my order? It was supposed to arrive yesterday.").run,
        ]
        _, approved, approval = build_run(body="Please refund my last order, it arrived broken.", money=True)
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")
        _, rejected, approval = build_run(body="My parcel is late.", category="shipping_delay")
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="reject", reason="Not a delay: in transit")
    runs = [PipelineRun.objects.get(pk=r.pk) for r in [*auto, approved, rejected]]
    assert [(r.status, r.route) for r in runs] == [
        ("completed", "auto"),
        ("waiting", "human"),
        ("completed", "human"),
        ("completed", "human"),
    ]
    # A reference label on every ticket, so the labelled figures (accuracy, step reliability) read the
    # classify output's category too.
    Ticket.objects.filter(runs__in=runs).update(reference_label="order_status")
    _age(*runs)
    return [r for r in runs if r.status != PipelineRun.Status.WAITING]


def test_pruning_keeps_every_figure_identical(finished_runs):
    before = _figures()
    waiting = PipelineRun.objects.get(status=PipelineRun.Status.WAITING, ticket__source="test")
    waiting_before = _payloads(waiting)

    result = checkpoints_prune(now=NOW)

    assert result.step_runs == StepRun.objects.filter(run__in=finished_runs).count() > 0
    assert result.runs == len(finished_runs)
    assert result.done and result.bytes_after < result.bytes_before
    assert before[1].accuracy is not None and 0 < before[1].accuracy < 1  # the category is read, both ways
    assert _figures() == before
    assert _payloads(waiting) == waiting_before


def test_pruning_drops_the_bulky_payloads_and_keeps_what_the_trace_page_shows(finished_runs):
    checkpoints_prune(now=NOW)

    steps = StepRun.objects.filter(run__in=finished_runs, status=StepRun.Status.SUCCEEDED)
    assert not steps.filter(pruned_at__isnull=True).exists()
    for s in steps.filter(step="retrieve"):
        assert s.output["passages"] and all("text" not in p and "article_title" in p for p in s.output["passages"])
    for s in steps.filter(step="draft"):
        assert "body" not in s.output and "citations" in s.output
    for s in steps.filter(step="classify"):
        assert "rationale" not in s.output and "proposed_actions" not in s.output and s.output["category"]
    for s in StepRun.objects.filter(run__in=finished_runs):
        assert all(set(v) <= {"gate", "passed", "step"} for v in s.verdicts)


def test_the_trace_page_of_a_pruned_run_says_so(finished_runs, agent_client):
    checkpoints_prune(now=NOW)

    response = agent_client.get(reverse("ticket-trace", args=[finished_runs[0].ticket_id]))

    assert response.status_code == 200
    assert "Payload slimmed by the retention policy" in response.content.decode()


def test_unfinished_waiting_recent_and_unsettled_runs_are_untouched(ingest):
    queued = ingest("Where is my order?", enqueue=False).run
    _, waiting, _ = build_run(body="Please refund me.", money=True)
    _, running, _ = build_run(body="My parcel is late.", category="shipping_delay", auto=True)
    PipelineRun.objects.filter(pk=running.pk).update(status=PipelineRun.Status.RUNNING)
    _, unsettled, _ = build_run(body="How do I reset my password?", category="account_access", auto=True)
    Action.objects.create(run=unsettled, kind="send_reply", idempotency_key=f"k-{unsettled.pk}", payload={})
    _, recent, _ = build_run(body="Where is my parcel?", auto=True)
    _age(queued, waiting, running, unsettled)
    _age(recent, finished=NOW - timedelta(days=89))
    runs = [queued, waiting, running, unsettled, recent]
    before = {r.pk: _payloads(r) for r in runs}

    result = checkpoints_prune(now=NOW)

    assert result.step_runs == 0 and result.runs == 0
    assert {r.pk: _payloads(r) for r in runs} == before


def test_a_policy_without_days_keeps_everything(finished_runs):
    RetentionPolicy.objects.update_or_create(pk=1, defaults={"slim_after_days": None})
    before = {r.pk: _payloads(r) for r in finished_runs}

    result = checkpoints_prune(now=NOW)

    assert result.step_runs == 0
    assert {r.pk: _payloads(r) for r in finished_runs} == before


def test_pruning_goes_in_bounded_batches_and_a_second_pass_finds_nothing(finished_runs):
    total = StepRun.objects.filter(run__in=finished_runs).count()

    first = checkpoints_prune(now=NOW, batch_size=2, max_batches=1)
    rest = checkpoints_prune(now=NOW, batch_size=2, max_batches=1000)
    again = checkpoints_prune(now=NOW)

    assert (first.step_runs, first.done) == (2, False)
    assert (rest.step_runs, rest.done) == (total - 2, True)
    assert again.step_runs == 0


def test_the_command_reports_what_it_slimmed(finished_runs):
    total = StepRun.objects.filter(run__in=finished_runs).count()
    out = StringIO()

    call_command("prune_checkpoints", stdout=out)

    assert f"Slimmed {total} checkpoint(s) of {len(finished_runs)} run(s) finished over 90 day(s) ago" in out.getvalue()
    assert StepRun.objects.filter(run__in=finished_runs, pruned_at__isnull=True).count() == 0


def test_the_scheduled_task_prunes(finished_runs):
    checkpoints_prune_task()

    assert StepRun.objects.filter(run__in=finished_runs, pruned_at__isnull=True).count() == 0


def test_the_admin_refuses_zero_days_and_saves_a_valid_policy(admin_client):
    url = reverse("admin:triage_retentionpolicy_change")

    refused = admin_client.post(url, {"slim_after_days": "0"})

    assert refused.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in refused.content.decode()
    assert RetentionPolicy.get_solo().slim_after_days == 90

    saved = admin_client.post(url, {"slim_after_days": "30"})

    assert saved.status_code == 302
    assert RetentionPolicy.objects.count() == 1 and RetentionPolicy.get_solo().slim_after_days == 30


def test_rq_cron_registers_every_scheduled_job_by_name():
    scheduler = CronScheduler(connection=Redis(host="127.0.0.1", port=6379, db=11))

    scheduler.load_config_from_file("triage.cron")

    expected = {(j.name, j.every_seconds) for j in scheduled_jobs()}
    assert ("checkpoints-prune", 3600) in expected
    assert {(j.name, j.interval) for j in scheduler.get_jobs()} == expected


def test_the_command_refuses_a_batch_size_of_zero_and_prunes_nothing(finished_runs):
    with pytest.raises(CommandError, match="--batch-size and --max-batches must be at least 1"):
        call_command("prune_checkpoints", "--batch-size", "0", stdout=StringIO())

    assert StepRun.objects.filter(run__in=finished_runs, pruned_at__isnull=False).count() == 0
