"""The durable runner: every step is a checkpoint, every failure has a policy.

A run is a fixed sequence of steps. Before a step runs, the runner looks for its finished
`StepRun`; if there is one, the step's output is restored from it and nothing is recomputed (or
paid for) again. Each attempt writes its own row with latency, tokens, cost and error, so a crash
anywhere leaves a trace and the next `run_pipeline` call carries on where it stopped.

Failure policy per step (StepPolicy): retry transient errors with exponential backoff and jitter,
then try the fallback provider once, then escalate to a person. Output that breaks its contract is
never retried into a loop: it escalates straight away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from integrations.llm.base import ProviderError, ProviderReply
from integrations.llm.retry import wait_seconds
from triage.contracts import Classification, ContractError, Draft, Retrieval, Verdict
from triage.models import Category, GatePolicy, PipelineRun, StepPolicy, StepRun, Ticket
from triage.pipeline import gates, steps
from triage.pipeline.router import Router, boilerplate_lines

logger = logging.getLogger(__name__)

STEP_ORDER = ("retrieve", "classify", "draft", "validate", "route", "execute")
ADVISORY_LOCK_NAMESPACE = 7_301
# The permission a person needs for a decision that moves money (defined by the approvals app's model).
MONEY_PERMISSION = "approvals.approve_money"


class StepSkipped(Exception):
    """A step that does not apply to this ticket (no knowledge base, nothing to draft)."""


class Escalate(Exception):
    """A step cannot produce valid output; the run goes to a person. Not retried."""

    def __init__(self, reason: str, verdicts: list[Verdict] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.verdicts = verdicts or []


@dataclass
class StepResult:
    output: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    why: str = ""

    @classmethod
    def from_reply(cls, output: dict[str, Any], reply: ProviderReply | None, verdicts: list[Verdict]) -> StepResult:
        if reply is None:
            return cls(output=output, verdicts=verdicts)
        u = reply.usage
        return cls(
            output=output, verdicts=verdicts, model=reply.model, tokens_in=u.tokens_in + u.cache_write_tokens
            + u.cache_read_tokens, tokens_out=u.tokens_out, cost=reply.cost,
            cache_write_tokens=u.cache_write_tokens, cache_read_tokens=u.cache_read_tokens,
        )


@dataclass
class RunState:
    """What the steps of one run know, rebuilt from checkpoints on resume."""

    run: PipelineRun
    ticket: Ticket
    policy: GatePolicy
    categories: dict[str, Category]
    router: Router
    retrieval: Retrieval | None = None
    classification: Classification | None = None
    draft: Draft | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    passed: bool = False
    route: str = ""
    _embedding: Any = None

    @property
    def text(self) -> str:
        return f"{self.ticket.subject}\n{self.ticket.body}".strip() if self.ticket.subject else self.ticket.body

    @property
    def embedding(self) -> Any:
        if self._embedding is None:
            from triage.embedding import embed_texts

            self._embedding = embed_texts([self.text])[0]
        return self._embedding

    @property
    def category(self) -> Category | None:
        return self.categories.get(self.classification.category) if self.classification else None

    def threshold_for(self, category: Category | None) -> float:
        if category is not None and category.confidence_threshold is not None:
            return category.confidence_threshold
        if self.policy.default_confidence_threshold is not None:
            return self.policy.default_confidence_threshold
        return self.router.classifier_threshold


# --- the steps as the runner sees them ------------------------------------------------------------


def _step_retrieve(state: RunState) -> StepResult:
    from triage.selectors import chunk_search, knowledge_base_exists

    if not knowledge_base_exists():
        raise StepSkipped("There is no knowledge base: triage is judged on classification alone.")
    retrieval = steps.retrieve(embedding=state.embedding, search=chunk_search)
    state.retrieval = retrieval
    verdicts = []
    if state.policy.retrieval_gate:
        verdicts.append(gates.gate_retrieval(retrieval=retrieval, min_score=state.policy.retrieval_min_score))
    return StepResult(output=retrieval.model_dump(mode="json"), verdicts=verdicts)


def _step_classify(state: RunState) -> StepResult:
    try:
        decision = state.router.classify(state=state)
    except ContractError as exc:
        verdict = gates.gate_schema(classification=None, error=exc)
        raise Escalate(verdict.reason, [verdict]) from exc
    state.classification = decision.classification
    verdicts = [gates.gate_schema(classification=decision.classification, error=None)]
    if state.policy.confidence_gate:
        verdicts.append(
            gates.gate_confidence(classification=decision.classification, threshold=state.threshold_for(state.category))
        )
    # Always on, whatever the gate policy says: money never moves without a person (see _money_hold).
    verdicts.append(
        gates.gate_money(
            classification=decision.classification,
            category_moves_money=bool(state.category and state.category.money),
            ticket_text=state.text,
        )
    )
    output = decision.classification.model_dump(mode="json") | {"routing": decision.trail}
    result = StepResult.from_reply(output, decision.reply, verdicts)
    result.model = result.model or decision.classification.model
    result.why = state.router.why.get("classify", "")
    return result


def _step_draft(state: RunState) -> StepResult:
    if state.retrieval is None or not state.retrieval.passages:
        raise StepSkipped("No knowledge-base passages to draft from.")
    if state.classification is None or state.classification.out_of_scope:
        raise StepSkipped("No category fits; a person writes this reply.")
    try:
        draft, reply = state.router.draft(state=state)
    except ContractError as exc:
        raise Escalate(f"The draft is invalid: {exc.reason}.") from exc
    state.draft = draft
    verdicts = []
    if state.policy.groundedness_gate:
        verdicts.append(
            gates.gate_groundedness(
                draft=draft, retrieval=state.retrieval, min_overlap=state.policy.groundedness_min_overlap,
                boilerplate=boilerplate_lines(),
            )
        )
    if state.policy.personal_data_gate:
        verdicts.append(gates.gate_personal_data(draft=draft, retrieval=state.retrieval, requester=state.ticket.requester))
    result = StepResult.from_reply(draft.model_dump(mode="json"), reply, verdicts)
    result.why = state.router.why.get("draft", "")
    return result


def _step_validate(state: RunState) -> StepResult:
    verdicts: list[Verdict] = []
    category = state.category
    if category is not None and not category.auto_reply:
        verdicts.append(Verdict(gate="category_policy", step="validate", passed=False,
                                reason=f"Category '{category.label}' is set to always wait for a person."))
    failed = [v for v in state.verdicts + verdicts if not v.passed]
    state.passed = state.classification is not None and not failed
    return StepResult(
        output={"passed": state.passed, "failed_gates": sorted({v.gate for v in failed}),
                "gates_enabled": state.run.gates_enabled},
        verdicts=verdicts,
    )


class MoneyWithoutPerson(Exception):
    """A money-moving action reached execution without a permitted person's decision. Never retried."""


