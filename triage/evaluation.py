"""`evaluate`: learn from a dataset's examples, triage every ticket through the real chain, measure.

It runs in a database of its own, created beside the configured one and dropped afterwards, so
the demo data (or production data) is never touched.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.db import connections

from triage.contracts import TicketIn
from triage.datasets import Dataset
from triage.embedding import embed_texts
from triage.measurement import category_table, risk_coverage, step_figures, ticket_outcomes
from triage.metrics import ReferenceLabels, chain_figures
from triage.models import PipelineRun
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.services import categories_import, classifier_train, examples_import, knowledge_base_import, ticket_ingest

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@contextmanager
def isolated_database(alias: str = "default") -> Iterator[str]:
    """Point `alias` at a fresh, migrated database for the duration; drop it afterwards."""
    conn = connections[alias]
    original = conn.settings_dict["NAME"]
    name = f"triage_eval_{os.getpid()}_{secrets.token_hex(3)}"
    with conn._nodb_cursor() as cursor:
        _drop_abandoned(cursor)
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    conn.settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0, interactive=False, database=alias)
        yield name
    finally:
        conn.close()
        conn.settings_dict["NAME"] = original
        with conn._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_abandoned(cursor: Any) -> None:
    """Drop evaluation databases left by a process that was killed before it could clean up."""
    cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'triage\\_eval\\_%%'")
    for (name,) in cursor.fetchall():
        match = re.fullmatch(r"triage_eval_(\d+)_[0-9a-f]+", name)
        if match and not _alive(int(match.group(1))):
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def evaluate_dataset(
    *,
    dataset: Dataset,
    human_cost: Decimal,
    progress: ProgressFactory,
    limit: int | None = None,
    with_ungated: bool = True,
    provider: str = "local",
    details: bool = False,
) -> dict[str, Any]:
    """Evaluate in the current database (call inside `isolated_database`). Returns the report.

    `details`: also the per-category table (`categories`) and the risk-coverage curves (`risk_coverage`),
    for `evaluate --report`.

    `provider="anthropic"`: Claude classifies the tickets the local classifier is unsure of, and drafts
    (the local drafter stands in when Claude is skipped); tokens and cost are in the report.
    """
    categories_import(rows=list(dataset.categories.items()))
    examples = [(e.text, e.label) for e in dataset.examples]
    examples_import(rows=examples, progress=progress("embedding examples", len(examples)))
    trained = classifier_train()
    if dataset.kb_dir is not None:
        articles = sorted(dataset.kb_dir.glob("*.md"))
        knowledge_base_import(directory=dataset.kb_dir, progress=progress("importing knowledge base", len(articles)))
    tickets = dataset.tickets[:limit] if limit else dataset.tickets
    embed_texts([t.text for t in tickets])  # one batched pass fills the cache the runs read from
    router = Router.for_run(PipelineRun())
    if provider != "local":
        router = dataclasses.replace(router, classify_cascade=[provider], draft_providers=[provider, "local"])
    gated_ids, ungated_ids = [], []
    money_tickets: set[int] = set()
    tick = progress("triaging tickets", len(tickets) * (2 if with_ungated else 1))
    for row in tickets:
        result = ticket_ingest(
            ticket_in=TicketIn(source="evaluate", external_id=f"{dataset.name}:{row.line}", body=row.text),
            reference_label=row.label,
            enqueue=False,
        )
        if row.money:
            money_tickets.add(result.ticket.pk)
        run_pipeline(run_id=result.run.pk, router=router.fresh())
        gated_ids.append(result.run.pk)
        tick(1)
        if with_ungated:
            ungated = PipelineRun.objects.create(ticket=result.ticket, gates_enabled=False)
            run_pipeline(run_id=ungated.pk, router=router.fresh())
            ungated_ids.append(ungated.pk)
            tick(1)
    truth = ReferenceLabels(
        money_labels=frozenset(dataset.money_labels),
        money_tickets=frozenset(money_tickets) if dataset.has_money_column else None,
    )
    gated_runs = PipelineRun.objects.filter(pk__in=gated_ids)
    gated = chain_figures(runs=gated_runs, truth=truth, human_cost=human_cost)
    outcomes = ticket_outcomes(runs=gated_runs, truth=truth)
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "classifier_threshold": trained.suggested_threshold,
        "provider": provider,
        "knowledge_base": dataset.kb_dir is not None,
        "money_column": dataset.has_money_column,
        "articles_with_category": len(dataset.article_categories),
        **gated.as_dict(),
        "mishandled_among_automated": gated.mishandled / gated.auto_handled if gated.auto_handled else None,
        **step_figures(outcomes),
    }
    if details:
        report["categories"] = category_table(outcomes)
        report["risk_coverage"] = {
            name: [dataclasses.asdict(p) for p in risk_coverage(outcomes, gated=name == "gated")]
            for name in ("gated", "ungated")
        }
    if with_ungated:
        ungated_figures = chain_figures(
            runs=PipelineRun.objects.filter(pk__in=ungated_ids), truth=truth, human_cost=human_cost
        )
        report["ungated"] = ungated_figures.as_dict()
    return report
