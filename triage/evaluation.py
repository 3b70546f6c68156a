"""`evaluate`: learn from a dataset's examples, triage every ticket through the real chain, measure.

It runs in a database of its own, created beside the configured one and dropped afterwards, so
the demo data (or production data) is never touched.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.db.models import QuerySet

from integrations.processes import ForkPool
from triage.contracts import OUT_OF_SCOPE
from triage.datasets import Dataset, LabelledText
from triage.embedding import embed_texts, embedding_memo
from triage.fitcache import FitReuse
from triage.measurement import category_table, risk_coverage, step_figures, ticket_outcomes
from triage.metrics import ReferenceLabels, chain_figures
from triage.models import PipelineRun, StepRun, Ticket
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.risk import ThresholdChoice
from triage.selectors import gate_policy_current
from triage.services import (
    categories_import,
    classifier_train,
    examples_import,
    gate_policy_save,
    knowledge_base_import,
)

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@contextmanager
def isolated_database(alias: str = "default") -> Iterator[str]:
    """Point `alias` at a fresh, migrated database for the duration; drop it afterwards.

    The database is a copy of a migrated template (`_template_copy`), not migrated afresh: running every
    migration cost 1.6 s of each evaluation on the 2-core machine, a template copy a fraction of that.
    Its name carries this machine's tag and this process's id, so that a database a killed process left is
    recognised (`_drop_abandoned`) without mistaking another machine's running evaluation for one.
    """
    conn = connections[alias]
    name = f"triage_eval_{host_tag()}_{os.getpid()}_{secrets.token_hex(3)}"
    with conn._nodb_cursor() as cursor:
        _drop_abandoned(cursor)
        _template_copy(cursor, alias=alias, name=name)
        # The database is dropped afterwards and a crash abandons it anyway, so no commit in it needs to
        # wait for the WAL flush: measured, the flushes were most of a ticket's database time. Only this
        # throw-away database is affected; the runner's durability elsewhere is untouched.
        cursor.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        with _pointed_at(alias, name):
            yield name
    finally:
        with conn._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _pointed_at(alias: str, name: str) -> Iterator[None]:
    """`alias`'s connection is to database `name` for the duration (closed on the way in and out)."""
    conn = connections[alias]
    original = conn.settings_dict["NAME"]
    conn.close()
    conn.settings_dict["NAME"] = name
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict["NAME"] = original


#: The migrated templates' names: this prefix, then the digest of the migrations they hold.
TEMPLATE_PREFIX = "triage_evaltemplate_"
#: An advisory lock key of its own. A copy holds it shared; building a missing template, and dropping the
#: templates of other schemas (another version of the code on the same server: a rolling deploy, two
#: checkouts), hold it exclusively, so no template is dropped while a process copies it.
_TEMPLATE_LOCK = 7_401_113


@functools.cache  # the files cannot change under a running process's imported code
def migrations_digest() -> str:
    """The identity of the schema a migrated database has: Django's version and every migration file's bytes."""
    import django
    from django.db.migrations.loader import MigrationLoader

    h = hashlib.sha256(django.get_version().encode())
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for key, migration in sorted(loader.disk_migrations.items()):
        h.update(repr(key).encode())
        h.update(Path(str(sys.modules[type(migration).__module__].__file__)).read_bytes())
    return h.hexdigest()[:20]


