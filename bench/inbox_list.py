"""Median response time of the inbox list view with 10,000 pending approvals.

It runs in a throw-away database on the embedded PostgreSQL (created, migrated, dropped), fills it
with bulk-created tickets, paused runs, their retrieve and draft checkpoints and open approval
requests, then asks for the inbox through Django's test Client as a signed-in agent: the whole
request (middleware, session, permissions, the faceted counts, one page of cards, rendering).

    uv run python bench/inbox_list.py [--items 10000] [--requests 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import PRIORITY_RANK
from triage.contracts import Priority
from triage.datasets import dataset_load
from triage.evaluation import isolated_database
from triage.models import PipelineRun, StepRun, Ticket
from triage.pipeline.handling import proposed_actions_for
from triage.services import categories_import

DEMO = Path(__file__).resolve().parents[1] / "triage" / "demo"


def fill(n: int) -> None:
    rng = random.Random(3)
    data = dataset_load(DEMO)
    categories = categories_import(rows=list(data.categories.items()))
    texts = [t.text for t in data.tickets]
    now = timezone.now()
    tickets = Ticket.objects.bulk_create(
        Ticket(
            source="bench",
            external_id=f"b-{i}",
            body=rng.choice(texts),
            requester=f"c{i}@example.com",
            status=Ticket.Status.AWAITING_APPROVAL,
        )
        for i in range(n)
    )
    runs = PipelineRun.objects.bulk_create(
        PipelineRun(ticket=t, status=PipelineRun.Status.WAITING, route=PipelineRun.Route.HUMAN) for t in tickets
    )
    steps, approvals = [], []
    for i, (ticket, run) in enumerate(zip(tickets, runs, strict=True)):
        category = rng.choice(categories)
        priority = rng.choice([Priority.NORMAL] * 6 + [Priority.HIGH, Priority.URGENT])
        actions = [a.model_dump(mode="json") for a in proposed_actions_for(category=category, priority=priority)]
        passages = [
            {
                "chunk_id": 10 * i + k,
                "article_id": 1,
                "article_title": "Shipping times",
                "heading": "Delays",
                "text": "Orders ship within two business days; tracking updates every day. " * 3,
                "score": 0.6 - k / 10,
            }
            for k in range(4)
        ]
        steps += [
            StepRun(run=run, step="retrieve", status=StepRun.Status.SUCCEEDED, output={"passages": passages}),
            StepRun(
                run=run,
                step="draft",
                status=StepRun.Status.SUCCEEDED,
                output={"body": "Hello, thanks for writing.", "citations": [10 * i], "model": "local-extractive"},
            ),
        ]
        failed = (
            ["money"] if category.money else rng.choice([["confidence"], ["retrieval"], ["confidence", "groundedness"]])
        )
        verdicts = [
            {
                "gate": g,
                "passed": False,
                "reason": f"The {g} gate failed for this ticket.",
                "step": "classify",
                "details": {},
            }
            for g in failed
        ] + [
            {
                "gate": "schema",
                "passed": True,
                "reason": "The classification matches the contract.",
                "step": "classify",
                "details": {},
            }
        ]
        approvals.append(
            ApprovalRequest(
                run=run,
                ticket=ticket,
                reason=" ".join(v["reason"] for v in verdicts if not v["passed"]),
                verdicts=verdicts,
                failed_gates=failed,
                proposed_category=category.label,
                proposed_actions=actions,
                draft="Hello,\n\nThanks for getting in touch. Orders ship within two business days.",
                money=category.money,
                priority_rank=PRIORITY_RANK[priority],
            )
        )
    StepRun.objects.bulk_create(steps, batch_size=5000)
    made = ApprovalRequest.objects.bulk_create(approvals, batch_size=5000)
    # Ages spread over a week, so the age filters and the ordering have real work to do.
    for approval in made[:: max(1, n // 500)]:
        ApprovalRequest.objects.filter(pk=approval.pk).update(created_at=now - timedelta(hours=rng.randint(0, 168)))


def agent_client() -> Client:
    user = get_user_model().objects.create_user("bench-agent", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_approvalrequest", "add_decision"]))
    client = Client()
    client.force_login(user)
    return client


def measure(client: Client, url: str, requests: int) -> list[float]:
    for _ in range(5):  # warm-up: template loading, connection, caches
        assert client.get(url).status_code == 200
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    settings.DEBUG = False  # as in production: no query log kept per request
    with isolated_database():
        started = time.perf_counter()
        fill(args.items)
        print(
            f"filled {ApprovalRequest.objects.filter(status='pending').count():,} pending approvals "
            f"in {time.perf_counter() - started:.1f}s"
        )
        client = agent_client()
        figures: dict[str, float | int] = {"items": args.items, "requests": args.requests}
        for key, label, url in [
            ("most_urgent", "inbox, most urgent first", "/"),
            ("newest", "inbox, newest first", "/?sort=newest"),
            ("money_older", "inbox, money + over a day", "/?money=yes&age=older"),
            ("page_200", "inbox, page 200", "/?page=200"),
        ]:
            times = measure(client, url, args.requests)
            median, p90 = statistics.median(times), statistics.quantiles(times, n=10)[-1]
            print(f"{label:28s} median {median:6.1f} ms   p90 {p90:6.1f} ms   ({args.requests} requests)")
            figures[f"{key}_median_ms"], figures[f"{key}_p90_ms"] = round(median, 1), round(p90, 1)
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