def _money_hold(state: RunState) -> Verdict | None:
    """The money invariant, decided here and not behind any switch: on a gated run, a ticket whose
    category, proposed actions or text moves money goes to a person. The admin's settings can only
    add caution (more money categories); nothing in them can take a ticket off this path."""
    if not state.run.gates_enabled:
        return None  # a shadow run (evaluation): its actions are recorded only, see _step_execute
    verdict = gates.gate_money(
        classification=state.classification,
        category_moves_money=bool(state.category and state.category.money),
        ticket_text=state.text,
    )
    return None if verdict.passed else verdict.model_copy(update={"step": "route"})


def _step_route(state: RunState) -> StepResult:
    hold = _money_hold(state)
    if hold is None and state.classification is not None and (state.passed or not state.run.gates_enabled):
        state.route = PipelineRun.Route.AUTO
        return StepResult(output={"route": "auto", "reason": "every gate passed" if state.passed else "gates are off"})
    state.route = PipelineRun.Route.HUMAN
    failed = [v for v in state.verdicts if not v.passed]
    verdicts = []
    if hold is not None and not any(v.gate == hold.gate for v in failed):
        verdicts.append(hold)
        failed.append(hold)
    reason = " ".join(v.reason for v in failed) or "The chain could not produce a valid answer."
    handler: Callable[..., Any] = import_string(settings.TRIAGE_ESCALATION_HANDLER)
    with transaction.atomic():
        approval = handler(run=state.run, reason=reason, verdicts=state.verdicts + verdicts,
                           classification=state.classification, draft=state.draft)
    return StepResult(output={"route": "human", "reason": reason, "approval_id": approval.pk}, verdicts=verdicts)


