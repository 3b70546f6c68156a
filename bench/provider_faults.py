"""Fault injection: tickets through the real chain while 30% of Claude calls fail in mixed ways.

The real runner, router, gates and `anthropic` SDK run against the loopback Messages API of
`tests/integrations/llm/fake_anthropic.py`, which fails a seeded 30% of calls: 429 with
`retry-after`, 500, 503, 529 overloaded, a dropped connection, an answer slower than the timeout,
a 400, output that breaks the schema, and a category that does not exist. The local embedding and
classifier are stubbed (the classifier is always unsure, so every ticket asks Claude), and Claude
also drafts. It runs in a throw-away database, with a tiny backoff scale.

It checks, and exits non-zero when one fails:
- every ticket ends auto-handled or waiting for a person (none lost, none failed, none stuck);
- no auto-handled run has a failed gate (a gate that failed always means a person);
- nothing is charged twice: the tokens and dollars in the StepRun cost log equal those of the
  answers the client actually received, call for call.

    uv run python bench/provider_faults.py [--tickets 1000] [--fault-rate 0.3] [--seed 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integrations" / "llm"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("TRIAGE_LOG_LEVEL", "ERROR")

import django

django.setup()

import numpy as np
from django.conf import settings
from django.db.models import Sum
from fake_anthropic import FakeAnthropic, Reply, answer, classification, dropped, error, valid_answer

from integrations.llm.base import Usage
from integrations.llm.breaker import breakers_reset
from triage import embedding as embedding_module
from triage.contracts import TicketIn
from triage.evaluation import isolated_database
from triage.models import Article, Category, Chunk, PipelineRun, StepRun, Ticket, TrainedClassifier
from triage.pipeline import router as router_module
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.services import ticket_ingest
from triage.spend import call_cost

CLIENT_TIMEOUT = 0.5
SLOW = 1.0
RNG = np.random.default_rng(7)
VECTOR = (lambda v: v / np.linalg.norm(v))(RNG.normal(size=384).astype(np.float32))
TICKET_NO = re.compile(r"Ticket #(\d+)")


class UnsureClassifier:
    """The local classifier, always under the threshold: every ticket goes on to Claude."""

    class Prediction:
        label = "order_status"
        confidence = 0.5
        alternatives = (("order_status", 0.5),)
        out_of_scope = False
        nearest_similarity = 0.5

    def predict(self, *, texts, embeddings):
        return [self.Prediction() for _ in texts]


def seed() -> None:
    Category.objects.create(label="order_status", name="Order status", confidence_threshold=0.9)
    Category.objects.create(label="shipping_delay", name="Shipping delay", confidence_threshold=0.9)
    Category.objects.create(label="refund_request", name="Refund request", money=True, confidence_threshold=0.9)
    TrainedClassifier.objects.create(
        model="stub-unsure", blob=b"", labels=["order_status"], example_count=0, suggested_threshold=0.9
    )
    for a in range(5):
        article = Article.objects.create(slug=f"a{a}", title=f"Orders {a}", body="")
        for c in range(3):
            v = VECTOR + RNG.normal(scale=0.02, size=384).astype(np.float32)
            Chunk.objects.create(
                article=article,
                ordinal=c,
                embedding=v / np.linalg.norm(v),
                text="Your order ships within two working days from our roastery. "
                "You can track every order from Account > Orders.",
            )


def stub_local_models() -> None:
    embedding_module.embed_texts = lambda texts, **kw: np.tile(VECTOR, (len(texts), 1))  # type: ignore[assignment]  # a stub model
    router_module.classifier_load = lambda pk: UnsureClassifier()  # type: ignore[assignment]  # a stub model


class Script:
    """Claude's side: the right answer for the ticket, or (fault_rate of calls) one of the faults."""

    FAULTS = ("429", "500", "503", "529", "drop", "slow", "400", "malformed", "bad_category")

    def __init__(self, *, fault_rate: float, seed: int):
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.calls = 0
        self.faults: Counter[str] = Counter()

    def __call__(self, body: dict) -> Reply:
        with self.lock:
            self.calls += 1
            n = self.calls
            fault = self.random.choice(self.FAULTS) if self.random.random() < self.fault_rate else None
        if fault:
            self.faults[fault] += 1
        usage = {
            "input_tokens": 300 + n % 53,
            "output_tokens": 40 + n % 31,
            "cache_creation_input_tokens": 1500 if n % 7 == 1 else 0,
            "cache_read_input_tokens": 0 if n % 7 == 1 else 1500,
        }
        match fault:
            case "429":
                return error(429, "rate_limit_error", retry_after="1")
            case "500":
                return error(500, "api_error")
            case "503":
                return error(503, "api_error")
            case "529":
                return error(529, "overloaded_error")
            case "drop":
                return dropped()
            case "400":
                return error(400, "invalid_request_error", message="messages: malformed request")
            case "malformed":
                return answer({"category": "order_status", "confidence": "sure"}, usage=usage)
            case "bad_category":
                return answer(
                    classification("gift_wrapping")
                    if body["tool_choice"]["name"] == "record_classification"
                    else {"body": ""},
                    usage=usage,
                )
        ticket = int(TICKET_NO.search(body["messages"][0]["content"]).group(1))
        reply = self.right_answer(body, ticket)
        reply.usage = usage
        if fault == "slow":
            reply.delay = SLOW
        return reply

    @staticmethod
    def right_answer(body: dict, ticket: int) -> Reply:
        if body["tool_choice"]["name"] != "record_classification":
            return valid_answer(body)
        kind = ticket % 10
        if kind == 7:
            return answer(classification("refund_request", confidence=0.97))  # money: always a person
        if kind == 8:
            return answer(classification("out_of_scope", confidence=0.9))  # no category fits: a person
        if kind == 9:
            return answer(classification("shipping_delay", confidence=0.6))  # still unsure: a person
        return answer(classification("order_status", confidence=0.97))


