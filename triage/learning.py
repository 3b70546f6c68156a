"""Learning from the inbox: train a challenger on examples plus inbox labels, compare it with the active
classifier on recent tickets neither has learned from, promote it only when it automates more of them at
the same guaranteed target; and roll back to an earlier version.

The comparison (`classifier_score`), in two parts:

1. **The guarantee, on each model's own calibration data.** Each model gets the thresholds it would have
   in force: the risk-control chooser (`triage.risk.thresholds_choose`, Learn then Test) at the admin's
   target, confidence and minimum per category, on data that model never trained on. The challenger's is
   its out-of-fold predictions on everything it learned from (the examples *and* the inbox labels before
   the held-out ones, with the unseen-category examples: `IntentClassifier.calibration`); the active
   version's is what is in force for it (`triage.autonomy.calibration_set`) without the held-out tickets.
   So both are certified at the same target and confidence, each on hundreds or thousands of tickets.
2. **The comparison, on recent tickets neither trained on.** How much each model automates is counted on
   the *traffic* of the held-out period: every ticket created since the first held-out one, labelled or
   not, but those the challenger learned from (automating needs no label: a ticket is automated when its
   predicted category is neither money-moving nor out of scope and its confidence meets the certified
   threshold). Whether it automates them *rightly* is judged on the held-out labelled tickets (the newest
   inbox labels): how many of those it would auto-handle wrongly.

The challenger is promoted when it automates more of that traffic and its mistakes among the held-out
labelled tickets are no evidence that it exceeds the target (a one-sided binomial test at the admin's
confidence). Why the traffic and not the held-out labels for the automation: the held-out labels are the
tickets sent to a person, nearly all of them because the *active* model was unsure of them, so counting
automation there is rigged against it (it automates almost none of them by construction) and for any
challenger that is sure of a few. On banking77 from 10 examples per category that promoted a challenger
that auto-handled 34 held-out tickets against the active version's 20, while on the same period's traffic
it would have automated fewer tickets than the active version (135 against 157 of the period's 569
tickets, as bench/learning_curve.py printed on 2026-11-29 once it counted them): automation fell from 27.4%
to 23.4% after that promotion. Certifying on the held-out tickets alone, as this once did, cannot work while
a model learns either: at 1% it takes 230 of them with no mistake at all. A challenger whose own
calibration data cannot certify the target automates nothing and is not promoted: the product does not
guess.

A `wrong` label (marked mishandled) judges a model only when it would put the ticket in that same category
again (wrong); otherwise its true category is unknown and that ticket is not counted for that model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from integrations.embeddings import MODEL_NAME
from triage.autonomy import CalibrationSet, calibration_examples, calibration_set
from triage.classifier import IntentClassifier, Prediction
from triage.embedding import embed_texts
from triage.models import Category, LabelledExample, Ticket, TrainedClassifier
from triage.pipeline.router import classifier_load
from triage.risk import upper_bound, zero_error_sample_size
from triage.selectors import (
    HeldOutLabel,
    TrafficTicket,
    TrainingSet,
    classifier_latest,
    gate_policy_current,
    inbox_labels_select,
    tickets_since_select,
    training_set_select,
)

logger = logging.getLogger(__name__)

#: Of the labels the active version never saw, the newest share is held out to judge both models on.
HOLDOUT_SHARE = 0.5


@dataclass(frozen=True)
class ModelScore:
    """How one model does on the held-out labelled tickets, under the thresholds certified on its own
    calibration data."""

    threshold: float | None  # the pooled threshold; None: its calibration data cannot certify the target
    judged: int
    automated: int
    wrong: int
    bound: float | None  # upper confidence bound on the error among the automated held-out tickets
    reason: str = ""
    calibration_tickets: int = 0
    calibration_coverage: float = 0.0  # share of its calibration tickets its thresholds auto-handle
    exceeds_target: bool = False  # its held-out mistakes show, at the admin's confidence, more than the target
    traffic: int = 0  # tickets of the held-out period (labelled or not) it was judged on
    traffic_automated: int = 0  # of them, the ones it would auto-handle

    @property
    def automation_rate(self) -> float:
        return self.automated / self.judged if self.judged else 0.0

    @property
    def error_rate(self) -> float:
        """Wrong among the tickets it would auto-handle."""
        return self.wrong / self.automated if self.automated else 0.0

    @property
    def traffic_automation_rate(self) -> float:
        return self.traffic_automated / self.traffic if self.traffic else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "automation_rate": self.automation_rate,
            "error_rate": self.error_rate,
            "traffic_automation_rate": self.traffic_automation_rate,
        }


@dataclass(frozen=True)
class RetrainOutcome:
    promoted: bool
    reason: str
    challenger: TrainedClassifier | None
    active: TrainedClassifier | None
    held_out: int
    challenger_score: ModelScore | None = None
    active_score: ModelScore | None = None


def exceeds_target(*, wrong: int, automated: int, target: float, confidence: float) -> bool:
    """Whether `wrong` mistakes among `automated` tickets reject "the error is at most `target`" at level
    1 - `confidence` (exact one-sided binomial test): evidence, not noise, that the target is exceeded."""
    from scipy.stats import binom

    if automated == 0 or wrong == 0:
        return False
    return bool(binom.sf(wrong - 1, automated, target) < 1.0 - confidence)


def classifier_score(
    *,
    model: IntentClassifier,
    calibration: CalibrationSet,
    held_out: list[HeldOutLabel],
    money_labels: set[str],
    target: float,
    confidence: float,
    min_per_category: int,
    traffic: list[TrafficTicket] | None = None,
    traffic_embeddings: np.ndarray | None = None,
) -> ModelScore:
    """See the module docstring: the thresholds `calibration` certifies for `model` at `target` with
    `confidence`, what they would auto-handle among `held_out` and how much of it wrongly, and how many of
    the `traffic` tickets (with their `traffic_embeddings`, row for row) they would auto-handle."""
    choice = calibration.thresholds(target=target, confidence=confidence, min_per_category=min_per_category)
    certified = any(c.threshold is not None for c in choice.categories.values())
    reason = "" if certified else (choice.reason or "its calibration data certifies no category")

    def automated_by(prediction: Prediction) -> bool:
        if prediction.out_of_scope or prediction.label is None or prediction.label in money_labels:
            return False  # never auto-handled, whatever the threshold
        threshold = choice.threshold_for(prediction.label)
        return threshold is not None and prediction.confidence >= threshold

    traffic = traffic or []
    traffic_automated = 0
    if traffic:
        if traffic_embeddings is None or len(traffic_embeddings) != len(traffic):
            raise ValueError("traffic_embeddings must hold one row per traffic ticket")
        seen = model.predict(texts=[t.text for t in traffic], embeddings=traffic_embeddings)
        traffic_automated = sum(1 for p in seen if automated_by(p))
    predictions = (
        model.predict(texts=[h.text for h in held_out], embeddings=np.stack([h.embedding for h in held_out]))
        if held_out
        else []
    )
    judged = automated = wrong = 0
    for label, prediction in zip(held_out, predictions, strict=True):
        if label.wrong and prediction.label != label.category:
            continue  # the person said what it is not; what it is stays unknown
        judged += 1
        if not automated_by(prediction):
            continue
        automated += 1
        wrong += (prediction.label == label.category) if label.wrong else (prediction.label != label.category)
    return ModelScore(
        threshold=choice.threshold,
        judged=judged,
        automated=automated,
        wrong=wrong,
        bound=upper_bound(wrong, automated, confidence),
        reason=reason,
        calibration_tickets=len(calibration),
        calibration_coverage=choice.coverage,
        exceeds_target=exceeds_target(wrong=wrong, automated=automated, target=target, confidence=confidence),
        traffic=len(traffic),
        traffic_automated=traffic_automated,
    )


def _since(version: TrainedClassifier | None) -> datetime | None:
    if version is None:
        return None
    return version.labels_until or version.created_at


#: An advisory lock key of its own: one retrain at a time per database. Every RQ worker runs the daily job
#: (triage/schedule.py), and workers started together reach its beat together.
RETRAIN_LOCK = 7_401_114


def classifier_retrain(
    *,
    min_holdout: int | None = None,
    force: bool = False,
    target: float | None = None,
    confidence: float | None = None,
) -> RetrainOutcome:
    """Train a challenger and promote it when it beats the active version (module docstring).

    One at a time: while another process retrains (`RETRAIN_LOCK`), this one trains nothing and says so.
    Nothing is trained either when the newest challenger already learned from and was judged on the same
    labels at the same policy (`_compared_on_the_same`): it would be the same model with the same verdict.

    `target`, `confidence`: the guarantee both models are compared at; by default the admin's, from the
    gate policy (the thresholds in force are chosen for that target, so a challenger that automates more
    at some other target could automate less at the one that matters).

    The held-out tickets are the newest inbox labels the active version never saw; the challenger learns
    from every label before them. With fewer than `min_holdout` of them nothing is trained (default: the
    fewest tickets among which the target can be seen at all, 230 at 1% and 90%: a comparison on fewer
    could not tell a challenger that exceeds the target from one that does not).
    `force`: promote without comparing (no active version is the same).
    """
    with _retrain_lock() as held:
        if not held:
            return _nothing_trained("another retrain is running on this database", active=classifier_latest())
        return _classifier_retrain(min_holdout=min_holdout, force=force, target=target, confidence=confidence)


@contextmanager
def _retrain_lock() -> Iterator[bool]:
    """`RETRAIN_LOCK` for the duration, if no other session holds it: yields whether this one does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RETRAIN_LOCK])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RETRAIN_LOCK])


