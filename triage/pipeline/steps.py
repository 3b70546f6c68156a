"""The steps of the chain: plain functions, contract in, contract out, collaborators passed in."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from integrations.llm.base import CategoryOption, ClassifyRequest, DraftRequest, PassageText, ReasoningProvider
from triage.contracts import (
    OUT_OF_SCOPE,
    ActionKind,
    Classification,
    Draft,
    Priority,
    ProposedAction,
    Retrieval,
    parse_contract,
)


class CategoryInfo(Protocol):
    label: str
    name: str
    money: bool
    description: str


class PredictionLike(Protocol):
    label: str | None
    confidence: float
    alternatives: tuple[tuple[str, float], ...]
    out_of_scope: bool
    nearest_similarity: float


class Predictor(Protocol):
    def predict(self, *, texts: list[str], embeddings: np.ndarray) -> list[PredictionLike]: ...


URGENT = re.compile(r"\b(urgent|asap|immediately|right now|emergency|fraud|stolen|hacked|locked out)\b", re.I)


def retrieve(*, embedding: np.ndarray, search: Callable[..., Retrieval], limit: int = 4) -> Retrieval:
    return search(embedding=embedding, limit=limit)


def proposed_actions_for(*, category: CategoryInfo | None, priority: Priority) -> list[ProposedAction]:
    """What handling a ticket of this category means. Money categories carry a money action."""
    if category is None:
        return []
    actions = [
        ProposedAction(kind=ActionKind.SET_CATEGORY, note=category.label),
        ProposedAction(kind=ActionKind.SET_PRIORITY, note=str(priority)),
        ProposedAction(kind=ActionKind.SEND_REPLY),
    ]
    if category.money:
        kind = ActionKind.CANCEL_ORDER if "cancel" in category.label.lower() else ActionKind.REFUND
        actions.append(ProposedAction(kind=kind, note=f"requested in a '{category.label}' ticket"))
    else:
        actions.append(ProposedAction(kind=ActionKind.SOLVE))
    return actions


def classify_local(
    *, text: str, embedding: np.ndarray, predictor: Predictor, categories: Mapping[str, CategoryInfo], model: str
) -> Classification:
    """The trained local classifier's answer, as a contract validated against the live categories."""
    prediction = predictor.predict(texts=[text], embeddings=embedding.reshape(1, -1))[0]
    label = OUT_OF_SCOPE if prediction.out_of_scope or prediction.label is None else prediction.label
    priority = Priority.HIGH if URGENT.search(text) else Priority.NORMAL
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
    }
    return parse_contract(Classification, raw, context={"categories": set(categories)})


def classify_with_provider(
    *, provider: ReasoningProvider, text: str, retrieval: Retrieval | None, categories: Mapping[str, CategoryInfo]
) -> tuple[Classification, Any]:
    request = ClassifyRequest(
        ticket_text=text,
        categories=tuple(CategoryOption(c.label, c.description or c.name, c.money) for c in categories.values()),
        passages=_passages(retrieval),
    )
    reply = provider.classify(request)
    classification = parse_contract(Classification, {**reply.output, "model": reply.model},
                                    context={"categories": set(categories)})
    return classification, reply


def draft(
    *, provider: ReasoningProvider, text: str, classification: Classification, category: CategoryInfo | None,
    retrieval: Retrieval, requester_name: str = "",
) -> tuple[Draft, Any]:
    request = DraftRequest(
        ticket_text=text,
        category=classification.category,
        category_name=(category.name or category.label.replace("_", " ")) if category else classification.category,
        passages=_passages(retrieval),
        requester_name=requester_name,
    )
    reply = provider.draft(request)
    return parse_contract(Draft, {**reply.output, "model": reply.model}), reply


def _passages(retrieval: Retrieval | None) -> tuple[PassageText, ...]:
    if retrieval is None:
        return ()
    return tuple(PassageText(p.chunk_id, p.article_title, p.text, p.score) for p in retrieval.passages)