def configure(base_url: str) -> None:
    settings.ANTHROPIC_API_KEY = "sk-bench"
    settings.ANTHROPIC_BASE_URL = base_url
    settings.TRIAGE_CLASSIFY_CASCADE = ["anthropic"]
    settings.TRIAGE_DRAFT_PROVIDERS = ["anthropic", "local"]
    settings.TRIAGE_ANTHROPIC_TIMEOUT = CLIENT_TIMEOUT
    settings.TRIAGE_BACKOFF_SCALE = 0.001
    settings.TRIAGE_DAILY_SPEND_CAP = 0
    # A touchy breaker, so that it opens now and then at a 30% fault rate and its skips are exercised too.
    settings.TRIAGE_BREAKER_FAILURES = 3
    settings.TRIAGE_BREAKER_COOLDOWN = 0.2
    settings.TRIAGE_QUEUE_BACKEND = "immediate"
    breakers_reset()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    script = Script(fault_rate=args.fault_rate, seed=args.seed)
    started = time.perf_counter()
    with isolated_database(), FakeAnthropic(default=script) as fake:
        configure(fake.base_url)
        stub_local_models()
        seed()
        router = Router.for_run(PipelineRun())
        for i in range(args.tickets):
            result = ticket_ingest(
                ticket_in=TicketIn(
                    source="bench",
                    external_id=f"t{i}",
                    subject=f"Ticket #{i}",
                    body="Where is my order? It has not arrived yet.",
                    requester="pat@example.com",
                ),
                enqueue=False,
            )
            run_pipeline(run_id=result.run.pk, router=router.fresh())
        elapsed = time.perf_counter() - started
        return report(args, script, fake, elapsed)