def _step_execute(state: RunState) -> StepResult:
    """Carry out the actions: the chain's own when auto-handled, else the ones a person decided."""
    from triage.contracts import ProposedAction
    from triage.services import run_actions_execute

    if state.route == PipelineRun.Route.AUTO:
        assert state.classification is not None
        proposed = state.classification.proposed_actions
        reply = state.draft.body if state.draft else ""
        if state.run.gates_enabled and any(a.moves_money for a in proposed):
            # Unreachable while _step_route holds money for a person; a second lock on the same door.
            raise MoneyWithoutPerson("Refused: an automatic run proposed a money-moving action; a person must decide.")
    else:
        resolution = state.run.resolution or {}
        if resolution.get("verdict") == "reject":
            raise StepSkipped(f"Rejected by a person: {resolution.get('reason', '')}".strip())
        proposed = [ProposedAction.model_validate(a) for a in resolution.get("actions", [])]
        reply = resolution.get("reply", "")
        if any(a.moves_money for a in proposed) and not _money_permitted(resolution.get("decided_by")):
            raise MoneyWithoutPerson(
                "Refused: this decision moves money and was not taken by a person with the money-approval permission."
            )
    # A shadow run (gates off, evaluation only) records what it would do and sends nothing anywhere.
    actions = run_actions_execute(run=state.run, actions=proposed, reply=reply, record_only=not state.run.gates_enabled)
    failed = [a for a in actions if a.status != a.Status.DONE]
    if failed:
        # Recorded and retried by the step policy; a write-back that keeps failing escalates, visibly.
        raise RuntimeError("actions not carried out: " + ", ".join(f"{a.kind} ({a.error})" for a in failed))
    return StepResult(output={"actions": [{"kind": a.kind, "status": a.status, "key": a.idempotency_key} for a in actions]})


def _money_permitted(user_id: Any) -> bool:
    """Checked again at execution, not only when the decision was taken: a permission revoked in between,
    or a resolution written by anything but `approval_decide`, moves no money."""
    from django.contrib.auth import get_user_model

    if not isinstance(user_id, int):
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and user.has_perm(MONEY_PERMISSION)


STEP_FUNCTIONS: dict[str, Callable[[RunState], StepResult]] = {
    "retrieve": _step_retrieve,
    "classify": _step_classify,
    "draft": _step_draft,
    "validate": _step_validate,
    "route": _step_route,
    "execute": _step_execute,
}


# --- checkpoints ----------------------------------------------------------------------------------


def _restore(state: RunState, step_run: StepRun) -> None:
    """Put a finished step's output back into the state, exactly as the step had left it."""
    state.verdicts.extend(Verdict.model_validate(v) for v in step_run.verdicts)
    out = step_run.output or {}
    if step_run.status != StepRun.Status.SUCCEEDED:
        return
    if step_run.step == "retrieve":
        state.retrieval = Retrieval.model_validate(out)
    elif step_run.step == "classify":
        state.classification = Classification.model_validate({k: v for k, v in out.items() if k != "routing"})
    elif step_run.step == "draft":
        state.draft = Draft.model_validate(out)
    elif step_run.step == "validate":
        state.passed = bool(out.get("passed"))
    elif step_run.step == "route":
        state.route = out.get("route", "")