def _classifier_retrain(
    *, min_holdout: int | None, force: bool, target: float | None, confidence: float | None
) -> RetrainOutcome:
    policy = gate_policy_current()
    target = policy.target_mishandled_rate if target is None else target
    confidence = policy.guarantee_confidence if confidence is None else confidence
    if min_holdout is None:
        # Fewer held-out tickets than this could not certify the target even with no mistake at all.
        min_holdout = zero_error_sample_size(target=target, budget=1.0 - confidence)
    active = classifier_latest()
    unseen = inbox_labels_select(after=_since(active))
    if active is not None and not force and len(unseen) < min_holdout:
        return _nothing_trained(
            f"{len(unseen)} labelled ticket(s) since the active version was trained; "
            f"{min_holdout} are needed to compare a challenger with it",
            active=active,
            held_out=len(unseen),
        )
    settings_compared = {
        "target_error": target,
        "confidence": confidence,
        "min_per_category": policy.min_labelled_per_category,
        "stated_out_of_scope_share": policy.out_of_scope_share,
        "labels_since_active": len(unseen),
    }
    if active is not None and not force and unseen:
        last = _compared_on_the_same(active=active, newest_label=unseen[-1].labelled_at, settings=settings_compared)
        if last is not None:
            return _nothing_trained(
                f"no label since challenger #{last.pk} was trained and compared on the same "
                f"{len(unseen)} labels at the same policy: {last.figures['comparison']['reason']}",
                active=active,
                held_out=len(unseen),
            )
    holdout_size = max(min_holdout, int(round(len(unseen) * HOLDOUT_SHARE))) if active and not force else 0
    held_out = unseen[len(unseen) - holdout_size :] if holdout_size else []
    cutoff = held_out[0].labelled_at if held_out else None
    training = training_set_select(labels_before=cutoff)
    if len(set(training.labels)) < 2:
        raise ValueError("the classifier needs labelled examples of at least two categories")
    model = IntentClassifier.fit(texts=training.texts, embeddings=training.embeddings, labels=training.labels)
    if active is None or force:
        version = classifier_version_store(
            model=model, training=training, activate=True, figures={"comparison": None, "promoted": True}
        )
        return RetrainOutcome(
            promoted=True,
            reason="no active version" if active is None else "forced",
            challenger=version,
            active=active,
            held_out=0,
        )
    money = set(Category.objects.filter(money=True).values_list("label", flat=True))
    traffic = _held_out_traffic(held_out=held_out, cutoff=cutoff)
    at: dict[str, Any] = {
        "traffic": traffic,
        "traffic_embeddings": embed_texts([t.text for t in traffic]) if traffic else None,
        "money_labels": money,
        "held_out": held_out,
        "target": target,
        "confidence": confidence,
        "min_per_category": policy.min_labelled_per_category,
    }
    active_calibration = calibration_set(
        classifier=TrainedClassifier.objects.get(pk=active.pk),
        money_labels=frozenset(money),
        exclude_tickets=frozenset(h.ticket_id for h in held_out if h.ticket_id is not None),
        out_of_scope_share=policy.out_of_scope_share,
    )
    # Both calibrated for the same traffic: the share of requests no category covers that the active
    # version's data stands for (the admin's, or what the inbox measured when higher).
    share = active_calibration.out_of_scope_share
    challenger_calibration = calibration_examples(
        model.calibration,
        share=policy.out_of_scope_share if share is None else share,
        money_labels=money,
    )
    challenger_score = classifier_score(model=model, calibration=challenger_calibration, **at)
    active_score = classifier_score(model=classifier_load(active.pk), calibration=active_calibration, **at)
    guarantee = f"at most {target:.1%} wrong with {confidence:.0%} confidence"
    promoted = False
    automated = functools.partial(_automated_text, traffic=len(traffic), held_out=len(held_out))
    if challenger_score.reason:  # set only when its calibration data certifies no category
        reason = f"the challenger's calibration data cannot certify {guarantee}: {challenger_score.reason}"
    elif not _automates_more(challenger_score, active_score, on_traffic=bool(traffic)):
        reason = (
            f"under thresholds certified {guarantee}, the challenger would auto-handle "
            f"{automated(challenger_score)}, the active version {automated(active_score)}: not more"
        )
    elif challenger_score.exceeds_target:
        reason = (
            f"the challenger would auto-handle {automated(challenger_score)} (the active version "
            f"{automated(active_score)}), but {challenger_score.wrong} of the {challenger_score.automated} "
            f"held-out labelled tickets it would auto-handle wrongly: evidence at {confidence:.0%} confidence "
            f"of more than {target:.1%} wrong"
        )
    else:
        promoted = True
        reason = (
            f"under thresholds certified {guarantee}, the challenger would auto-handle "
            f"{automated(challenger_score)}, the active version {automated(active_score)}; "
            f"{challenger_score.wrong} wrong of the {challenger_score.automated} held-out labelled tickets it "
            f"would auto-handle"
        )
    comparison = {
        **settings_compared,
        "held_out": len(held_out),
        "held_out_from": cutoff.isoformat() if cutoff else None,
        "against_version": active.pk,
        "out_of_scope_share": challenger_calibration.out_of_scope_share,
        "challenger": challenger_score.as_dict(),
        "active": active_score.as_dict(),
        "reason": reason,
    }
    version = classifier_version_store(
        model=model, training=training, activate=promoted, figures={"comparison": comparison, "promoted": promoted}
    )
    logger.info("classifier retrain: version %s %s: %s", version.pk, "promoted" if promoted else "kept", reason)
    return RetrainOutcome(
        promoted=promoted,
        reason=reason,
        challenger=version,
        active=active,
        held_out=len(held_out),
        challenger_score=challenger_score,
        active_score=active_score,
    )


