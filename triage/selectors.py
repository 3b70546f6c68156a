"""Reads. Keyword-only, typed, returning models or contracts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db.models import QuerySet
from pgvector.django import CosineDistance

from triage.contracts import Passage, Retrieval
from triage.models import Category, Chunk, GatePolicy, StepPolicy, StepRun, TrainedClassifier


def chunk_search(*, embedding: np.ndarray | Sequence[float], limit: int = 4) -> Retrieval:
    """The `limit` knowledge-base chunks nearest to `embedding` (cosine), best first."""
    rows = (
        Chunk.objects.select_related("article")
        .annotate(distance=CosineDistance("embedding", list(map(float, embedding))))
        .order_by("distance")[:limit]
    )
    return Retrieval(
        passages=[
            Passage(
                chunk_id=c.pk,
                article_id=c.article_id,
                article_title=c.article.title,
                heading=c.heading,
                text=c.text,
                score=max(-1.0, min(1.0, 1.0 - float(c.distance))),
            )
            for c in rows
        ]
    )


def knowledge_base_exists() -> bool:
    return Chunk.objects.exists()


def gate_policy_current() -> GatePolicy:
    policy = GatePolicy.objects.order_by("pk").first()
    if policy is None:
        policy, _ = GatePolicy.objects.get_or_create(name="default")
    return policy


def step_policies() -> dict[str, StepPolicy]:
    policies = {p.step: p for p in StepPolicy.objects.all()}
    for step in StepPolicy.Step.values:
        policies.setdefault(step, StepPolicy(step=step))
    return policies


def categories_by_label() -> dict[str, Category]:
    return {c.label: c for c in Category.objects.all()}


def classifier_latest() -> TrainedClassifier | None:
    return TrainedClassifier.objects.defer("blob").order_by("-created_at", "-pk").first()


def step_runs_finished(*, run_id: int) -> QuerySet[StepRun]:
    return StepRun.objects.filter(run_id=run_id, status__in=StepRun.FINISHED)
