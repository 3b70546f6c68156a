"""The router: providers found through settings, answers returned as values."""

from __future__ import annotations

import pytest

from integrations.llm.local import CLOSING
from triage.pipeline.router import DraftDecision, Router
from triage.pipeline.runner import run_pipeline

pytestmark = pytest.mark.django_db

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"


def test_a_draft_decision_carries_the_drafters_exact_template_lines_for_this_request(ingest, monkeypatch):
    seen: list[DraftDecision] = []
    real = Router.draft

    def spy(self, *, state):
        decision = real(self, state=state)
        seen.append(decision)
        return decision

    monkeypatch.setattr(Router, "draft", spy)
    result = ingest(PASSWORD_TICKET, requester="maria.lopez@example.com", enqueue=False)

    run_pipeline(run_id=result.run.pk)

    assert len(seen) == 1
    decision = seen[0]
    assert decision.boilerplate[0] == "Hi Maria,"
    assert decision.draft.body.startswith("Hi Maria,")
    assert decision.why == "draft provider local"
    assert decision.reply is not None and decision.reply.model == decision.draft.model
    assert decision.boilerplate[1:] == ("Hello,", decision.draft.body.split("\n\n")[1], CLOSING)


def test_the_local_answer_carries_the_probability_it_puts_on_money_categories_summed():
    from triage.embedding import embed_texts
    from triage.models import Category
    from triage.pipeline.router import classifier_load, classify_local
    from triage.selectors import classifier_latest

    text = "The grinder arrived broken, what now?"
    latest = classifier_latest()
    categories = {c.label: c for c in Category.objects.all()}
    predictor = classifier_load(latest.pk)
    embedding = embed_texts([text])[0]

    answer = classify_local(
        text=text, embedding=embedding, predictor=predictor, categories=categories, model=latest.model
    )

    prediction = predictor.predict(texts=[text], embeddings=embedding.reshape(1, -1))[0]
    money = [p for label, p in zip(predictor.labels, prediction.probabilities, strict=True) if categories[label].money]
    assert len(money) >= 2 and len(prediction.probabilities) == len(predictor.labels)
    assert answer.money_probability == pytest.approx(sum(money))
    assert sum(prediction.probabilities) == pytest.approx(1.0)