def _nothing_trained(reason: str, *, active: TrainedClassifier | None, held_out: int = 0) -> RetrainOutcome:
    return RetrainOutcome(promoted=False, reason=reason, challenger=None, active=active, held_out=held_out)


def _compared_on_the_same(
    *, active: TrainedClassifier, newest_label: datetime, settings: dict[str, Any]
) -> TrainedClassifier | None:
    """The newest version, when it is a challenger compared with `active` after `newest_label` was decided and
    with the same `settings` (target, confidence, minimum per category, stated out-of-scope share, and the
    count of labels since the active version): a retrain now would learn and be judged on the same labels."""
    last = TrainedClassifier.objects.defer("blob").order_by("-created_at", "-pk").first()
    if last is None or last.pk == active.pk or last.created_at <= newest_label:
        return None
    comparison = (last.figures or {}).get("comparison") or {}
    if comparison.get("against_version") != active.pk:
        return None
    if any(comparison.get(key) != value for key, value in settings.items()):
        return None
    return last


def _automates_more(challenger: ModelScore, active: ModelScore, *, on_traffic: bool) -> bool:
    """Whether the challenger automates more: of the held-out period's traffic (module docstring), or, when
    no ticket of it is left (held-out labels without a ticket), of the held-out labelled tickets."""
    if on_traffic:
        return challenger.traffic_automated > active.traffic_automated
    return challenger.automated > active.automated


