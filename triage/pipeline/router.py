"""The routing brain: which model answers each step, and when to ask a stronger one.

Classify is a cascade: the trained local classifier first; when its confidence is under the
category's threshold and a reasoning provider is configured, that provider; when still unsure,
the gates send the ticket to a person. Draft uses the first configured draft provider, and a step
policy's fallback provider when that one keeps failing.

Hosted providers (those with `supports_models`, i.e. Claude) are asked with a model chosen per
step from an ordered list (admin's ProviderSettings, else `TRIAGE_ANTHROPIC_MODELS`); a model that
answers 529/503 overloaded is passed over for the rest of the run, so the runner's next attempt
goes to the next model. A hosted provider is skipped, and the trail says why, when it is switched
off, when today's spend has reached the daily cap, or when its circuit breaker is open. Output
that breaks its contract gets one repair call (the validation error is sent back); a second
failure goes to a person. What a hosted model is asked to fill in is the JSON schema of the very
contract its answer is validated against (`triage.contracts`), so the two cannot drift. Every
reply is priced (`triage.spend`), and what an attempt paid for is attached to the error when it
fails, so the StepRun of a failed attempt records it too.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from django.conf import settings
from django.utils.module_loading import import_string

from integrations.llm.base import (
    CategoryOption,
    ClassifyRequest,
    DraftRequest,
    HostedProvider,
    PassageText,
    ProviderError,
    ProviderReply,
    ReasoningProvider,
    Repair,
    Usage,
)
from integrations.llm.breaker import ProviderBreaker, breaker_for
from integrations.llm.text import requester_first_name
from triage.autonomy import thresholds_current
from triage.classifier import IntentClassifier
from triage.contracts import (
    OUT_OF_SCOPE,
    Classification,
    ContractError,
    Draft,
    Priority,
    classification_answer_schema,
    draft_answer_schema,
    parse_contract,
)
from triage.models import Category, PipelineRun, TrainedClassifier
from triage.pipeline.handling import priority_for, proposed_actions_for
from triage.risk import ThresholdChoice
from triage.selectors import classifier_latest, gate_policy_current
from triage.spend import call_cost, provider_settings_current, spend_status

if TYPE_CHECKING:  # the steps hand the router their state; importing them here would only serve the type
    from triage.pipeline.steps.base import RunState

OVERLOADED_STATUS = frozenset({503, 529})
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
    with _cache_lock:
        if pk not in _classifier_cache:
            blob = TrainedClassifier.objects.values_list("blob", flat=True).get(pk=pk)
            _classifier_cache[pk] = IntentClassifier.from_bytes(bytes(blob))
        return _classifier_cache[pk]


def classifier_cache_keep(pk: int) -> None:
    """Forget every loaded classifier but `pk` (a model holds its examples' embeddings: tens of megabytes).

    For a process that runs nothing itself (the RQ worker's parent, `triage.worker.models_refresh`), where a
    superseded version would otherwise stay loaded for the life of the worker, one more after each promotion.
    """
    with _cache_lock:
        for other in [k for k in _classifier_cache if k != pk]:
            del _classifier_cache[other]


@dataclass(frozen=True)
class Attempt:
    """What one failed attempt asked and paid for; its checkpoint records it."""

    model: str
    why: str
    charged: ProviderReply | None = None


class ModelCallFailed(ProviderError):
    """A provider call failed; retryable exactly as the provider's error was."""

    def __init__(self, error: ProviderError, attempt: Attempt):
        super().__init__(str(error), retryable=error.retryable, status=error.status, retry_after=error.retry_after)
        self.attempt = attempt


class AnswerInvalid(ContractError):
    """A model's answer broke its contract, and the one repair call did not mend it."""

    def __init__(self, error: ContractError, attempt: Attempt):
        super().__init__(error.contract, error.reason, error.fields)
        self.attempt = attempt


@dataclass
class ClassifyDecision:
    """The classify step's answer: what was decided, the reply that was paid for (None: local), the
    trail of models asked or skipped, and why the answer came from where it did."""

    classification: Classification
    reply: ProviderReply | None
    trail: list[dict[str, Any]] = field(default_factory=list)
    why: str = ""


@dataclass
class DraftDecision:
    """The draft step's answer; `boilerplate` is the drafter's own template text (greeting, closing)."""

    draft: Draft
    reply: ProviderReply | None
    why: str
    boilerplate: tuple[str, ...] = ()


@dataclass
class Router:
    classifier_id: int | None
    classifier_model: str
    classifier_threshold: float
    #: The thresholds chosen from the gate policy's target error (None: the classifier kept no
    #: calibration data, and `classifier_threshold` applies).
    thresholds: ThresholdChoice | None = None
    classify_cascade: list[str] = field(default_factory=list)
    draft_providers: list[str] = field(default_factory=lambda: ["local"])
    _fallbacks: dict[str, str] = field(default_factory=dict)
    # Hosted providers: models per step (empty: the provider's defaults), per-call timeout, admin switch.
    models: dict[str, list[str]] = field(default_factory=dict)
    timeout: float | None = None
    hosted_enabled: bool = True
    # Per run: models that answered "overloaded" (the next attempt goes to the next model).
    _overloaded: dict[str, list[str]] = field(default_factory=dict)
    _providers: dict[str, ReasoningProvider] = field(default_factory=dict, repr=False)

    @classmethod
    def for_run(cls, run: PipelineRun) -> Router:
        latest = classifier_latest()
        thresholds = thresholds_current(classifier=latest, policy=gate_policy_current()) if latest else None
        cascade = list(getattr(settings, "TRIAGE_CLASSIFY_CASCADE", []))
        drafters = list(getattr(settings, "TRIAGE_DRAFT_PROVIDERS", ["local"]))
        models = {step: list(names) for step, names in getattr(settings, "TRIAGE_ANTHROPIC_MODELS", {}).items()}
        timeout = getattr(settings, "TRIAGE_ANTHROPIC_TIMEOUT", None)
        row = provider_settings_current()
        enabled = row.enabled
        for step, listed in (("classify", row.classify_models), ("draft", row.draft_models)):
            names = [m.strip() for m in listed.split(",") if m.strip()]
            if names:
                models[step] = names
        timeout = row.timeout_seconds or timeout
        return cls(
            classifier_id=latest.pk if latest else None,
            classifier_model=latest.model if latest else "",
            classifier_threshold=latest.suggested_threshold if latest else 1.0,
            thresholds=thresholds,
            classify_cascade=cascade,
            draft_providers=drafters,
            models=models,
            timeout=timeout,
            hosted_enabled=enabled,
        )

    def fresh(self) -> Router:
        """The same configuration with no per-run state (fallback switches), for the next run."""
        return dataclasses.replace(self, _fallbacks={}, _overloaded={})

    def classify(self, *, state: RunState) -> ClassifyDecision:
        provider_name = self._fallbacks.get("classify")
        if provider_name:
            classification, reply, why = self._classify_with(provider_name, state=state, why="fallback provider")
            return ClassifyDecision(classification, reply, [{"model": reply.model, "why": why}], why)
        if self.classifier_id is None:
            raise ProviderError("no classifier has been trained yet: run `manage.py import_examples`", retryable=False)
        classification = classify_local(
            text=state.text,
            embedding=state.embedding,
            predictor=classifier_load(self.classifier_id),
            categories=state.categories,
            model=self.classifier_model,
        )
        trail: list[dict[str, Any]] = [
            {"model": self.classifier_model, "why": "local classifier first", "confidence": classification.confidence}
        ]
        category = state.categories.get(classification.category)
        threshold = state.threshold_for(category)
        if classification.confidence >= threshold or not self.classify_cascade:
            reason = (
                f"local confidence {classification.confidence:.2f} >= {threshold:.2f}"
                if classification.confidence >= threshold
                else "local classifier (no stronger model configured)"
            )
            trail[0]["why"] = reason
            return ClassifyDecision(classification, None, trail, reason)
        unsure = (
            f"local confidence {classification.confidence:.2f} < {threshold:.2f}"
            if not math.isinf(threshold)
            else f"'{classification.category}' is not automated from the local answer"
        )
        for name in self.classify_cascade:
            blocked = self._blocked(name)
            if blocked:
                trail.append({"provider": name, "skipped": True, "why": blocked})
                continue
            stronger, reply, why = self._classify_with(name, state=state, why=unsure)
            # The money gate weighs what the local classifier put on money categories too.
            stronger = stronger.model_copy(update={"money_probability": classification.money_probability})
            trail.append({"model": reply.model, "why": why, "confidence": stronger.confidence})
            return ClassifyDecision(stronger, reply, trail, why)
        why = "; ".join([unsure] + [t["why"] for t in trail[1:]] + ["local answer kept, the gates decide"])
        return ClassifyDecision(classification, None, trail, why)

    def draft(self, *, state: RunState) -> DraftDecision:
        names = [self._fallbacks["draft"]] if self._fallbacks.get("draft") else list(self.draft_providers)
        request = _draft_request(state)
        skipped: list[str] = []
        # The local drafter is the last resort when every hosted one is skipped (cap, breaker, switched off).
        for name in names + ([] if "local" in names else ["local"]):
            if name not in names and not skipped:
                break
            blocked = self._blocked(name)
            if blocked:
                skipped.append(blocked)
                continue
            why = "; ".join(
                skipped + ["fallback provider" if self._fallbacks.get("draft") else f"draft provider {name}"]
            )
            provider = self._provider(name)
            # The drafter's own template lines for this request (greeting with the safe name, closing): the
            # groundedness gate exempts exactly these, nothing shaped like them.
            boilerplate_for = getattr(provider, "boilerplate_for", None)
            boilerplate = tuple(boilerplate_for(request)) if boilerplate_for else ()
            if not _hosted(provider):
                reply = provider.draft(request)
                return DraftDecision(_draft_from(reply), reply, why, boilerplate)
            draft, reply, why = self._ask_hosted(
                step="draft",
                name=name,
                why=why,
                call=lambda p, **kw: p.draft(request, **kw),
                parse=_draft_from,
            )
            return DraftDecision(draft, reply, why, boilerplate)
        raise ProviderError("no draft provider may be used: " + "; ".join(skipped), retryable=False)

    # --- hosted providers ------------------------------------------------------------------------

    def _provider(self, name: str) -> ReasoningProvider:
        if name not in self._providers:
            self._providers[name] = provider_get(name)
        return self._providers[name]

    def _breaker(self, name: str) -> ProviderBreaker:
        return breaker_for(
            name,
            failures=int(getattr(settings, "TRIAGE_BREAKER_FAILURES", 5)),
            cooldown=float(getattr(settings, "TRIAGE_BREAKER_COOLDOWN", 30.0)),
        )

    def _blocked(self, name: str) -> str | None:
        """Why hosted provider `name` may not be asked now (None: it may). Asking the breaker is last:
        in half-open state its yes is the one probe call, which must then be made."""
        if not _hosted(self._provider(name)):
            return None
        if not self.hosted_enabled:
            return f"{name} is switched off in provider settings"
        spend = spend_status()
        if spend.reached:
            return f"daily spending cap reached (${spend.spent_today:.4f} of ${spend.cap:.2f}): {name} skipped"
        breaker = self._breaker(name)
        if not breaker.allow():
            return (
                f"circuit breaker open after {breaker.consecutive_failures} consecutive failures: "
                f"{name} skipped until it recovers"
            )
        return None

    def _model_for(self, step: str, provider: ReasoningProvider) -> tuple[str, str]:
        """The first listed model not overloaded in this run, and a note when it is a fallback."""
        listed = self.models.get(step) or getattr(provider, "default_models", {}).get(step) or []
        if not listed:
            return "", ""
        overloaded = self._overloaded.setdefault(step, [])
        usable = [m for m in listed if m not in overloaded]
        if not usable:  # every model was overloaded once: start the list again
            overloaded.clear()
            usable = listed
        note = f"fallback model ({', '.join(overloaded)} overloaded)" if overloaded else ""
        return usable[0], note

    def _classify_with(self, name: str, *, state: RunState, why: str) -> tuple[Classification, ProviderReply, str]:
        provider = self._provider(name)
        request = _classify_request(state)
        if not _hosted(provider):
            reply = provider.classify(request)
            return _classification_from(reply, state=state), reply, why
        return self._ask_hosted(
            step="classify",
            name=name,
            why=why,
            call=lambda p, **kw: p.classify(request, **kw),
            parse=lambda reply: _classification_from(reply, state=state),
        )

    def _ask_hosted(
        self,
        *,
        step: str,
        name: str,
        why: str,
        call: Callable[..., ProviderReply],
        parse: Callable[[ProviderReply], Any],
    ) -> tuple[Any, ProviderReply, str]:
        """One hosted call (plus one repair call when its output breaks the contract), priced.

        A failure is raised as `ModelCallFailed` or `AnswerInvalid`, carrying the `Attempt`: the model asked,
        why, and what was paid for before the failure, which the step's checkpoint records.
        """
        provider = self._provider(name)
        breaker = self._breaker(name)
        model, note = self._model_for(step, provider)
        why = "; ".join(x for x in (why, f"{name} {model}".strip(), note) if x)
        charged: ProviderReply | None = None
        repair: Repair | None = None
        for _ in range(2):
            try:
                reply = call(provider, model=model or None, timeout=self.timeout, repair=repair)
            except ProviderError as exc:
                breaker.record_failure()
                if exc.status in OVERLOADED_STATUS and model:
                    self._overloaded.setdefault(step, []).append(model)
                raise ModelCallFailed(exc, Attempt(model=model or name, why=why, charged=charged)) from exc
            except Exception:
                breaker.record_failure()  # an unexpected failure must not leave a half-open probe taken
                raise
            breaker.record_success()
            reply = _priced(reply)
            charged = reply if charged is None else _combined(charged, reply)
            try:
                result = parse(reply)
            except ContractError as err:
                if repair is not None:
                    why = f"{why}; still invalid after one repair: a person decides"
                    raise AnswerInvalid(err, Attempt(model=reply.model, why=why, charged=charged)) from err
                repair = Repair(previous_output=reply.output, error=err.reason)
                why = f"{why}; repair requested ({err.reason[:120]})"
                continue
            return result, charged, why
        raise AssertionError("unreachable")  # pragma: no cover

    def may_pay(self, step: str) -> bool:
        """Whether an attempt of `step` may now ask a provider other than the free local ones (the trained
        classifier and the `local` drafter): any other provider is taken to charge for its answer."""
        if step not in ("classify", "draft"):
            return False
        fallback = self._fallbacks.get(step)
        names = [fallback] if fallback else (self.classify_cascade if step == "classify" else self.draft_providers)
        return any(name != "local" for name in names)

    def use_fallback(self, step: str, provider_name: str) -> bool:
        """Switch `step` to its fallback provider once; False when already switched or not usable."""
        if step not in ("classify", "draft") or self._fallbacks.get(step) == provider_name:
            return False
        if provider_name not in settings.TRIAGE_PROVIDERS:
            return False
        self._fallbacks[step] = provider_name
        return True


def _hosted(provider: ReasoningProvider) -> TypeGuard[HostedProvider]:
    return bool(getattr(provider, "supports_models", False))


def _priced(reply: ProviderReply) -> ProviderReply:
    if reply.cost:
        return reply
    return dataclasses.replace(reply, cost=call_cost(model=reply.model, usage=reply.usage))


def _combined(first: ProviderReply, second: ProviderReply) -> ProviderReply:
    """Two calls of one attempt (answer and repair) as one charge: usage and cost add up."""
    a, b = first.usage, second.usage
    usage = Usage(
        a.tokens_in + b.tokens_in,
        a.tokens_out + b.tokens_out,
        a.cache_write_tokens + b.cache_write_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
    )
    return ProviderReply(output=second.output, model=second.model, usage=usage, cost=first.cost + second.cost)


def _classify_request(state: RunState) -> ClassifyRequest:
    return ClassifyRequest(
        ticket_text=state.text,
        categories=tuple(CategoryOption(c.label, c.description or c.name, c.money) for c in state.categories.values()),
        passages=_passages(state),
        output_schema=classification_answer_schema(labels=list(state.categories)),
    )


def _draft_request(state: RunState) -> DraftRequest:
    assert state.classification is not None
    category = state.category
    label = state.classification.category
    return DraftRequest(
        ticket_text=state.text,
        category=label,
        category_name=(category.name or category.label.replace("_", " ")) if category else label,
        passages=_passages(state),
        requester_name=requester_first_name(state.ticket.requester),
        facts=(state.lookup.facts,) if state.lookup else (),
        output_schema=draft_answer_schema(
            chunk_ids=[p.chunk_id for p in state.retrieval.passages] if state.retrieval else []
        ),
    )


def _passages(state: RunState) -> tuple[PassageText, ...]:
    if state.retrieval is None:
        return ()
    return tuple(PassageText(p.chunk_id, p.article_title, p.text, p.score) for p in state.retrieval.passages)


def _draft_from(reply: ProviderReply) -> Draft:
    return parse_contract(Draft, {**reply.output, "model": reply.model})


def classify_local(
    *, text: str, embedding: Any, predictor: IntentClassifier, categories: dict[str, Category], model: str
) -> Classification:
    """The trained local classifier's answer, as a contract validated against the live categories."""
    prediction = predictor.predict(texts=[text], embeddings=embedding.reshape(1, -1))[0]
    label = OUT_OF_SCOPE if prediction.out_of_scope or prediction.label is None else prediction.label
    priority = priority_for(text=text)
    money_mass = sum(
        p
        for name, p in zip(predictor.labels, prediction.probabilities, strict=True)
        if (c := categories.get(name)) is not None and c.money
    )
    raw: dict[str, Any] = {
        "category": label,
        "confidence": float(min(1.0, max(0.0, prediction.confidence))),
        "out_of_scope": label == OUT_OF_SCOPE,
        "priority": priority,
        "alternatives": [(a, float(p)) for a, p in prediction.alternatives[:3]],
        "proposed_actions": [
            a.model_dump() for a in proposed_actions_for(category=categories.get(label), priority=priority)
        ],
        "rationale": f"nearest past ticket similarity {prediction.nearest_similarity:.2f}",
        "model": model,
        "money_probability": float(min(1.0, max(0.0, money_mass))) if prediction.probabilities else None,
    }
    return parse_contract(Classification, raw, context={"categories": set(categories)})


def _classification_from(reply: ProviderReply, *, state: RunState) -> Classification:
    """A model's classification, validated against the live categories.

    What handling a category means (its actions, and whether one moves money) is decided by code
    from the category, never taken from the model's output.
    """
    output = dict(reply.output)
    label = output.get("category")
    category = state.categories.get(label) if isinstance(label, str) else None
    try:
        stated = Priority(output.get("priority", Priority.NORMAL))
    except ValueError:
        stated = Priority.NORMAL  # the contract reports the bad value below
    priority = priority_for(text=state.text, stated=stated)
    if priority != stated:
        output["priority"] = priority
    output["proposed_actions"] = [a.model_dump() for a in proposed_actions_for(category=category, priority=priority)]
    output["model"] = reply.model
    output["money_probability"] = None  # decided by code from the local classifier, never by a model
    return parse_contract(Classification, output, context={"categories": set(state.categories)})
