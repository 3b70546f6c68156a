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