@functools.cache
def host_tag() -> str:
    """Eight hex digits naming this machine in the throw-away databases' names: a process id says whether its
    process is alive only on the machine that started it, and machines of a scale-out share one server."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _template_copy(cursor: Any, *, alias: str, name: str) -> None:
    """Create database `name` as a copy of the template holding every migration of this code, building the
    template first when it is missing (and dropping other schemas' templates then). Built under another name
    and renamed once migrated, so a process never copies a half-built one."""
    template = TEMPLATE_PREFIX + migrations_digest()
    with _template_lock(cursor, shared=True):
        if _database_exists(cursor, template):
            cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
    # Not upgraded from the shared lock: two processes doing so at once would wait for each other.
    with _template_lock(cursor, shared=False):
        if not _database_exists(cursor, template):
            pattern = TEMPLATE_PREFIX.replace("_", "\\_") + "%"  # a LIKE pattern: its underscores literal
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern])
            for (stale,) in cursor.fetchall():  # other schemas', and a build a killed process left
                cursor.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
            building = f"{template}_building"[:63]
            cursor.execute(f'CREATE DATABASE "{building}"')
            with _pointed_at(alias, building):
                call_command("migrate", verbosity=0, interactive=False, database=alias)
            cursor.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        cursor.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


@contextmanager
def _template_lock(cursor: Any, *, shared: bool) -> Iterator[None]:
    """`_TEMPLATE_LOCK` held, shared or exclusive, by `cursor`'s session for the duration."""
    mode = "_shared" if shared else ""
    cursor.execute(f"SELECT pg_advisory_lock{mode}(%s)", [_TEMPLATE_LOCK])
    try:
        yield
    finally:
        cursor.execute(f"SELECT pg_advisory_unlock{mode}(%s)", [_TEMPLATE_LOCK])


def _database_exists(cursor: Any, name: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    return cursor.fetchone() is not None


def _drop_abandoned(cursor: Any) -> None:
    """Drop evaluation databases left by a process of this machine that was killed before it could clean up.
    Another machine's are left alone: whether their process is alive cannot be known from here."""
    cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'triage\\_eval\\_%%'")
    for (name,) in cursor.fetchall():
        match = re.fullmatch(r"triage_eval_([0-9a-f]{8})_(\d+)_[0-9a-f]+", name)
        if match and match.group(1) == host_tag() and not _alive(int(match.group(2))):
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
    sample: int | None = None,
    with_ungated: bool = True,
    provider: str = "local",
    target: float | None = None,
    confidence: float | None = None,
    out_of_scope_share: float | None = None,
    hold_out: int = 0,
    also_targets: Sequence[float] = (),
    details: bool = False,
    workers: int = 1,
    fit_reuse: FitReuse | None = None,
) -> dict[str, Any]:
    """Evaluate in the current database (call inside `isolated_database`). Returns the report.

    `target`, `confidence`, `out_of_scope_share`: the gate policy's maximum mishandled rate, the confidence
    of its guarantee and the share of requests no category covers it is calibrated for (default: the
    policy's defaults). `hold_out`: that many non-money categories are taken out of the
    categories and examples before training, and their tickets become requests inside the domain that
    no category covers (`out_of_scope_in_domain`); the dataset's own `out_of_scope` tickets are text
    about another business (`out_of_scope_other_business`). `also_targets`: the same tickets are triaged
    again (gated) under each of these targets with the same trained classifier; `by_target` reports each.
    `sample`: only that many tickets, spread evenly over the file (`tickets_sample`).
    `details`: also the per-category table (`categories`) and the risk-coverage curves (`risk_coverage`),
    for `evaluate --report`. `workers`: processes that embed the texts, fit the classifier's models and work the
    runs side by side (see `embed_in_processes`, `IntentClassifier.fit`, `runs_work`). `fit_reuse`: the
    classifier an earlier evaluation fitted on the same training set is used instead of a new fit, and a new
    fit is handed to it to keep (`triage.fitcache`; the command keys it with `evaluation_examples`).

    `provider="anthropic"`: Claude classifies the tickets the local classifier is unsure of, and drafts
    (the local drafter stands in when Claude is skipped); tokens and cost are in the report.
    """
    held_out = held_out_categories(dataset=dataset, count=hold_out)
    categories_import(rows=[(label, money) for label, money in dataset.categories.items() if label not in held_out])
    policy = gate_policy_current()
    if target is not None:
        policy.target_mishandled_rate = target
    if confidence is not None:
        policy.guarantee_confidence = confidence
    if out_of_scope_share is not None:
        policy.out_of_scope_share = out_of_scope_share
    gate_policy_save(policy=policy, actor=None)
    examples = evaluation_examples(dataset=dataset, held_out=held_out)
    tickets = tickets_sample(dataset.tickets[:limit] if limit else dataset.tickets, sample)
    with embedding_memo():
        # Every text of the evaluation in one batched pass, shared out to the workers' processes: the model
        # is most of a cold evaluation's time, and it runs fastest on the whole lot sorted by length, one
        # single-threaded process per core (`embed_in_processes`). The rest reads the vectors from memory.
        texts = [text for text, _ in examples] + [t.text for t in tickets]
        tick = progress("embedding examples and tickets", len(texts))
        embed_texts(texts, processes=workers)
        tick(len(texts))
        examples_import(rows=examples, progress=progress("storing examples", len(examples)))
    trained = classifier_train(processes=workers, reuse=fit_reuse)
    if dataset.kb_dir is not None:
        articles = sorted(dataset.kb_dir.glob("*.md"))
        knowledge_base_import(directory=dataset.kb_dir, progress=progress("importing knowledge base", len(articles)))
    router = Router.for_run(PipelineRun())
    if provider != "local":
        router = dataclasses.replace(router, classify_cascade=[provider], draft_providers=[provider, "local"])
    kinds: dict[int, str] = {}  # gated run -> what the ticket truly is
    tick = progress("triaging tickets", len(tickets) * (2 if with_ungated else 1))
    with embedding_memo():
        embed_texts([t.text for t in tickets])  # embedded above: in memory (or the database's cache) already
        rows = _tickets_create(dataset=dataset, tickets=tickets, held_out=held_out, with_ungated=with_ungated)
        for row, (_, gated_run, _) in zip(tickets, rows, strict=True):
            kinds[gated_run.pk] = ticket_kind(dataset=dataset, label=row.label, money=row.money, held_out=held_out)
        pairs = [[gated.pk] + ([ungated.pk] if ungated is not None else []) for _, gated, ungated in rows]
        runs_work(run_groups=pairs, router=router, workers=workers, tick=tick)
    gated_ids = [gated.pk for _, gated, _ in rows]
    ungated_ids = [ungated.pk for _, _, ungated in rows if ungated is not None]
    ticket_ids = [ticket.pk for ticket, _, _ in rows]
    money_tickets = {ticket.pk for row, (ticket, _, _) in zip(tickets, rows, strict=True) if row.money}
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
        **step_figures(outcomes),
        **autonomy_figures(
            runs=PipelineRun.objects.filter(pk__in=gated_ids), kinds=kinds, thresholds=router.thresholds
        ),
        "held_out_categories": sorted(held_out),
        # What the thresholds were calibrated for (the admin's statement; `evaluate` has no inbox to measure it).
        "out_of_scope_share": policy.out_of_scope_share,
    }
    report["by_target"] = [_target_summary(report)]
    if also_targets:
        kind_of_ticket = dict(zip(ticket_ids, (kinds[pk] for pk in gated_ids), strict=True))
        tick = progress("triaging again per target", len(ticket_ids) * len(also_targets))
        for extra in also_targets:
            policy.target_mishandled_rate = extra
            gate_policy_save(policy=policy, actor=None)
            again = Router.for_run(PipelineRun())
            if provider != "local":
                again = dataclasses.replace(again, classify_cascade=[provider], draft_providers=[provider, "local"])
            ids, extra_kinds = [], {}
            created = PipelineRun.objects.bulk_create([PipelineRun(ticket_id=pk) for pk in ticket_ids], batch_size=1000)
            for run in created:
                ids.append(run.pk)
                extra_kinds[run.pk] = kind_of_ticket[run.ticket_id]
            with embedding_memo():
                runs_work(run_groups=[[pk] for pk in ids], router=again, workers=workers, tick=tick)
            runs = PipelineRun.objects.filter(pk__in=ids)
            figures = chain_figures(runs=runs, truth=truth, human_cost=human_cost).as_dict()
            report["by_target"].append(
                _target_summary(figures | autonomy_figures(runs=runs, kinds=extra_kinds, thresholds=again.thresholds))
            )
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


