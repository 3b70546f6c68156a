"""Kept fits (`triage.fitcache`): a fit is reused only for the very training set it was fitted on, gives the
same classifier, and only the newest are kept."""

from __future__ import annotations

import logging

import pytest

from triage import fitcache
from triage.classifier import IntentClassifier
from triage.fitcache import FitReuse, evaluation_fit_key, fit_cache_load, fit_cache_save, training_digest
from triage.models import FittedClassifierCacheEntry, LabelledExample
from triage.pipeline.router import classifier_load
from triage.selectors import training_set_select
from triage.services import classifier_train

pytestmark = pytest.mark.django_db

TEXTS = [
    "my grinder stopped working after two weeks",
    "can I pause my coffee club for a month",
    "the bag arrived split open and coffee everywhere",
    "what beans taste chocolatey",
]


def _fit_refused(*args, **kwargs):
    raise AssertionError("fitted again although a kept fit was there")


def test_a_kept_fit_serves_the_same_training_set_with_the_same_classifier(monkeypatch):
    # given: an evaluation that fitted and kept its classifier
    first = FitReuse(key="k" * 64)
    fitted = classifier_train(activate=False, reuse=first)
    assert first.fitted is not None and not first.reused
    assert fit_cache_save(first) == 1

    # when: the next one trains on the same training set, fitting being impossible
    monkeypatch.setattr(IntentClassifier, "fit", _fit_refused)
    second = fit_cache_load("k" * 64)
    reused = classifier_train(activate=False, reuse=second)

    # then: the kept fit served, nothing new to keep, and the version is the same classifier
    assert second.reused and second.fitted is None and fit_cache_save(second) == 0
    assert reused.calibration == fitted.calibration and reused.calibration["scores"]
    assert reused.suggested_threshold == fitted.suggested_threshold
    assert reused.figures == fitted.figures
    before, after = classifier_load(fitted.pk), classifier_load(reused.pk)
    embeddings = training_set_select().embeddings[: len(TEXTS)]
    assert after.predict(texts=TEXTS, embeddings=embeddings) == before.predict(texts=TEXTS, embeddings=embeddings)


def test_a_kept_fit_of_another_training_set_is_not_used():
    reuse = FitReuse(key="k" * 64)
    classifier_train(activate=False, reuse=reuse)
    fit_cache_save(reuse)
    training = training_set_select()
    digest = training_digest(training)

    # One example's category changed: the same examples file would give the same key, not the same fit.
    example = LabelledExample.objects.filter(ticket__isnull=True).order_by("pk").first()
    other = LabelledExample.objects.exclude(category=example.category).first()
    example.category = other.category
    example.save()

    changed = training_set_select()
    assert training_digest(changed) != digest
    assert fit_cache_load("k" * 64).model_for(changed) is None
    assert fit_cache_load("k" * 64).model_for(training) is not None  # the one it was fitted on


def test_the_training_digest_follows_texts_labels_and_vectors():
    training = training_set_select()
    digest = training_digest(training)
    training.embeddings[0, 0] += 1e-6
    assert training_digest(training) != digest
    training.embeddings[0, 0] -= 1e-6
    assert training_digest(training) == digest
    training.texts[0] += " "
    assert training_digest(training) != digest


def test_an_unreadable_kept_fit_is_fitted_again(caplog):
    training = training_set_select()
    FittedClassifierCacheEntry.objects.create(
        key="u" * 64, training_digest=training_digest(training), blob=b"not a classifier", calibration={}
    )
    reuse = fit_cache_load("u" * 64)
    with caplog.at_level(logging.WARNING, logger="triage.fitcache"):
        assert reuse.model_for(training) is None
    assert not reuse.reused
    assert "cannot be read" in caplog.text


def test_only_the_newest_fits_are_kept_and_a_key_holds_one():
    keys = [f"{i:064d}" for i in range(fitcache.KEEP + 2)]
    for key in keys:
        reuse = FitReuse(key=key, fitted={"training_digest": "d" * 64, "blob": b"x", "calibration": {}})
        assert fit_cache_save(reuse) == 1
    assert set(FittedClassifierCacheEntry.objects.values_list("key", flat=True)) == set(keys[-fitcache.KEEP :])

    again = FitReuse(key=keys[-1], fitted={"training_digest": "e" * 64, "blob": b"y", "calibration": {}})
    fit_cache_save(again)
    entry = FittedClassifierCacheEntry.objects.get(key=keys[-1])
    assert entry.training_digest == "e" * 64 and bytes(entry.blob) == b"y"


def test_the_key_names_the_examples_in_order_and_the_embedder():
    examples = [("where is my order", "order_status"), ("refund me", "refund_request")]
    key = evaluation_fit_key(examples=examples, embedder="m")
    assert key == evaluation_fit_key(examples=list(examples), embedder="m")
    assert key != evaluation_fit_key(examples=examples[::-1], embedder="m")
    assert key != evaluation_fit_key(examples=[examples[0], ("refund me", "order_status")], embedder="m")
    assert key != evaluation_fit_key(examples=examples, embedder="another model")
