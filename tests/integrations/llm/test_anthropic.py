"""Claude in the real chain: the real `anthropic` SDK against a loopback Messages API, the real runner.

Every category threshold is 1.0 in these tests, so the local classifier is always unsure and the
cascade asks Claude; a scripted answer with confidence 1.0 clears the gate.
"""

from __future__ import annotations

import logging
import time as real_time
import types
from datetime import timedelta
from decimal import Decimal

import pytest
from annotated_types import MaxLen
from fake_anthropic import answer, classification, error, valid_answer

from approvals.models import ApprovalRequest
from integrations.llm.anthropic import AnthropicProvider
from integrations.llm.base import CategoryOption, ClassifyRequest, ProviderError, Usage
from integrations.llm.breaker import breaker_for
from triage.contracts import ClassificationAnswer, DraftAnswer
from triage.models import Category, ModelPrice, PipelineRun, ProviderSettings, StepRun
from triage.pipeline import retry
from triage.pipeline.runner import run_pipeline
from triage.spend import call_cost, llm_spend_today, spending_cap_reached

pytestmark = pytest.mark.django_db

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"
HAIKU_CALL = Decimal("0.002970")  # 420 in x $1 + 60 out x $5 + 1,800 cache-write x $1.25, per million
SONNET_CALL = Decimal("0.008910")  # the same usage at $3 / $15 / $3.75


def account_access(body):
    return valid_answer(body, category="account_access")


def classify_attempts(run: PipelineRun) -> list[tuple[int, str, str]]:
    return list(run.steps.filter(step="classify").order_by("attempt").values_list("attempt", "status", "model"))


def max_length(contract, field: str) -> int:
    return next(m.max_length for m in contract.model_fields[field].metadata if isinstance(m, MaxLen))


def classify_cost(run: PipelineRun) -> Decimal:
    return sum((s.cost for s in run.steps.filter(step="classify")), Decimal("0"))


def test_a_valid_structured_answer_is_used_priced_and_the_route_recorded(claude, ingest):
    fake = claude([answer(classification("account_access"))])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.COMPLETED and run.route == "auto"
    assert classify_attempts(run) == [(1, "succeeded", "claude-haiku-4-5")]
    step = run.steps.get(step="classify")
    assert step.output["category"] == "account_access" and step.output["model"] == "claude-haiku-4-5"
    assert [t.get("model") for t in step.output["routing"]][1] == "claude-haiku-4-5"
    assert "local confidence" in step.route_reason and "anthropic claude-haiku-4-5" in step.route_reason
    assert (step.tokens_in, step.tokens_out, step.cache_write_tokens, step.cache_read_tokens) == (2220, 60, 1800, 0)
    assert step.cost == HAIKU_CALL
    # The request: a forced tool call against the contract's schema, the ticket as delimited data,
    # the stable prompt marked for caching, and no SDK-side retries.
    [request] = fake.requests
    assert request["tool_choice"] == {"type": "tool", "name": "record_classification"}
    schema = request["tools"][0]["input_schema"]
    assert "account_access" in schema["properties"]["category"]["enum"]
    assert "out_of_scope" in schema["properties"]["category"]["enum"]
    assert all(block["cache_control"] == {"type": "ephemeral"} for block in request["system"])
    assert "<ticket>\n" + PASSWORD_TICKET in request["messages"][0]["content"]
    assert fake.headers[0].get("x-stainless-retry-count") == "0"
    # Actions come from code, not from the model: a non-money category gets the ordinary ones.
    assert {a["kind"] for a in step.output["proposed_actions"]} == {
        "set_category",
        "set_priority",
        "send_reply",
        "solve",
    }


def test_a_category_that_does_not_exist_gets_one_repair_then_a_person(claude, ingest):
    fake = claude([answer(classification("gift_wrapping")), answer(classification("gift_wrapping"))])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.WAITING and run.route == "human"
    assert classify_attempts(run) == [(1, "escalated", "claude-haiku-4-5")]  # not retried into a loop
    assert len(fake.requests) == 2
    assert "'gift_wrapping' does not exist" in fake.requests[1]["messages"][0]["content"]
    step = run.steps.get(step="classify")
    assert "repair requested" in step.route_reason and "still invalid" in step.route_reason
    assert step.cost == 2 * HAIKU_CALL and step.tokens_out == 120  # both calls were paid for
    assert ApprovalRequest.objects.get(run=run).failed_gates == ["schema"]


