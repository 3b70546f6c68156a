"""The routing brain: which model answers each step, and when to ask a stronger one.

Classify is a cascade: the trained local classifier first; when its confidence is under the
category's threshold and a reasoning provider is configured, that provider; when still unsure,
the gates send the ticket to a person. Draft uses the first configured draft provider, and a step
policy's fallback provider when that one keeps failing.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from integrations.llm.base import ProviderError, ProviderReply, ReasoningProvider
from triage.contracts import Classification, Draft
from triage.pipeline import steps

if TYPE_CHECKING:
    from triage.classifier import IntentClassifier
    from triage.models import PipelineRun
    from triage.pipeline.runner import RunState

_classifier_cache: dict[int, IntentClassifier] = {}
_cache_lock = threading.Lock()


def provider_get(name: str) -> ReasoningProvider:
    """A provider by its settings name (`TRIAGE_PROVIDERS`)."""
    try:
        path = settings.TRIAGE_PROVIDERS[name]
    except KeyError:
        raise ProviderError(f"provider {name!r} is not configured (TRIAGE_PROVIDERS)", retryable=False) from None
    return import_string(path)()


def classifier_load(pk: int) -> IntentClassifier:
    """The trained classifier row `pk`, unpickled once per process."""
    from triage.classifier import IntentClassifier
    from triage.models import TrainedClassifier

    with _cache_lock:
        if pk not in _classifier_cache:
            blob = TrainedClassifier.objects.values_list("blob", flat=True).get(pk=pk)
            _classifier_cache[pk] = IntentClassifier.from_bytes(bytes(blob))
        return _classifier_cache[pk]


@dataclass
class ClassifyDecision:
    classification: Classification
    reply: ProviderReply | None
    trail: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Router:
    classifier_id: int | None
    classifier_model: str
    classifier_threshold: float
    classify_cascade: list[str] = field(default_factory=list)
    draft_providers: list[str] = field(default_factory=lambda: ["local"])
    _fallbacks: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_run(cls, run: PipelineRun) -> Router:
        from triage.selectors import classifier_latest

        latest = classifier_latest()
        cascade = list(getattr(settings, "TRIAGE_CLASSIFY_CASCADE", []))
        drafters = list(getattr(settings, "TRIAGE_DRAFT_PROVIDERS", ["local"]))
        return cls(
            classifier_id=latest.pk if latest else None,
            classifier_model=latest.model if latest else "",
            classifier_threshold=latest.suggested_threshold if latest else 1.0,
            classify_cascade=cascade,
            draft_providers=drafters,
        )

    def fresh(self) -> Router:
        """The same configuration with no per-run state (fallback switches), for the next run."""
        return dataclasses.replace(self, _fallbacks={})

    def classify(self, *, state: RunState) -> ClassifyDecision:
        provider_name = self._fallbacks.get("classify")
        if provider_name:
            classification, reply = steps.classify_with_provider(
                provider=provider_get(provider_name), text=state.text, retrieval=state.retrieval,
                categories=state.categories,
            )
            return ClassifyDecision(classification, reply, [{"model": reply.model, "why": "fallback provider"}])
        if self.classifier_id is None:
            raise ProviderError("no classifier has been trained yet: run `manage.py import_examples`", retryable=False)
        classification = steps.classify_local(
            text=state.text, embedding=state.embedding, predictor=classifier_load(self.classifier_id),
            categories=state.categories, model=self.classifier_model,
        )
        trail: list[dict[str, Any]] = [
            {"model": self.classifier_model, "why": "local classifier first", "confidence": classification.confidence}
        ]
        threshold = state.threshold_for(state.categories.get(classification.category))
        if classification.confidence >= threshold or not self.classify_cascade:
            return ClassifyDecision(classification, None, trail)
        for name in self.classify_cascade:
            stronger, reply = steps.classify_with_provider(
                provider=provider_get(name), text=state.text, retrieval=state.retrieval, categories=state.categories
            )
            trail.append({"model": reply.model, "why": f"local confidence {classification.confidence:.2f} < {threshold:.2f}",
                          "confidence": stronger.confidence})
            return ClassifyDecision(stronger, reply, trail)
        return ClassifyDecision(classification, None, trail)

    def draft(self, *, state: RunState) -> tuple[Draft, ProviderReply]:
        assert state.classification is not None and state.retrieval is not None
        name = self._fallbacks.get("draft") or self.draft_providers[0]
        first = state.ticket.requester.split("@")[0].split(".")[0].capitalize() if state.ticket.requester else ""
        return steps.draft(
            provider=provider_get(name), text=state.text, classification=state.classification,
            category=state.category, retrieval=state.retrieval, requester_name=first,
        )

    def use_fallback(self, step: str, provider_name: str) -> bool:
        """Switch `step` to its fallback provider once; False when already switched or not usable."""
        if step not in ("classify", "draft") or self._fallbacks.get(step) == provider_name:
            return False
        if provider_name not in settings.TRIAGE_PROVIDERS:
            return False
        self._fallbacks[step] = provider_name
        return True