def evaluation_examples(*, dataset: Dataset, held_out: frozenset[str]) -> list[tuple[str, str]]:
    """The (text, label) examples an evaluation learns from: the dataset's, but the held-out categories'."""
    return [(e.text, e.label) for e in dataset.examples if e.label not in held_out]


def tickets_sample[T](tickets: Sequence[T], size: int | None) -> list[T]:
    """`size` of `tickets` spread evenly (the i-th of `size` is at position floor(i * len / size)): a
    deterministic subset that keeps the file's mix, wherever in the file each kind of ticket sits."""
    if size is None or size >= len(tickets):
        return list(tickets)
    if size < 1:
        raise ValueError(f"the sample must hold at least one ticket, not {size}")
    return [tickets[i * len(tickets) // size] for i in range(size)]


def runs_work(
    *, run_groups: Sequence[Sequence[int]], router: Router, workers: int, tick: Callable[[int], None]
) -> None:
    """Work every run through the chain; each group's runs in order, one after the other.

    With `workers` > 1 the groups are shared out to that many forked processes, each with its own
    database connection. Why: a run waits on the database for much of its time and one process leaves a
    core idle meanwhile; the runs of an evaluation are independent (a ticket's gated and ungated runs
    stay together, in order, as one group), so working them side by side changes no figure. Forking (not
    spawning) hands the workers the loaded classifier and the vectors in memory as they are. A worker that
    dies (killed, out of memory) stops the evaluation with an error naming it, instead of leaving it
    waiting forever for that worker's runs (`multiprocessing.Pool` would).
    """
    if workers <= 1 or len(run_groups) < 2:
        for group in run_groups:
            _group_work(group, router)
            tick(len(group))
        return
    global _worker_router
    # Children must not share the parent's connection: each opens its own on first use.
    connections.close_all()
    _worker_router = router
    chunks = [list(run_groups[i : i + _CHUNK]) for i in range(0, len(run_groups), _CHUNK)]
    pool = ForkPool(workers)
    try:
        for future in as_completed([pool.submit(_chunk_work, chunk) for chunk in chunks]):
            tick(future.result())
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a process working the evaluation's runs died ({exc}); the evaluation stopped. Rerun it, or run it "
            "with --workers 1 to see what fails in one process."
        ) from exc
    finally:
        # After a failure the chunks not started yet are dropped (after a success there are none).
        pool.shutdown(wait=True, cancel_futures=True)
        _worker_router = None


#: Groups a worker takes at a time: big enough that handing them out costs nothing, small enough that
#: the progress bar moves and the workers finish together.
_CHUNK = 8
_worker_router: Router | None = None


def _chunk_work(groups: list[Sequence[int]]) -> int:
    assert _worker_router is not None
    for group in groups:
        _group_work(group, _worker_router)
    return sum(len(group) for group in groups)


def _group_work(group: Sequence[int], router: Router) -> None:
    for run_id in group:
        run_pipeline(run_id=run_id, router=router.fresh())


def ticket_kind(*, dataset: Dataset, label: str, money: bool | None, held_out: frozenset[str] = frozenset()) -> str:
    """What a ticket truly is: a held-out category's (in the domain), another business's, money or automatable.

    `money`: the dataset's `money` column (1: the ticket asks for money to move whatever its category)."""
    if label in held_out:
        return "in_domain"
    if label == OUT_OF_SCOPE:
        return "other_business"
    return "money" if dataset.categories[label] or money else "automatable"


def _tickets_create(
    *, dataset: Dataset, tickets: Sequence[LabelledText], held_out: frozenset[str], with_ungated: bool
) -> list[tuple[Ticket, PipelineRun, PipelineRun | None]]:
    """Every ticket with its gated run (and its ungated one), in three bulk inserts.

    Why not `ticket_ingest` per ticket: it looks for a duplicate delivery and opens a transaction per
    ticket, which a fresh evaluation database cannot need; the rows are the ones it writes (a ticket of
    source "evaluate" with its reference label, a run with the configured provider), so the chain works
    them exactly as it works ingested tickets.
    """
    created = Ticket.objects.bulk_create(
        [
            Ticket(
                source="evaluate",
                external_id=f"{dataset.name}:{row.line}",
                body=row.text,
                reference_label=OUT_OF_SCOPE if row.label in held_out else row.label,
            )
            for row in tickets
        ],
        batch_size=1000,
    )
    gated = PipelineRun.objects.bulk_create(
        [PipelineRun(ticket=t, provider=settings.TRIAGE_LLM_PROVIDER) for t in created], batch_size=1000
    )
    ungated: list[PipelineRun | None] = [None] * len(created)
    if with_ungated:
        ungated = list(
            PipelineRun.objects.bulk_create(
                [PipelineRun(ticket=t, gates_enabled=False) for t in created], batch_size=1000
            )
        )
    return list(zip(created, gated, ungated, strict=True))


def held_out_categories(*, dataset: Dataset, count: int) -> frozenset[str]:
    """`count` non-money categories, spread evenly over the sorted labels (the same ones on every run)."""
    if count <= 0:
        return frozenset()
    candidates = sorted(label for label, money in dataset.categories.items() if not money)
    if count > len(candidates) - 2:
        raise ValueError(f"cannot hold out {count} of {len(candidates)} non-money categories: two must remain")
    step = len(candidates) / count
    return frozenset(candidates[int(i * step)] for i in range(count))


def autonomy_figures(
    *, runs: QuerySet[PipelineRun], kinds: dict[int, str], thresholds: ThresholdChoice | None
) -> dict[str, Any]:
    """The calibrated-autonomy figures: the target beside the mishandled rate among auto-handled tickets,
    the share of automatable tickets (in scope, not moving money) automated, and out of scope by kind."""
    auto, wrong, in_scope_auto, in_scope_wrong, in_scope_tickets = 0, 0, 0, 0, 0
    by_kind: dict[str, list[int]] = {kind: [0, 0] for kind in ("automatable", "money", "other_business", "in_domain")}
    rows = runs.values_list(
        "pk", "route", "status", "ticket__reference_label", "steps__step", "steps__status", "steps__output__category"
    )
    seen: dict[int, tuple[bool, bool]] = {}
    for pk, route, status, truth, step, step_status, category in rows:
        handled = route == PipelineRun.Route.AUTO and status == PipelineRun.Status.COMPLETED
        right = seen.get(pk, (handled, False))[1]
        if step == "classify" and step_status == StepRun.Status.SUCCEEDED:
            right = category == truth and truth != OUT_OF_SCOPE and kinds.get(pk) == "automatable"
        seen[pk] = (handled, right)
    for pk, (handled, right) in seen.items():
        entry = by_kind[kinds.get(pk, "automatable")]
        entry[0] += 1
        entry[1] += handled
        if handled:
            auto += 1
            wrong += not right
        if kinds.get(pk) in ("automatable", "money"):  # the dataset without its out-of-scope tickets
            in_scope_tickets += 1
            in_scope_auto += handled
            in_scope_wrong += handled and not right
    automatable = by_kind["automatable"]
    return {
        "target_mishandled_rate": thresholds.target if thresholds else None,
        "guarantee_confidence": thresholds.confidence if thresholds else None,
        "mishandled_among_auto_handled": wrong / auto if auto else None,
        "automatable_tickets": automatable[0],
        "automatable_share_automated": automatable[1] / automatable[0] if automatable[0] else None,
        "out_of_scope_other_business": {
            "tickets": by_kind["other_business"][0],
            "auto_handled": by_kind["other_business"][1],
        },
        "out_of_scope_in_domain": {"tickets": by_kind["in_domain"][0], "auto_handled": by_kind["in_domain"][1]},
        "money_tickets": {"tickets": by_kind["money"][0], "auto_handled": by_kind["money"][1]},
        "in_scope_only": {
            "tickets": in_scope_tickets,
            "auto_handled": in_scope_auto,
            "automation_rate": in_scope_auto / in_scope_tickets if in_scope_tickets else None,
            "mishandled": in_scope_wrong,
            "mishandled_among_auto_handled": in_scope_wrong / in_scope_auto if in_scope_auto else None,
        },
        "thresholds": None
        if thresholds is None
        else {
            "pooled": thresholds.threshold,
            "own": {c.category: c.threshold for c in thresholds.categories.values() if c.source == "own"},
            "refused": thresholds.refused,
            "calibration_tickets": thresholds.calibration_tickets,
            "calibration_coverage": thresholds.coverage,
        },
    }


_SUMMARY_KEYS = (
    "target_mishandled_rate",
    "guarantee_confidence",
    "tickets",
    "auto_handled",
    "automation_rate",
    "automatable_share_automated",
    "mishandled",
    "mishandled_rate",
    "mishandled_among_auto_handled",
    "money_auto_executed",
    "out_of_scope_other_business",
    "out_of_scope_in_domain",
    "money_tickets",
    "in_scope_only",
    "thresholds",
)


def _target_summary(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: figures.get(key) for key in _SUMMARY_KEYS}