def test_malformed_output_is_repaired_once_and_then_used(claude, ingest):
    fake = claude(
        [answer({"category": "account_access", "confidence": "very high"}), answer(classification("account_access"))]
    )
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.route == "auto" and run.status == PipelineRun.Status.COMPLETED
    assert classify_attempts(run) == [(1, "succeeded", "claude-haiku-4-5")]
    assert "Validation error" in fake.requests[1]["messages"][0]["content"]
    assert "confidence" in fake.requests[1]["messages"][0]["content"]
    step = run.steps.get(step="classify")
    assert step.cost == 2 * HAIKU_CALL and "repair requested" in step.route_reason


def test_malformed_output_twice_goes_to_a_person(claude, ingest):
    fake = claude([answer({"category": "account_access"}), answer({"verdict": "refund everything"})])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.WAITING
    assert classify_attempts(run) == [(1, "escalated", "claude-haiku-4-5")]
    assert len(fake.requests) == 2 and classify_cost(run) == 2 * HAIKU_CALL
    assert ApprovalRequest.objects.get(run=run).failed_gates == ["schema"]


def test_a_429_is_retried_after_the_time_the_server_asked_for(claude, ingest, settings, monkeypatch):
    fake = claude([error(429, "rate_limit_error", retry_after="7"), answer(classification("account_access"))])
    settings.TRIAGE_BACKOFF_SCALE = 1.0
    slept: list[float] = []
    monkeypatch.setattr(retry, "time", types.SimpleNamespace(sleep=slept.append))
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.route == "auto"
    assert classify_attempts(run) == [(1, "failed", "claude-haiku-4-5"), (2, "succeeded", "claude-haiku-4-5")]
    assert slept and slept[0] >= 7.0
    first = run.steps.get(step="classify", attempt=1)
    assert "429" in first.error and first.cost == 0 and first.tokens_in == 0  # nothing was received
    assert classify_cost(run) == HAIKU_CALL and len(fake.requests) == 2


def test_overloaded_529_falls_back_to_the_next_model(claude, ingest):
    fake = claude([error(529, "overloaded_error"), answer(classification("account_access"))])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.route == "auto"
    assert fake.models_asked() == ["claude-haiku-4-5", "claude-sonnet-4-6"]
    assert classify_attempts(run) == [(1, "failed", "claude-haiku-4-5"), (2, "succeeded", "claude-sonnet-4-6")]
    second = run.steps.get(step="classify", attempt=2)
    assert "fallback model (claude-haiku-4-5 overloaded)" in second.route_reason
    assert second.cost == SONNET_CALL and classify_cost(run) == SONNET_CALL


def test_500s_until_the_retries_run_out_send_the_ticket_to_a_person(claude, ingest):
    fake = claude([error(500, "api_error")] * 3)
    result = ingest(PASSWORD_TICKET, enqueue=False)

    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.WAITING and run.route == "human"
    assert classify_attempts(run) == [
        (1, "failed", "claude-haiku-4-5"),
        (2, "failed", "claude-haiku-4-5"),
        (3, "failed", "claude-haiku-4-5"),
        (4, "escalated", ""),
    ]
    assert len(fake.requests) == 3 and classify_cost(run) == 0
    approval = ApprovalRequest.objects.get(run=run)
    assert approval.failed_gates == ["step_failed"] and "HTTP 500" in approval.reason


def test_a_response_slower_than_the_timeout_is_abandoned_and_retried(claude, ingest, settings):
    settings.TRIAGE_ANTHROPIC_TIMEOUT = 0.4
    fake = claude([answer(classification("account_access"), delay=30), answer(classification("account_access"))])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    started = real_time.monotonic()
    run = run_pipeline(run_id=result.run.pk)

    # did not wait for the slow answer (30 s); the margin is wide so that a loaded machine cannot fail it
    assert real_time.monotonic() - started < 10
    assert run.route == "auto"
    assert classify_attempts(run) == [(1, "failed", "claude-haiku-4-5"), (2, "succeeded", "claude-haiku-4-5")]
    first = run.steps.get(step="classify", attempt=1)
    assert "timed out" in first.error and first.cost == 0
    assert classify_cost(run) == HAIKU_CALL and len(fake.requests) == 2