def _automated_text(score: ModelScore, *, traffic: int, held_out: int) -> str:
    if traffic:
        return f"{score.traffic_automated} of the {traffic} tickets since the held-out period began"
    return f"{score.automated} of {held_out} held-out tickets"


def _held_out_traffic(*, held_out: list[HeldOutLabel], cutoff: datetime | None) -> list[TrafficTicket]:
    """The traffic of the held-out period: every ticket created since the first held-out labelled one, but
    those whose labels the challenger learned from (decided before `cutoff`)."""
    ticket_ids = [h.ticket_id for h in held_out if h.ticket_id is not None]
    if not ticket_ids or cutoff is None:
        return []
    since = Ticket.objects.filter(pk__in=ticket_ids).aggregate(first=Min("created_at"))["first"]
    if since is None:
        return []
    # A subquery: the ids stay in the database (every ticket ever labelled, in a long-lived product).
    learned = LabelledExample.objects.filter(ticket__isnull=False, labelled_at__lt=cutoff).values("ticket_id")
    return tickets_since_select(since=since, exclude=learned)


def classifier_version_store(
    *, model: IntentClassifier, training: TrainingSet, activate: bool, figures: dict | None = None, actor: Any = None
) -> TrainedClassifier:
    """Store a fitted classifier as a version, with what it was trained on; `activate`: new runs use it."""
    with transaction.atomic():
        if activate:
            TrainedClassifier.objects.filter(active=True).update(active=False)
        return TrainedClassifier.objects.create(
            model=f"local-classifier/{MODEL_NAME}",
            blob=model.to_bytes(),
            labels=list(model.labels),
            example_count=len(training.texts),
            suggested_threshold=float(model.suggested_threshold),
            calibration=model.calibration,
            active=activate,
            activated_at=timezone.now() if activate else None,
            activated_by=actor if activate else None,
            trained_on=training.summary,
            labels_until=training.labels_until,
            figures={"cross_validation": model.stats, **(figures or {})},
        )


def classifier_activate(*, version_id: int, actor: Any) -> TrainedClassifier:
    """Make version `version_id` the one new runs use (an admin rolling back or forward)."""
    with transaction.atomic():
        version = TrainedClassifier.objects.select_for_update().defer("blob").get(pk=version_id)
        TrainedClassifier.objects.filter(active=True).exclude(pk=version.pk).update(active=False)
        version.active = True
        version.activated_at = timezone.now()
        version.activated_by = actor
        version.save(update_fields=["active", "activated_at", "activated_by"])
    logger.info("classifier version %s activated by %s", version.pk, actor)
    return version


def classifier_retrain_task() -> None:
    """The scheduled job (triage/schedule.py): retrain when enough new labels have come in."""
    outcome = classifier_retrain()
    logger.info("scheduled classifier retrain: %s", outcome.reason)