def report(args: argparse.Namespace, script: Script, fake: FakeAnthropic, elapsed: float) -> int:
    tickets = Counter(Ticket.objects.values_list("status", flat=True))
    runs = Counter(PipelineRun.objects.values_list("status", flat=True))
    problems: list[str] = []

    # 1. None lost: every ticket ended auto-handled or waiting for a person.
    if sum(tickets.values()) != args.tickets:
        problems.append(f"{args.tickets - sum(tickets.values())} tickets lost")
    settled = {Ticket.Status.AUTO_HANDLED, Ticket.Status.AWAITING_APPROVAL}
    for status, n in tickets.items():
        if status not in settled:
            problems.append(f"{n} tickets ended '{status}'")

    # 2. None auto-handled after a failed gate.
    auto_ids = list(PipelineRun.objects.filter(route="auto").values_list("pk", flat=True))
    unsafe = set()
    for run_id, verdicts in StepRun.objects.filter(run_id__in=auto_ids, status__in=StepRun.FINISHED).values_list(
        "run_id", "verdicts"
    ):
        if any(not v.get("passed") for v in verdicts):
            unsafe.add(run_id)
    if unsafe:
        problems.append(f"{len(unsafe)} runs auto-handled after a failed gate")

    # 3. Nothing charged twice: the cost log equals what the client received, call for call.
    received = [s for s in fake.served if s.status == 200 and s.delay < CLIENT_TIMEOUT]
    expected = {"tokens_out": 0, "cache_write": 0, "cache_read": 0, "tokens_in": 0, "cost": Decimal("0")}
    for s in received:
        u = Usage(
            s.usage["input_tokens"],
            s.usage["output_tokens"],
            s.usage["cache_creation_input_tokens"],
            s.usage["cache_read_input_tokens"],
        )
        expected["tokens_in"] += u.tokens_in + u.cache_write_tokens + u.cache_read_tokens
        expected["tokens_out"] += u.tokens_out
        expected["cache_write"] += u.cache_write_tokens
        expected["cache_read"] += u.cache_read_tokens
        expected["cost"] += call_cost(model=s.model, usage=u)
    logged = StepRun.objects.aggregate(
        tokens_in=Sum("tokens_in"),
        tokens_out=Sum("tokens_out"),
        cache_write=Sum("cache_write_tokens"),
        cache_read=Sum("cache_read_tokens"),
        cost=Sum("cost"),
    )
    logged = {k: v or 0 for k, v in logged.items()}
    for key, value in expected.items():
        if logged[key] != value:
            problems.append(f"cost log {key} = {logged[key]}, received answers = {value}")

    attempts = Counter(StepRun.objects.filter(step__in=["classify", "draft"]).values_list("step", "status"))
    failed_gates = Counter()
    for verdicts in StepRun.objects.filter(status__in=StepRun.FINISHED).values_list("verdicts", flat=True):
        failed_gates.update(v["gate"] for v in verdicts if not v.get("passed"))
    skipped_breaker = StepRun.objects.filter(route_reason__contains="circuit breaker open").count()
    calls = len(fake.requests)

    print(
        f"provider fault injection: {args.tickets} tickets, {calls} Claude calls, "
        f"{sum(script.faults.values())} faulty ({sum(script.faults.values()) / max(calls, 1):.1%}), "
        f"{elapsed:.1f}s"
    )
    print("faults injected:   " + ", ".join(f"{k} {v}" for k, v in sorted(script.faults.items())))
    print("tickets:           " + ", ".join(f"{k} {v}" for k, v in sorted(tickets.items())))
    print("runs:              " + ", ".join(f"{k} {v}" for k, v in sorted(runs.items())))
    print("step attempts:     " + ", ".join(f"{s}/{st} {n}" for (s, st), n in sorted(attempts.items())))
    print("failed gates:      " + ", ".join(f"{k} {v}" for k, v in failed_gates.most_common()))
    print(f"breaker skips:     {skipped_breaker} step attempts kept local because the breaker was open")
    print(
        f"cost log:          ${logged['cost']:.6f} for {len(received)} received answers "
        f"(tokens in {logged['tokens_in']}, out {logged['tokens_out']}, cache write {logged['cache_write']}, "
        f"cache read {logged['cache_read']}); expected ${expected['cost']:.6f}"
    )
    print(f"auto-handled after a failed gate: {len(unsafe)}")
    if problems:
        print("FAILED: " + "; ".join(problems))
    else:
        print(
            "OK: every ticket auto-handled or waiting for a person; none lost; no gate bypassed; nothing charged twice"
        )
    figures = {
        "tickets": args.tickets,
        "claude_calls": calls,
        "faulty_calls": sum(script.faults.values()),
        "seconds": round(elapsed, 1),
        "tickets_by_status": dict(sorted(tickets.items())),
        "auto_handled_after_failed_gate": len(unsafe),
        "cost_logged": str(logged["cost"]),
        "cost_received": str(expected["cost"]),
        "problems": problems,
    }
    print(json.dumps(figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