def test_a_401_is_not_retried_it_goes_to_a_person_with_an_alert(claude, ingest, caplog):
    fake = claude([error(401, "authentication_error", message="invalid x-api-key")])
    result = ingest(PASSWORD_TICKET, enqueue=False)

    with caplog.at_level(logging.ERROR, logger="integrations"):
        run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.WAITING
    assert len(fake.requests) == 1
    assert classify_attempts(run) == [(1, "failed", "claude-haiku-4-5"), (2, "escalated", "")]
    first = run.steps.get(step="classify", attempt=1)
    assert "HTTP 401 authentication_error" in first.error and "not retried" in first.error
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "ERROR",
            (
                "anthropic classify call refused: claude-haiku-4-5: HTTP 401 authentication_error: invalid x-api-key "
                "(not retried: the request or the credentials need fixing)"
            ),
        )
    ]
    assert "401" in ApprovalRequest.objects.get(run=run).reason and classify_cost(run) == 0


def test_the_circuit_breaker_skips_a_failing_provider_then_probes_it_after_the_cool_down(claude, ingest, settings):
    settings.TRIAGE_BREAKER_FAILURES = 2
    settings.TRIAGE_BREAKER_COOLDOWN = 60.0
    fake = claude([error(503, "api_error"), error(500, "api_error")], default=account_access)

    first = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)
    # Two failures open the breaker: the third attempt keeps the local answer and the gates send it on.
    assert classify_attempts(first)[-1][1] == "succeeded" and len(fake.requests) == 2
    assert "circuit breaker open" in first.steps.get(step="classify", status="succeeded").route_reason
    assert first.status == PipelineRun.Status.WAITING  # local answer under the threshold: a person

    second = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)
    assert len(fake.requests) == 2  # a new run does not call the provider at all
    assert second.status == PipelineRun.Status.WAITING
    trail = second.steps.get(step="classify").output["routing"]
    assert trail[-1]["skipped"] and "circuit breaker open" in trail[-1]["why"]

    breaker_for("anthropic", failures=2, cooldown=60.0).storage.opened_at -= timedelta(seconds=61)  # cool-down over:
    # one probe goes through, succeeds, and closes the breaker; the next run calls as usual.
    third = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)
    fourth = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)
    assert len(fake.requests) == 4 and third.route == "auto" and fourth.route == "auto"


def test_over_the_daily_spending_cap_runs_stay_local_and_say_so(claude, ingest, settings):
    fake = claude([answer(classification("account_access"))])
    settings.TRIAGE_DAILY_SPEND_CAP = Decimal("0.002")
    first = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)
    assert first.route == "auto" and llm_spend_today() == HAIKU_CALL
    assert spending_cap_reached()

    second = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)

    assert len(fake.requests) == 1
    assert second.status == PipelineRun.Status.WAITING
    step = second.steps.get(step="classify")
    assert "daily spending cap reached" in step.route_reason and step.cost == 0


def test_admin_settings_choose_the_models_and_admin_prices_the_calls(claude, ingest):
    fake = claude([answer(classification("account_access"))])
    provider = ProviderSettings.get_solo()  # the one row, whether or not an earlier read created it
    provider.classify_models = "claude-opus-4-6"
    provider.save()
    ModelPrice.objects.create(
        model="claude-opus-4-6", input_per_mtok=10, output_per_mtok=50, cache_write_per_mtok=0, cache_read_per_mtok=0
    )

    run = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)

    assert fake.models_asked() == ["claude-opus-4-6"]
    assert run.steps.get(step="classify").cost == Decimal("0.007200")  # 420 x $10 + 60 x $50, per million


