"""Reads. Keyword-only, typed, returning models or contracts."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone
from pgvector.django import CosineDistance

from integrations.models import McpServer, McpTool
from triage.contracts import Passage, Retrieval
from triage.durability import statement_prepared
from triage.models import (
    Action,
    ActionTool,
    Category,
    Chunk,
    GatePolicy,
    LabelledExample,
    LookupTool,
    PipelineRun,
    StepPolicy,
    StepRun,
    Ticket,
    TrainedClassifier,
)
from triage.vectors import vector_literal

#: Candidates the HNSW index keeps while it searches (pgvector's `hnsw.ef_search`, default 40): more is
#: slower and finds more of the true nearest chunks. Chosen with `bench/retrieval.py` (README, Knowledge-base
#: search): at 100,000 chunks the index (m=16, ef_construction=64) found 0.894 of the exact top 5 at 40,
#: 0.943-0.965 at 80 (from one index build to the next) and 0.967-0.979 at 160, where p95 was 2.24 ms.
HNSW_EF_SEARCH = 160


def hnsw_session_set(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """Every new PostgreSQL connection searches with `HNSW_EF_SEARCH` (a `connection_created` receiver).

    Set once per session rather than per query: a `SET LOCAL` needs a transaction of its own, three more
    round trips on every search of the runner's hot path. (A transaction-pooling proxy such as PgBouncer
    in transaction mode would not keep a session setting: the search then runs at pgvector's default.)
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET hnsw.ef_search = {int(HNSW_EF_SEARCH)}")


def chunk_search(*, embedding: np.ndarray | Sequence[float], limit: int = 4) -> Retrieval:
    """The `limit` knowledge-base chunks nearest to `embedding` (cosine), best first.

    The index searches with the connection's `hnsw.ef_search`: `HNSW_EF_SEARCH`, set when the connection
    opened (`hnsw_session_set`); bench/retrieval.py sets other values on its own connection.
    """
    vector = vector_literal(embedding)
    with connection.cursor() as cursor:
        cursor.execute(*statement_prepared(_chunk_search_sql(limit), [vector]))
        found = cursor.fetchall()
    return Retrieval(
        passages=[
            Passage(
                chunk_id=pk,
                article_id=article_id,
                article_title=title,
                heading=heading,
                text=text,
                score=max(-1.0, min(1.0, 1.0 - float(distance))),
            )
            for pk, article_id, title, heading, text, distance in found
        ]
    )


@functools.cache
def _chunk_search_sql(limit: int) -> str:
    """The search's SQL, compiled by the ORM once per process and `limit`; its one parameter is the vector.

    Why not the queryset each time: compiling it cost 0.40 ms of a 0.92 ms search (on 80 chunks, where
    the database's own work is 0.08 ms), and every run searches once. Only the columns a passage shows
    are read: a chunk's own embedding (384 floats sent as text and parsed back) and its article's body
    are not, and no model instance is built.
    """
    query = (
        Chunk.objects.annotate(distance=CosineDistance("embedding", [0.0]))
        .order_by("distance")
        .values_list("pk", "article_id", "article__title", "heading", "text", "distance")[:limit]
    )
    sql, params = query.query.sql_with_params()
    if len(params) != 1:  # the vector, and nothing else: the limit is written into the SQL
        raise RuntimeError(f"chunk search compiled with {len(params)} parameters: {sql}")
    return sql


def gate_policy_current() -> GatePolicy:
    """The gate policy (created with its defaults the first time it is read)."""
    return GatePolicy.get_solo()


def step_policies() -> dict[str, StepPolicy]:
    policies = {p.step: p for p in StepPolicy.objects.all()}
    for step in StepPolicy.Step.values:
        policies.setdefault(step, StepPolicy(step=step))
    return policies


def categories_by_label() -> dict[str, Category]:
    """Every category, with its look-up tool (if any) in the same query: the look-up step reads it from here."""
    return {c.label: c for c in Category.objects.select_related("lookup__tool__server")}


@dataclass(frozen=True)
class ChainSettings:
    """What every run reads of the admin's configuration: the gate policy, the categories (with their look-up
    tools) and the action kinds carried out by a tool. Shared by the runs of a process: read-only."""

    policy: GatePolicy
    categories: dict[str, Category]
    action_kinds: frozenset[str]
    fingerprint: str


def action_kinds_mapped() -> frozenset[str]:
    """The action kinds an active action tool carries out (the others are recorded only)."""
    return frozenset(ActionTool.objects.filter(active=True).values_list("kind", flat=True))


def _chain_settings_tables() -> list[str]:
    # The tools' and servers' tables too: whether a look-up may be used depends on their `active`.
    models = (GatePolicy, Category, LookupTool, McpTool, McpServer, ActionTool)
    return [m._meta.db_table for m in models]


