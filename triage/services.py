"""Writes: ingesting tickets, importing the knowledge base and examples, training, side effects."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from integrations.tracing import carrier_current
from triage.classifier import IntentClassifier
from triage.contracts import MONEY_ACTIONS, TicketIn
from triage.datasets import article_category_split
from triage.embedding import embed_texts
from triage.fitcache import FitReuse
from triage.learning import classifier_version_store
from triage.models import (
    Action,
    Article,
    Category,
    Chunk,
    GatePolicy,
    LabelledExample,
    PipelineRun,
    TargetChange,
    Ticket,
    TrainedClassifier,
)
from triage.pipeline.steps.execute import MONEY_PERMISSION
from triage.selectors import ticket_category_acted_on, training_set_select
from triage.tasks import enqueue_run
from triage.writeback import action_carry_out, writer_for

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class IngestResult:
    ticket: Ticket
    run: PipelineRun
    created: bool


def ticket_ingest(*, ticket_in: TicketIn, reference_label: str = "", enqueue: bool = True) -> IngestResult:
    """Create the ticket and its run in one transaction, and enqueue the run after commit.

    A ticket already known by (source, external id) is returned as it is: no second ticket, no
    second run, so a helpdesk that delivers twice changes nothing.
    """
    existing = Ticket.objects.filter(source=ticket_in.source, external_id=ticket_in.external_id).first()
    if existing is not None:
        return IngestResult(existing, existing.runs.order_by("pk").first() or _missing_run(existing), False)
    try:
        with transaction.atomic():
            ticket = Ticket.objects.create(
                source=ticket_in.source,
                external_id=ticket_in.external_id,
                subject=ticket_in.subject,
                body=ticket_in.body,
                requester=ticket_in.requester,
                tags=ticket_in.tags,
                reference_label=reference_label,
            )
            # The request's trace context (none when tracing is off): the run's trace, worked later by a
            # worker, links back to it.
            request_trace = carrier_current()
            run = PipelineRun.objects.create(
                ticket=ticket,
                provider=settings.TRIAGE_LLM_PROVIDER,
                trace_context={"request": request_trace} if request_trace else {},
            )
            if enqueue:
                enqueue_run(run_id=run.pk)
    except IntegrityError:
        # A concurrent delivery of the same ticket won the race; answer with its rows.
        ticket = Ticket.objects.get(source=ticket_in.source, external_id=ticket_in.external_id)
        return IngestResult(ticket, ticket.runs.order_by("pk").first() or _missing_run(ticket), False)
    return IngestResult(ticket, run, True)


def _missing_run(ticket: Ticket) -> PipelineRun:
    raise RuntimeError(f"ticket {ticket.pk} has no run; tickets are created with their run in one transaction")


# --- knowledge base -------------------------------------------------------------------------------

HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass(frozen=True)
class ArticleSource:
    slug: str
    title: str
    body: str
    category: str | None = None


def article_parse(*, path: Path) -> ArticleSource:
    """A Markdown article: an optional first line `category: <label>` (the category it answers), then the
    first `# ` heading is its title (else the file name)."""
    category, text = article_category_split(path.read_text(encoding="utf-8"))
    text = text.strip()
    if not text:
        raise ValueError(f"{path.name}: the article is empty")
    first, _, rest = text.partition("\n")
    match = HEADING.match(first)
    title = match.group(2).strip() if match and len(match.group(1)) == 1 else path.stem.replace("-", " ").capitalize()
    body = rest.strip() if match and len(match.group(1)) == 1 else text
    return ArticleSource(slug=slugify(path.stem)[:200], title=title[:300], body=body, category=category)


def article_chunks(*, title: str, body: str, max_words: int = 120) -> list[tuple[str, str]]:
    """(heading, text) chunks: one per section, long sections split on paragraphs."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in body.splitlines():
        match = HEADING.match(line)
        if match:
            sections.append((match.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    chunks = []
    for heading, lines in sections:
        paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
        current: list[str] = []
        for paragraph in paragraphs:
            if current and len(" ".join(current + [paragraph]).split()) > max_words:
                chunks.append((heading, "\n\n".join(current)))
                current = []
            current.append(paragraph)
        if current:
            chunks.append((heading, "\n\n".join(current)))
    return chunks


def article_upsert(*, slug: str, title: str, body: str, category: Category | None = None) -> Article:
    """Create or update an article (with the category it answers, if any) and re-embed its chunks (only new
    texts reach the model)."""
    pieces = article_chunks(title=title, body=body)
    embeddings = embed_texts(
        [f"{title}. {heading}. {text}" if heading else f"{title}. {text}" for heading, text in pieces]
    )
    with transaction.atomic():
        article, _ = Article.objects.update_or_create(
            slug=slug, defaults={"title": title, "body": body, "category": category}
        )
        article.chunks.all().delete()
        Chunk.objects.bulk_create(
            Chunk(article=article, ordinal=i, heading=heading[:300], text=text, embedding=vector)
            for i, ((heading, text), vector) in enumerate(zip(pieces, embeddings, strict=True))
        )
    return article


def knowledge_base_import(*, directory: Path, progress: Progress | None = None) -> list[Article]:
    files = sorted(directory.glob("*.md"))
    if not files:
        raise ValueError(f"{directory}: no Markdown (*.md) articles found")
    sources = [article_parse(path=path) for path in files]
    categories = {c.label: c for c in Category.objects.all()}
    for path, source in zip(files, sources, strict=True):
        if source.category is not None and source.category not in categories:
            raise ValueError(f"{path}:1: category {source.category!r} does not exist; nothing was imported")
    articles = []
    for source in sources:
        category = categories[source.category] if source.category is not None else None
        articles.append(article_upsert(slug=source.slug, title=source.title, body=source.body, category=category))
        if progress:
            progress(1)
    return articles


# --- categories, examples, training ----------------------------------------------------------------


def categories_import(*, rows: Iterable[tuple[str, bool]]) -> list[Category]:
    out = []
    for label, money in rows:
        category, _ = Category.objects.update_or_create(
            label=label, defaults={"money": money, "name": label.replace("_", " ").capitalize()}
        )
        out.append(category)
    return out


def examples_import(*, rows: Sequence[tuple[str, str]], progress: Progress | None = None) -> int:
    """Store labelled examples (text, label) with their embeddings. Labels must be known categories."""
    categories = {c.label: c for c in Category.objects.all()}
    unknown = sorted({label for _, label in rows if label not in categories})
    if unknown:
        raise ValueError(f"examples name categories that do not exist: {', '.join(unknown[:10])}")
    created = 0
    for start in range(0, len(rows), 256):
        batch = rows[start : start + 256]
        vectors = embed_texts([text for text, _ in batch])
        objs = LabelledExample.objects.bulk_create(
            [
                LabelledExample(text=t, category=categories[label], embedding=v)
                for (t, label), v in zip(batch, vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        created += len(objs)
        if progress:
            progress(len(batch))
    return created


def classifier_train(
    *, activate: bool = True, processes: int | None = None, reuse: FitReuse | None = None
) -> TrainedClassifier:
    """Fit the local classifier on every learnable label (imported examples and inbox labels) and store it as
    a new version; `activate`: new runs use it (`manage.py retrain` adds challengers with activate=False).
    `processes`: the fit's independent model fits run side by side in up to that many forked processes
    (default: one per core, up to four; the model is the same either way, see `IntentClassifier.fit`).
    `reuse` (`evaluate`): the classifier an earlier evaluation fitted on exactly this training set is used
    instead of a new fit, and a new fit is handed to it to keep (`triage.fitcache`)."""
    training = training_set_select()
    if len(set(training.labels)) < 2:
        raise ValueError("the classifier needs labelled examples of at least two categories")
    model = reuse.model_for(training) if reuse is not None else None
    fitted = model is None
    if model is None:
        model = IntentClassifier.fit(
            texts=training.texts, embeddings=training.embeddings, labels=training.labels, processes=processes
        )
    version = classifier_version_store(model=model, training=training, activate=activate)
    if reuse is not None and fitted:
        reuse.keep(training, model, bytes(version.blob))
    return version


def gate_policy_save(*, policy: GatePolicy, actor: AbstractBaseUser | None) -> GatePolicy:
    """Save the gate policy; a changed target or confidence is recorded (the Reports page's target over time)."""
    with transaction.atomic():
        policy.save()
        last = TargetChange.objects.order_by("-changed_at", "-id").first()
        if last is None or (last.target_mishandled_rate, last.guarantee_confidence) != (
            policy.target_mishandled_rate,
            policy.guarantee_confidence,
        ):
            TargetChange.objects.create(
                target_mishandled_rate=policy.target_mishandled_rate,
                guarantee_confidence=policy.guarantee_confidence,
                changed_by_id=actor.pk if actor is not None else None,
            )
    return policy


# --- staff feedback ---------------------------------------------------------------------------------


class MishandledMarkError(ValueError):
    """The ticket cannot be marked mishandled; `reason` is shown to the person who tried."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def ticket_mark_mishandled(*, ticket_id: int, actor: AbstractBaseUser) -> Ticket:
    """Staff say an auto-handled ticket was handled wrongly. Feeds the mishandled rate; marked once.

    Only auto-handled tickets can be marked: a person already owned the outcome of the others.
    """
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
        if ticket.status != Ticket.Status.AUTO_HANDLED:
            raise MishandledMarkError("Only an auto-handled ticket can be marked as mishandled.")
        if ticket.mishandled_at is not None:
            raise MishandledMarkError("This ticket is already marked as mishandled.")
        ticket.mishandled_at = timezone.now()
        ticket.mishandled_by_id = actor.pk
        ticket.save(update_fields=["mishandled_at", "mishandled_by", "updated_at"])
        handled_as = ticket_category_acted_on(ticket_id=ticket.pk)
        if handled_as:
            ticket_label_record(
                ticket_id=ticket.pk,
                category=handled_as,
                source=LabelledExample.Source.WRONG,
                actor=actor,
                proposed_category=handled_as,
            )
    logger.info("ticket %s marked mishandled by %s", ticket.pk, actor)
    return ticket


class OutcomeSettleError(Exception):
    """An unknown-outcome action cannot be settled as asked; `reason` is shown to the person who tried."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def action_outcome_settle(*, action_id: int, actor: AbstractUser, carried_out: bool) -> Action:
    """A person checked an action whose outcome was unknown (`Action.Status.UNKNOWN`): it was carried out
    (recorded as done, nothing is sent), or it was not (carried out now, once).

    Carrying out anything that moves money needs the money-approval permission, as deciding it did.
    """
    with transaction.atomic():
        action = Action.objects.select_for_update().select_related("run__ticket").get(pk=action_id)
        if action.status != Action.Status.UNKNOWN:
            raise OutcomeSettleError("This action is not waiting for a check: someone may have settled it already.")
        moves_money = action.kind in MONEY_ACTIONS or action.payload.get("amount") is not None
        if not carried_out and moves_money and not actor.has_perm(MONEY_PERMISSION):
            raise OutcomeSettleError("Carrying out an action that moves money needs the money-approval permission.")
        who = actor.get_username()
        if carried_out:
            action.status = Action.Status.DONE
            action.result = {"outcome": "carried out, checked in the helpdesk", "confirmed_by": who}
            action.executed_at = timezone.now()
            action.error = ""
        else:
            # Checked and found absent: an ordinary failed attempt, so carrying it out again is no guess.
            action.status = Action.Status.FAILED
            action.error = f"Checked by {who}: not carried out, so carried out again."
        action.claimed_at = None
        action.save(update_fields=["status", "result", "executed_at", "error", "claimed_at"])
    logger.info("action %s: unknown outcome settled by %s (carried out: %s)", action.pk, who, carried_out)
    if carried_out:
        return action
    # Outside the transaction: no row lock is held while the helpdesk is called.
    return action_carry_out(action_id=action.pk, writer=writer_for(action.run.ticket.source))


# --- labels from the inbox ---------------------------------------------------------------------------


def ticket_label_record(
    *,
    ticket_id: int,
    category: str,
    source: str,
    actor: AbstractBaseUser | None,
    proposed_category: str = "",
    decision_id: int | None = None,
) -> LabelledExample | None:
    """A person's decision about a ticket becomes a labelled example, with who, when and from which decision.

    `source`: confirmed (approved as proposed), corrected (category edited; `category` is the new one) or
    wrong (an auto-handled ticket marked mishandled; `category` is the one it is NOT). One label per ticket:
    a later decision replaces an earlier one. Identical texts whose labels contradict each other are flagged
    `conflict` and left out of training until a person settles them. Returns None when `category` is not a
    category (e.g. out of scope: nothing to learn as a class). Call it inside the decision's transaction.
    """
    if source not in {LabelledExample.Source.CONFIRMED, LabelledExample.Source.CORRECTED, LabelledExample.Source.WRONG}:
        raise ValueError(f"not an inbox label: {source!r}")
    target = Category.objects.filter(label=category).first()
    if target is None:
        return None
    ticket = Ticket.objects.get(pk=ticket_id)
    text = ticket.text  # what the chain classified: the label is learned on it
    embedding = embed_texts([text])[0]
    example, _ = LabelledExample.objects.update_or_create(
        ticket=ticket,
        defaults={
            "text": text,
            "category": target,
            "embedding": embedding,
            "source": source,
            "labelled_by_id": actor.pk if actor is not None else None,
            "labelled_at": timezone.now(),
            "decision_id": decision_id,
            "proposed_category": proposed_category,
        },
    )
    labels_conflicts_refresh(text=text)
    example.refresh_from_db(fields=["conflict"])
    logger.info("ticket %s labelled %s %s by %s", ticket_id, source, category, actor)
    return example


def labels_conflicts_refresh(*, text: str) -> bool:
    """Flag every label of `text` when they contradict each other (two categories, or a category and a
    `wrong` mark for it); clear the flag when they agree again. Returns whether they conflict."""
    rows = list(LabelledExample.objects.filter(text=text).values_list("category_id", "source"))
    said = {category for category, source in rows if source != LabelledExample.Source.WRONG}
    denied = {category for category, source in rows if source == LabelledExample.Source.WRONG}
    conflict = len(said) > 1 or bool(said & denied)
    LabelledExample.objects.filter(text=text).exclude(conflict=conflict).update(conflict=conflict)
    return conflict