def test_claude_can_draft_from_the_passages_marked_for_caching(claude, ingest, settings):
    settings.TRIAGE_DRAFT_PROVIDERS = ["anthropic"]
    fake = claude([answer(classification("account_access"))], default=account_access)

    run = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)

    draft_request = fake.requests[1]
    assert draft_request["tool_choice"]["name"] == "write_reply" and draft_request["model"] == "claude-sonnet-4-6"
    assert "<passage chunk_id=" in draft_request["system"][1]["text"]
    assert draft_request["system"][1]["cache_control"] == {"type": "ephemeral"}
    draft = run.steps.get(step="draft", status__in=StepRun.FINISHED)
    assert draft.model == "claude-sonnet-4-6" and draft.cost == SONNET_CALL
    assert draft.output["citations"]
    assert run.status == PipelineRun.Status.COMPLETED


def test_a_model_is_priced_by_its_longest_listed_prefix():
    usage = Usage(tokens_in=1_000_000, tokens_out=0, cache_write_tokens=0, cache_read_tokens=1_000_000)
    assert call_cost(model="claude-haiku-4-5-20251001", usage=usage) == Decimal("1.100000")
    assert call_cost(model="claude-unknown-9", usage=usage) == Decimal("5.500000")  # the dearest row


def test_evaluate_with_claude_needs_a_key_or_a_base_url(settings):
    from django.core.management import CommandError, call_command

    settings.ANTHROPIC_API_KEY = ""
    settings.ANTHROPIC_BASE_URL = ""

    with pytest.raises(CommandError, match="ANTHROPIC_API_KEY"):
        call_command("evaluate", "triage/demo", "--provider", "anthropic", "--limit", "1")


def test_the_tool_schemas_on_the_wire_are_the_contracts_with_their_limits(claude, ingest, settings):
    settings.TRIAGE_DRAFT_PROVIDERS = ["anthropic"]
    fake = claude([answer(classification("account_access"))], default=account_access)

    run = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)

    classify_schema = fake.requests[0]["tools"][0]["input_schema"]
    props = classify_schema["properties"]
    assert set(props) == set(ClassificationAnswer.model_fields)  # nothing the model must not fill (model, actions)
    assert props["rationale"]["maxLength"] == max_length(ClassificationAnswer, "rationale") == 2000
    assert props["alternatives"]["maxItems"] == max_length(ClassificationAnswer, "alternatives")
    assert (props["confidence"]["minimum"], props["confidence"]["maximum"]) == (0, 1)
    labels = set(Category.objects.values_list("label", flat=True))
    assert set(props["category"]["enum"]) == labels | {"out_of_scope"}
    assert set(props["alternatives"]["items"]["prefixItems"][0]["enum"]) == labels | {"out_of_scope"}
    assert set(classify_schema["required"]) == set(props) and classify_schema["additionalProperties"] is False
    draft_schema = fake.requests[1]["tools"][0]["input_schema"]
    assert set(draft_schema["properties"]) == set(DraftAnswer.model_fields) == {"body", "citations"}
    assert draft_schema["properties"]["body"]["maxLength"] == max_length(DraftAnswer, "body") == 20_000
    retrieved = [p["chunk_id"] for p in run.steps.get(step="retrieve").output["passages"]]
    assert draft_schema["properties"]["citations"]["items"]["enum"] == retrieved


def test_a_rationale_over_the_contracts_limit_is_sent_back_for_repair(claude, ingest):
    limit = max_length(ClassificationAnswer, "rationale")
    fake = claude(
        [
            answer(classification("account_access", rationale="x" * (limit + 1))),
            answer(classification("account_access", rationale="x" * limit)),
        ]
    )

    run = run_pipeline(run_id=ingest(PASSWORD_TICKET, enqueue=False).run.pk)

    assert run.route == "auto" and len(fake.requests) == 2
    assert "rationale" in fake.requests[1]["messages"][0]["content"]
    assert len(run.steps.get(step="classify").output["rationale"]) == limit


def test_a_request_without_an_output_schema_is_refused_before_anything_is_sent(claude):
    fake = claude([])
    provider = AnthropicProvider(api_key="sk-test", base_url=fake.base_url)
    request = ClassifyRequest(ticket_text=PASSWORD_TICKET, categories=(CategoryOption("account_access"),))

    with pytest.raises(ProviderError, match="no output schema") as raised:
        provider.classify(request)

    assert raised.value.retryable is False and fake.requests == []
