"""Learning from the inbox: train a challenger on examples plus inbox labels, compare it with the active
classifier on labelled tickets neither has seen, promote it only when it automates more at the same target;
and roll back to an earlier version.

The comparison (`classifier_score`): each model auto-handles a held-out ticket when it is in scope, its
category does not move money, and its confidence reaches the model's own threshold, chosen on its own
training data only (cross-validation at `TARGET_PRECISION`, i.e. at most 1% wrong among those it would
handle). Both models are held to that same target, so "automates more at the same target" is: more held-out
tickets auto-handled, and the share of them that was wrong no higher than the target (or than the active
model's, when the active model already misses it on these tickets). A `wrong` label (marked mishandled)
judges a model only when it would put the ticket in that same category again (wrong); otherwise its true
category is unknown and that ticket is not counted for that model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from integrations.embeddings import MODEL_NAME
from triage.classifier import TARGET_PRECISION, IntentClassifier
from triage.models import Category, TrainedClassifier
from triage.pipeline.router import classifier_load
from triage.selectors import HeldOutLabel, TrainingSet, classifier_latest, inbox_labels_select, training_set_select

logger = logging.getLogger(__name__)

#: Held-out labelled tickets needed before a challenger is judged at all (fewer: nothing is trained).
MIN_HOLDOUT = 30
#: Of the labels the active version never saw, the newest share is held out to judge both models on.
HOLDOUT_SHARE = 0.5
TARGET_ERROR = 1.0 - TARGET_PRECISION


@dataclass(frozen=True)
class ModelScore:
    """How one model does on the held-out labelled tickets."""

    threshold: float
    judged: int
    automated: int
    wrong: int

    @property
    def automation_rate(self) -> float:
        return self.automated / self.judged if self.judged else 0.0

    @property
    def error_rate(self) -> float:
        """Wrong among the tickets it would auto-handle."""
        return self.wrong / self.automated if self.automated else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"automation_rate": self.automation_rate, "error_rate": self.error_rate}


@dataclass(frozen=True)
class RetrainOutcome:
    promoted: bool
    reason: str
    challenger: TrainedClassifier | None
    active: TrainedClassifier | None
    held_out: int
    challenger_score: ModelScore | None = None
    active_score: ModelScore | None = None


def classifier_score(
    *, model: IntentClassifier, threshold: float, held_out: list[HeldOutLabel], money_labels: set[str]
) -> ModelScore:
    """See the module docstring: what `model` would auto-handle among `held_out`, and how much of it wrongly."""
    if not held_out:
        return ModelScore(threshold=threshold, judged=0, automated=0, wrong=0)
    predictions = model.predict(texts=[h.text for h in held_out], embeddings=np.stack([h.embedding for h in held_out]))
    judged = automated = wrong = 0
    for label, prediction in zip(held_out, predictions, strict=True):
        handles = (
            not prediction.out_of_scope
            and prediction.label is not None
            and prediction.label not in money_labels
            and prediction.confidence >= threshold
        )
        if label.wrong and prediction.label != label.category:
            continue  # the person said what it is not; what it is stays unknown
        judged += 1
        if handles:
            automated += 1
            wrong += (prediction.label == label.category) if label.wrong else (prediction.label != label.category)
    return ModelScore(threshold=threshold, judged=judged, automated=automated, wrong=wrong)


def _since(version: TrainedClassifier | None) -> datetime | None:
    if version is None:
        return None
    return version.labels_until or version.created_at


def classifier_retrain(*, min_holdout: int = MIN_HOLDOUT, force: bool = False) -> RetrainOutcome:
    """Train a challenger and promote it when it beats the active version (module docstring).

    The held-out tickets are the newest inbox labels the active version never saw; the challenger learns
    from every label before them. With fewer than `min_holdout` of them nothing is trained (the comparison
    would be noise). `force`: promote without comparing (no active version is the same).
    """
    active = classifier_latest()
    unseen = inbox_labels_select(after=_since(active))
    if active is not None and not force and len(unseen) < min_holdout:
        return RetrainOutcome(
            promoted=False,
            reason=f"{len(unseen)} labelled ticket(s) since the active version was trained; "
            f"{min_holdout} are needed to compare a challenger with it",
            challenger=None,
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
    challenger_score = classifier_score(
        model=model, threshold=model.suggested_threshold, held_out=held_out, money_labels=money
    )
    active_score = classifier_score(
        model=classifier_load(active.pk), threshold=active.suggested_threshold, held_out=held_out, money_labels=money
    )
    allowed_error = max(TARGET_ERROR, active_score.error_rate)
    if challenger_score.automated <= active_score.automated:
        promoted, reason = (
            False,
            (
                f"the challenger auto-handles {challenger_score.automated} of {len(held_out)} held-out tickets, "
                f"the active version {active_score.automated}: not more"
            ),
        )
    elif challenger_score.error_rate > allowed_error:
        promoted, reason = (
            False,
            (
                f"the challenger would get {challenger_score.error_rate:.1%} of what it auto-handles wrong, "
                f"over the {allowed_error:.1%} allowed"
            ),
        )
    else:
        promoted, reason = (
            True,
            (
                f"the challenger auto-handles {challenger_score.automated} of {len(held_out)} held-out tickets "
                f"(active: {active_score.automated}) at {challenger_score.error_rate:.1%} wrong "
                f"(allowed {allowed_error:.1%})"
            ),
        )
    comparison = {
        "held_out": len(held_out),
        "held_out_from": cutoff.isoformat() if cutoff else None,
        "against_version": active.pk,
        "target_error": TARGET_ERROR,
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
