"""Fitted classifiers kept for `evaluate`: evaluating the same examples again (another target, another
sample of tickets, a dataset that shares its examples) reuses the classifier an earlier evaluation fitted
instead of fitting it again.

Why: the fit is most of an evaluation whose vectors are cached already (on banking77 about half of a
warm `evaluate`), and an admin runs evaluations and what-ifs often. A fit is a pure function of the
training texts, labels and vectors and of the code that fits it: `IntentClassifier.fit` seeds everything
(`random_state=0`), and the number of processes it uses does not change the model. So a kept fit is the
model a new fit would give, and the report is the same (checked in the tests).

Two digests guard that:

- `evaluation_fit_key`, computed before the evaluation's own database exists, names what the command can
  see: the examples after any held-out categories are taken out, the embedding model, and the fitting code
  (the source of `triage.classifier` and `triage.risk`, the stored format and the versions of the numeric
  libraries). It finds the kept entry.
- `training_digest`, of the training set the evaluation actually selected (texts, labels and the vectors
  themselves), must equal the one stored with the entry, or the entry is not used: a change anywhere
  between the examples and the fit (how examples are imported or de-duplicated, a vector) refits.

Kept in the configured database, like the embedding cache; only the newest `KEEP` entries stay (a banking77
fit is about 8 MB). Written by hand because no library caches a fitted model by the digest of its
inputs in the database the product already has (joblib.Memory keys on pickled arguments and needs a
shared directory, which a scale-out deployment has no reason to have).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.utils import timezone

from triage import classifier, risk
from triage.classifier import ClassifierFormatError, IntentClassifier
from triage.models import FittedClassifierCacheEntry
from triage.selectors import TrainingSet

logger = logging.getLogger(__name__)

#: Fits kept; older ones are deleted when a new one is stored.
KEEP = 4


@functools.cache
def code_digest() -> str:
    """The fitting code's identity: the sources of the modules that fit and certify, the stored format and
    the numeric libraries' versions."""
    import numpy
    import scipy
    import sklearn

    h = hashlib.sha256()
    for module in (classifier, risk):
        h.update(Path(str(module.__file__)).read_bytes())
    h.update(f"{classifier.FORMAT_VERSION} {numpy.__version__} {scipy.__version__} {sklearn.__version__}".encode())
    return h.hexdigest()


def evaluation_fit_key(*, examples: Sequence[tuple[str, str]], embedder: str) -> str:
    """The key of the fit an evaluation of `examples` (text, label, in order) embedded by `embedder` needs."""
    payload = json.dumps({"code": code_digest(), "embedder": embedder, "examples": list(examples)})
    return hashlib.sha256(payload.encode()).hexdigest()


def training_digest(training: TrainingSet) -> str:
    """The digest of exactly what a fit learns from: every text and label, in order, and the vectors."""
    h = hashlib.sha256()
    for text, label in zip(training.texts, training.labels, strict=True):
        for part in (text, label):
            encoded = part.encode()
            h.update(len(encoded).to_bytes(8, "little") + encoded)
    h.update(str(training.embeddings.shape).encode())
    h.update(training.embeddings.astype("<f4", copy=False).tobytes())
    return h.hexdigest()


@dataclass
class FitReuse:
    """One evaluation's use of the cache: the kept entry found under `key` (if any), and, once the classifier
    is trained, whether that entry served and the new fit to keep when it did not."""

    key: str
    kept: FittedClassifierCacheEntry | None = None
    reused: bool = False
    fitted: dict[str, Any] | None = field(default=None, repr=False)

    def model_for(self, training: TrainingSet) -> IntentClassifier | None:
        """The kept classifier, when it was fitted on exactly `training`; else None (fit it)."""
        if self.kept is None:
            return None
        digest = training_digest(training)
        if digest != self.kept.training_digest:
            logger.info("kept fit %s was trained on another training set: fitting again", self.key[:12])
            return None
        try:
            model = IntentClassifier.from_bytes(bytes(self.kept.blob))
        except ClassifierFormatError as exc:
            logger.warning("kept fit %s cannot be read (%s): fitting again", self.key[:12], exc)
            return None
        model.calibration = dict(self.kept.calibration)
        self.reused = True
        return model

    def keep(self, training: TrainingSet, model: IntentClassifier, blob: bytes) -> None:
        """Remember a new fit (`blob`: its stored bytes), to be written by `fit_cache_save`."""
        self.fitted = {
            "training_digest": training_digest(training),
            "blob": blob,
            "calibration": model.calibration,
        }


def fit_cache_load(key: str) -> FitReuse:
    """The cache entry under `key` in the current database (none: an empty `FitReuse`)."""
    return FitReuse(key=key, kept=FittedClassifierCacheEntry.objects.filter(key=key).first())


def fit_cache_save(reuse: FitReuse) -> int:
    """Keep the new fit in `reuse` in the current database, then only the newest `KEEP` entries; how many
    entries were written (0 when the evaluation reused a kept fit or fitted nothing)."""
    if reuse.fitted is None:
        return 0
    # An upsert: a stale entry under the same key is replaced, and two evaluations finishing together do not
    # collide (the later one's fit, the same model, stays).
    FittedClassifierCacheEntry.objects.bulk_create(
        [FittedClassifierCacheEntry(key=reuse.key, created_at=timezone.now(), **reuse.fitted)],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["training_digest", "blob", "calibration", "created_at"],
    )
    stale = FittedClassifierCacheEntry.objects.order_by("-created_at", "-key").values_list("key", flat=True)[KEEP:]
    FittedClassifierCacheEntry.objects.filter(key__in=list(stale)).delete()
    return 1
