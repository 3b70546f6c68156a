"""The durable runner's own cost per ticket, beside the same four steps as plain function calls.

Model calls are stubbed (a fixed embedding, a fixed prediction, a fixed draft) so that what is left
is what the orchestration adds: StepRun checkpoints, the advisory lock, gate verdicts, routing and
idempotent actions. Both variants run in one process, on the embedded PostgreSQL, in a throw-away
database, interleaved in rounds so that drift affects both alike.

    uv run python bench/runner_overhead.py [--tickets 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import numpy as np

from integrations.llm.base import DraftRequest, PassageText
from integrations.llm.local import LocalProvider
from triage import embedding as embedding_module
from triage.contracts import (
    Draft,
    TicketIn,
)
from triage.evaluation import isolated_database
from triage.models import Article, Category, Chunk, PipelineRun, TrainedClassifier
from triage.pipeline import gates
from triage.pipeline import router as router_module
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.selectors import categories_by_label, chunk_search, gate_policy_current
from triage.services import ticket_ingest

RNG = np.random.default_rng(7)
VECTOR = (lambda v: v / np.linalg.norm(v))(RNG.normal(size=384).astype(np.float32))


@dataclass(frozen=True)
class FixedPrediction:
    label: str | None = "order_status"
    confidence: float = 0.97
    alternatives: tuple[tuple[str, float], ...] = (("order_status", 0.97),)
    out_of_scope: bool = False
    nearest_similarity: float = 0.9


class StubClassifier:
    def predict(self, *, texts, embeddings):
        return [FixedPrediction() for _ in texts]


def stub_models() -> None:
    embedding_module.embed_texts = lambda texts, **kw: np.tile(VECTOR, (len(texts), 1))  # type: ignore[assignment]  # a stub model
    router_module.classifier_load = lambda pk: StubClassifier()  # type: ignore[assignment]  # a stub model


def seed() -> None:
    Category.objects.create(label="order_status", name="Order status")
    Category.objects.create(label="refund_request", name="Refund request", money=True)
    TrainedClassifier.objects.create(
        model="stub", blob=b"", labels=["order_status"], example_count=0, suggested_threshold=0.5
    )
    for a in range(20):
        article = Article.objects.create(slug=f"a{a}", title=f"Article {a}", body="")
        for c in range(4):
            noise = RNG.normal(scale=0.02, size=384).astype(np.float32)
            Chunk.objects.create(
                article=article,
                ordinal=c,
                embedding=(VECTOR + noise) / np.linalg.norm(VECTOR + noise),
                text=f"Your order ships within two working days from our roastery. "
                f"You can track order number {a}-{c} from Account > Orders.",
            )


def plain_chain(text: str) -> None:
    """The four steps as plain calls: no checkpoints, no lock, no routing records."""
    policy = gate_policy_current()
    categories = categories_by_label()
    vector = embedding_module.embed_texts([text])[0]
    retrieval = chunk_search(embedding=vector, limit=4)
    classification = router_module.classify_local(
        text=text, embedding=vector, predictor=StubClassifier(), categories=categories, model="stub"
    )
    drafter = LocalProvider()
    request = DraftRequest(
        ticket_text=text,
        category=classification.category,
        category_name="Order status",
        passages=tuple(PassageText(p.chunk_id, p.article_title, p.text, p.score) for p in retrieval.passages),
    )
    reply = drafter.draft(request)
    draft = Draft.model_validate({**reply.output, "model": reply.model})
    verdicts = [
        gates.gate_retrieval(retrieval=retrieval, min_score=policy.retrieval_min_score),
        gates.gate_schema(classification=classification, error=None),
        gates.gate_confidence(classification=classification, threshold=0.5),
        gates.gate_money(classification=classification, category_moves_money=False, ticket_text=text),
        gates.gate_groundedness(
            draft=draft, retrieval=retrieval, min_overlap=0.8, boilerplate=drafter.boilerplate_for(request)
        ),
        gates.gate_personal_data(draft=draft, retrieval=retrieval, requester=""),
    ]
    assert verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stub_models()
    with isolated_database():
        seed()
        router = Router.for_run(PipelineRun())
        text = "Where is my order? It has been a week and tracking has not moved since it left the roastery."
        plain_ms, runner_ms = [], []
        serial = 0
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.tickets):
                plain_chain(text)
            plain_ms.append((time.perf_counter() - start) * 1000 / args.tickets)
            start = time.perf_counter()
            for _ in range(args.tickets):
                serial += 1
                result = ticket_ingest(
                    ticket_in=TicketIn(source="bench", external_id=str(serial), body=text), enqueue=False
                )
                run = run_pipeline(run_id=result.run.pk, router=router.fresh())
                assert run.status == PipelineRun.Status.COMPLETED, run.status
            runner_ms.append((time.perf_counter() - start) * 1000 / args.tickets)
    plain, durable = statistics.median(plain_ms), statistics.median(runner_ms)
    print(f"tickets per round: {args.tickets}, rounds: {args.rounds} (medians of the rounds)")
    print(f"plain function calls : {plain:8.2f} ms/ticket")
    print(f"durable runner       : {durable:8.2f} ms/ticket  (ingest + checkpoints + actions)")
    print(f"runner overhead      : {durable - plain:8.2f} ms/ticket  ratio {durable / plain:.2f}x")


if __name__ == "__main__":
    main()