@functools.cache
def _chain_settings_fingerprint_sql() -> str:
    parts = ", ".join(
        f"(SELECT string_agg(r.xmin::text || r.ctid::text, ',' ORDER BY r.ctid) FROM \"{table}\" r)"
        for table in _chain_settings_tables()
    )
    return f"SELECT md5(concat_ws('#', {parts}))"


def chain_settings_fingerprint() -> tuple[str, list[Any]]:
    """One statement whose single value changes whenever any row `ChainSettings` is read from changes.

    A hash of the identities of those tables' row versions, computed by the server: each row's `xmin` (the
    transaction that wrote this version of it) and `ctid` (where the version lies). Any write makes a new
    version with a new `xmin` (transaction ids are not reused), a delete removes one, and a version nobody
    changed keeps both, so the hash moves exactly when a row was written, however: admin, shell, raw SQL, a
    migration; an edit rolled back leaves the hash as it was, with the rows. A run sends it with its claim
    and finds out whether the process's copy still holds without building a model instance. Hashing the
    rows' text instead cost the server about 0.35 ms a run with 77 categories (their descriptions turned
    into text every time); this costs 0.15 ms.
    """
    return _chain_settings_fingerprint_sql(), []


_chain_settings: ChainSettings | None = None


def chain_settings_current(*, fingerprint: str) -> ChainSettings:
    """The configuration runs read, as of `fingerprint` (from `chain_settings_fingerprint`, read just now).

    Read from the database once per process and again only when the fingerprint moved: categories, policy
    and tool mappings change a few times a day, runs come many a second, and building ~80 category instances
    per run cost more than the rest of a run's Python. A run that races an edit may use the copy from just
    before it, as it would have had it read the tables a moment earlier.
    """
    global _chain_settings
    cached = _chain_settings
    if cached is not None and cached.fingerprint == fingerprint:
        return cached
    policy = gate_policy_current()
    kinds = action_kinds_mapped()
    fresh = ChainSettings(policy=policy, categories=categories_by_label(), action_kinds=kinds, fingerprint=fingerprint)
    # A policy created by this very read (`get_solo`) moves the fingerprint: the next run reads once more.
    _chain_settings = fresh
    return fresh


def classifier_latest() -> TrainedClassifier | None:
    """The classifier version new runs use: the active one (the newest when none is marked active)."""
    # The blob and the calibration data are large; they are read only where needed (and cached there).
    versions = TrainedClassifier.objects.defer("blob", "calibration")
    return versions.filter(active=True).first() or versions.order_by("-created_at", "-pk").first()


@dataclass(frozen=True)
class TrainingSet:
    """What a classifier version learns from: texts, their labels and embeddings, and a summary of where
    they came from (stored on the version)."""

    texts: list[str]
    labels: list[str]
    embeddings: np.ndarray
    summary: dict[str, Any]
    labels_until: datetime | None


def training_set_select(*, labels_before: datetime | None = None) -> TrainingSet:
    """Every learnable label: imported examples and inbox labels (confirmed, corrected), without the ones
    flagged as conflicting, and each (text, category) once. `labels_before`: only inbox labels decided
    before then (the rest is held out to compare models on). A `wrong` label says what a text is not: it is
    never learned as a category."""
    rows = LabelledExample.objects.filter(conflict=False).exclude(source=LabelledExample.Source.WRONG)
    if labels_before is not None:
        rows = rows.filter(Q(ticket__isnull=True) | Q(labelled_at__lt=labels_before))
    texts: list[str] = []
    labels: list[str] = []
    vectors: list[Any] = []
    seen: set[tuple[str, str]] = set()
    by_source: dict[str, int] = {}
    newest: datetime | None = None
    for text, label, vector, source, labelled_at in rows.order_by("pk").values_list(
        "text", "category__label", "embedding", "source", "labelled_at"
    ):
        if (text, label) in seen:
            continue
        seen.add((text, label))
        texts.append(text)
        labels.append(label)
        vectors.append(vector)
        by_source[source] = by_source.get(source, 0) + 1
        if source != LabelledExample.Source.IMPORT and (newest is None or labelled_at > newest):
            newest = labelled_at
    excluded = LabelledExample.objects.filter(conflict=True).count()
    summary: dict[str, Any] = {
        "examples": len(texts),
        "by_source": by_source,
        "conflicting_left_out": excluded,
        "newest_inbox_label": newest.isoformat() if newest else None,
    }
    until = labels_before or timezone.now()
    # No label at all (a fresh install): an empty set, which the callers refuse with a clear error.
    embeddings = (
        np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1) if vectors else np.empty((0, 0), np.float32)
    )
    return TrainingSet(texts=texts, labels=labels, embeddings=embeddings, summary=summary, labels_until=until)


@dataclass(frozen=True)
class HeldOutLabel:
    """An inbox label a model is judged on: the category a person gave (`wrong`: the category it is not)."""

    text: str
    embedding: np.ndarray
    category: str
    wrong: bool
    labelled_at: datetime
    ticket_id: int | None = None