def _digest(state: RunState, step: str) -> str:
    payload = {
        "step": step,
        "text": state.text,
        "retrieval": state.retrieval.model_dump(mode="json") if state.retrieval else None,
        "classification": state.classification.model_dump(mode="json") if state.classification else None,
        "draft": state.draft.model_dump(mode="json") if state.draft else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _finish(step_run: StepRun, status: str, started: float, *, result: StepResult | None = None,
            error: str = "", verdicts: list[Verdict] | None = None, output: dict[str, Any] | None = None) -> None:
    step_run.status = status
    step_run.latency_ms = (time.perf_counter() - started) * 1000
    step_run.finished_at = timezone.now()
    step_run.error = error[:5000]
    if result is not None:
        step_run.output = result.output
        step_run.model = result.model[:100]
        step_run.tokens_in = result.tokens_in
        step_run.tokens_out = result.tokens_out
        step_run.cost = result.cost
        step_run.cache_write_tokens = result.cache_write_tokens
        step_run.cache_read_tokens = result.cache_read_tokens
        step_run.route_reason = result.why[:300]
        verdicts = result.verdicts
    if output is not None:
        step_run.output = output
    step_run.verdicts = [v.model_dump(mode="json") for v in verdicts or []]
    step_run.save()


def _charge(step_run: StepRun, exc: BaseException) -> None:
    """What a failed or escalated attempt had already paid for, which model it asked and why.

    The router attaches `charged`, `model` and `why` to the error (or to the cause of an Escalate).
    """
    source = exc.__cause__ if isinstance(exc, Escalate) and exc.__cause__ is not None else exc
    charged: ProviderReply | None = getattr(source, "charged", None)
    step_run.model = str(getattr(source, "model", "") or "")[:100]
    step_run.route_reason = str(getattr(source, "why", "") or "")[:300]
    if charged is not None:
        u = charged.usage
        step_run.model = charged.model[:100]
        step_run.tokens_in = u.tokens_in + u.cache_write_tokens + u.cache_read_tokens
        step_run.tokens_out = u.tokens_out
        step_run.cache_write_tokens, step_run.cache_read_tokens = u.cache_write_tokens, u.cache_read_tokens
        step_run.cost = charged.cost


def _backoff(policy: StepPolicy, attempt: int, error: BaseException) -> None:
    # Exponential with jitter, never sooner than a `retry_after` the error carries (429s), at most a minute.
    time.sleep(wait_seconds(attempt=attempt, error=error, base=policy.backoff_seconds) * settings.TRIAGE_BACKOFF_SCALE)


def _run_step(state: RunState, step: str, policy: StepPolicy) -> None:
    fn = STEP_FUNCTIONS[step]
    # Earlier attempts (a resumed run): one query for both counts, on the hot path of every step.
    counts = StepRun.objects.filter(run=state.run, step=step).aggregate(
        attempts=Count("pk"), failures=Count("pk", filter=Q(status=StepRun.Status.FAILED))
    )
    attempt, failures = counts["attempts"], counts["failures"]
    last_error: BaseException | None = None
    while True:
        attempt += 1
        started = time.perf_counter()
        step_run = StepRun.objects.create(run=state.run, step=step, attempt=attempt, input_digest=_digest(state, step))
        verdicts_before = len(state.verdicts)
        try:
            result = fn(state)
        except StepSkipped as skip:
            _finish(step_run, StepRun.Status.SKIPPED, started, output={"skipped": str(skip)})
            return
        except Escalate as esc:
            _charge(step_run, esc)
            _finish(step_run, StepRun.Status.ESCALATED, started, error=esc.reason, verdicts=esc.verdicts,
                    output={"escalated": esc.reason})
            state.verdicts.extend(esc.verdicts)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then retried or escalated
            del state.verdicts[verdicts_before:]
            last_error = exc
            retryable = not (isinstance(exc, ProviderError) and not exc.retryable or isinstance(exc, MoneyWithoutPerson))
            _charge(step_run, exc)
            _finish(step_run, StepRun.Status.FAILED, started, error=f"{type(exc).__name__}: {exc}")
            failures += 1
            logger.warning("run %s step %s attempt %s failed: %s", state.run.pk, step, attempt, exc)
            if retryable and failures < policy.max_attempts:
                _backoff(policy, failures, exc)
                continue
            if policy.fallback_provider and state.router.use_fallback(step, policy.fallback_provider):
                policy = StepPolicy(step=step, max_attempts=failures + 1, backoff_seconds=policy.backoff_seconds)
                continue
            break
        else:
            _finish(step_run, StepRun.Status.SUCCEEDED, started, result=result)
            state.verdicts.extend(result.verdicts)
            return
    reason = f"Step '{step}' failed after {failures} attempt(s): {type(last_error).__name__}: {last_error}"
    verdict = Verdict(gate="step_failed", step=step, passed=False, reason=reason)
    closing = StepRun.objects.create(run=state.run, step=step, attempt=attempt + 1, input_digest=_digest(state, step))
    _finish(closing, StepRun.Status.ESCALATED, time.perf_counter(), error=reason, verdicts=[verdict],
            output={"escalated": reason})
    state.verdicts.append(verdict)


@contextmanager
def _run_lock(run_id: int) -> Iterator[bool]:
    """A session-level advisory lock: one worker per run, whatever the queue does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, run_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, run_id])


def run_pipeline(*, run_id: int, router: Router | None = None) -> PipelineRun:
    """Run (or resume) a pipeline run to its end: auto-handled, waiting for a person, or failed.

    Safe to call twice, concurrently or after a crash: finished steps are restored, not redone.
    """
    from triage.selectors import categories_by_label, gate_policy_current, step_policies, step_runs_finished

    with _run_lock(run_id) as acquired:
        run = PipelineRun.objects.select_related("ticket").get(pk=run_id)
        if not acquired or run.status in (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING, PipelineRun.Status.FAILED):
            return run
        now = timezone.now()
        PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.RUNNING, started_at=run.started_at or now)
        Ticket.objects.filter(pk=run.ticket_id, status=Ticket.Status.NEW).update(status=Ticket.Status.TRIAGING)
        # Attempts left "running" by a worker that died are closed as failed before resuming.
        StepRun.objects.filter(run=run, status=StepRun.Status.RUNNING).update(
            status=StepRun.Status.FAILED, error="interrupted: the worker stopped during this attempt", finished_at=now
        )
        state = RunState(
            run=run, ticket=run.ticket, policy=gate_policy_current(), categories=categories_by_label(),
            router=router or Router.for_run(run),
        )
        finished = {s.step: s for s in step_runs_finished(run_id=run.pk)}
        policies = step_policies()
        try:
            for step in STEP_ORDER:
                if step in finished:
                    _restore(state, finished[step])
                    continue
                if step == "execute" and state.route == PipelineRun.Route.HUMAN and run.resolution is None:
                    break  # waits for a person; their decision re-queues the run to carry out this step
                _run_step(state, step, policies[step])
        except Exception as exc:
            logger.exception("run %s failed outside any step", run.pk)
            _close_run(run, PipelineRun.Status.FAILED, Ticket.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        unexecuted = [v for v in state.verdicts if v.gate == "step_failed" and v.step == "execute"]
        if unexecuted:
            _close_run(run, PipelineRun.Status.FAILED, Ticket.Status.FAILED, route=state.route, error=unexecuted[0].reason)
        elif state.route == PipelineRun.Route.AUTO:
            _close_run(run, PipelineRun.Status.COMPLETED, Ticket.Status.AUTO_HANDLED, route=state.route)
        elif run.resolution is None:
            _close_run(run, PipelineRun.Status.WAITING, Ticket.Status.AWAITING_APPROVAL, route=PipelineRun.Route.HUMAN)
        else:
            rejected = run.resolution.get("verdict") == "reject"
            _close_run(run, PipelineRun.Status.COMPLETED, Ticket.Status.REJECTED if rejected else Ticket.Status.RESOLVED,
                       route=PipelineRun.Route.HUMAN)
        run.refresh_from_db()
        return run


def _close_run(run: PipelineRun, status: str, ticket_status: str, *, route: str = "", error: str = "") -> None:
    with transaction.atomic():
        PipelineRun.objects.filter(pk=run.pk).update(
            status=status, route=route, error=error[:5000], finished_at=timezone.now()
        )
        Ticket.objects.filter(pk=run.ticket_id).update(status=ticket_status, updated_at=timezone.now())