def inbox_labels_select(*, after: datetime | None) -> list[HeldOutLabel]:
    """Inbox labels decided after `after` (all of them when None), oldest first, without conflicting ones."""
    rows = LabelledExample.objects.filter(ticket__isnull=False, conflict=False)
    if after is not None:
        rows = rows.filter(labelled_at__gt=after)
    return [
        HeldOutLabel(
            text=text,
            embedding=np.asarray(vector, dtype=np.float32),
            category=label,
            wrong=source == LabelledExample.Source.WRONG,
            labelled_at=labelled_at,
            ticket_id=ticket_id,
        )
        for text, vector, label, source, labelled_at, ticket_id in rows.order_by("labelled_at", "pk").values_list(
            "text", "embedding", "category__label", "source", "labelled_at", "ticket_id"
        )
    ]


def ticket_category_acted_on(*, ticket_id: int) -> str:
    """The category the ticket's latest auto-handled run acted on ('' when none is recorded)."""
    output = (
        StepRun.objects.filter(
            run__ticket_id=ticket_id,
            run__route=PipelineRun.Route.AUTO,
            step="classify",
            status=StepRun.Status.SUCCEEDED,
        )
        .order_by("-run__created_at", "-pk")
        .values_list("output__category", flat=True)
        .first()
    )
    return output if isinstance(output, str) else ""


@dataclass(frozen=True)
class TrafficTicket:
    """A ticket as the classifier reads it, whether or not anyone labelled it."""

    ticket_id: int
    text: str


def tickets_since_select(*, since: datetime, exclude: Iterable[int] | QuerySet[Any, Any] = ()) -> list[TrafficTicket]:
    """Every ticket created at or after `since`, oldest first, whatever its route (auto-handled tickets
    included: nobody labelled them, yet they are the traffic), but those in `exclude` (ids, or a query of
    them), with the text the chain classifies (`Ticket.text`)."""
    rows = Ticket.objects.filter(created_at__gte=since).exclude(pk__in=exclude).order_by("created_at", "pk")
    return [TrafficTicket(ticket_id=t.pk, text=t.text) for t in rows.only("subject", "body")]


# --- the ticket trace (the staff app's trace page) ----------------------------------------------


@dataclass
class StepView:
    step_run: StepRun
    verdicts: list[dict[str, Any]]
    routing: list[dict[str, Any]]
    output: dict[str, Any]
    output_json: str

    @property
    def failed_verdicts(self) -> list[dict[str, Any]]:
        return [v for v in self.verdicts if not v.get("passed")]


@dataclass
class RunTrace:
    run: PipelineRun
    steps: list[StepView]
    actions: list[Action]
    approval: Any | None
    decisions: list[Any]
    latency_ms: float
    tokens: int
    cost: Decimal


@dataclass
class TicketTrace:
    ticket: Ticket
    runs: list[RunTrace]

    @property
    def can_mark_mishandled(self) -> bool:
        return self.ticket.status == Ticket.Status.AUTO_HANDLED and self.ticket.mishandled_at is None


def ticket_trace(*, ticket_id: int) -> TicketTrace:
    """The ticket with every run as a timeline of step attempts, its actions and the human decision.

    The approval and its decisions come through the ORM's reverse relations (`approval`,
    `approval__decisions`), so triage does not import the approvals app.
    """
    ticket = Ticket.objects.select_related("mishandled_by").get(pk=ticket_id)
    runs = (
        PipelineRun.objects.filter(ticket=ticket)
        .order_by("created_at", "pk")
        .prefetch_related(
            Prefetch("steps", queryset=StepRun.objects.order_by("started_at", "pk")),
            Prefetch("actions", queryset=Action.objects.order_by("pk")),
            "approval__decisions__actor",
        )
    )
    traces = []
    for run in runs:
        views = []
        for s in run.steps.all():
            output = s.output if isinstance(s.output, dict) else {}
            views.append(
                StepView(
                    step_run=s,
                    verdicts=list(s.verdicts or []),
                    routing=list(output.get("routing") or []) if s.step == "classify" else [],
                    output=output,
                    output_json=json.dumps(s.output, indent=2, sort_keys=True, ensure_ascii=False, default=str),
                )
            )
        approval = getattr(run, "approval", None)
        traces.append(
            RunTrace(
                run=run,
                steps=views,
                actions=list(run.actions.all()),
                approval=approval,
                decisions=list(approval.decisions.all()) if approval is not None else [],
                latency_ms=sum(v.step_run.latency_ms for v in views),
                tokens=sum(v.step_run.tokens_in + v.step_run.tokens_out for v in views),
                cost=sum((v.step_run.cost for v in views), Decimal("0")),
            )
        )
    return TicketTrace(ticket=ticket, runs=traces)
