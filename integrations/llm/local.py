"""The offline drafter: a reply composed only of sentences taken from the retrieved passages.

It never invents a sentence, so every sentence it writes can be traced to a cited chunk. Which
sentences: the ones that share the most content words with the ticket, from the best passages.
"""

from __future__ import annotations

from collections.abc import Iterable

from integrations.llm.base import ClassifyRequest, DraftRequest, ProviderError, ProviderReply
from integrations.llm.text import content_words, safe_greeting_name, split_sentences
from integrations.tracing import model_call, model_usage

GREETING = "Hi {name},"
NEUTRAL_GREETING = "Hello,"
OPENING = "Thanks for getting in touch about {topic}."
MODEL = "local-extractive"
CLOSING = "If this does not answer your question, reply to this message and a member of our team will help."


def greeting(name: str) -> str:
    """The reply's first line: the name only when it is safe, otherwise a greeting with no name."""
    safe = safe_greeting_name(name)
    return GREETING.format(name=safe) if safe else NEUTRAL_GREETING


def boilerplate_lines(*, name: str = "", topic: str = "") -> tuple[str, ...]:
    """The exact template lines the drafter adds around the passages; the groundedness gate knows them.

    Filled in, never patterns: a greeting that carries anything but the safe name is not ours and
    is checked like any other sentence.
    """
    return tuple(dict.fromkeys((greeting(name), NEUTRAL_GREETING, OPENING.format(topic=topic_for(topic)), CLOSING)))


def topic_for(category_name: str) -> str:
    return (category_name or "").lower() or "your request"


class LocalProvider:
    """Offline provider: drafts extractively. Classification is the trained local classifier's job."""

    name = "local"
    max_sentences = 4
    max_passages = 3

    def boilerplate_for(self, request: DraftRequest) -> tuple[str, ...]:
        """The exact template lines this drafter adds to the reply for `request` (see boilerplate_lines)."""
        return boilerplate_lines(name=request.requester_name, topic=request.category_name)

    def classify(self, request: ClassifyRequest) -> ProviderReply:
        raise ProviderError("the local provider does not classify; the trained classifier does", retryable=False)

    def draft(self, request: DraftRequest) -> ProviderReply:
        # A model call like any other on the trace (GenAI conventions), free and offline: no tokens to report.
        with model_call(provider="local", operation="text_completion", model=MODEL) as span:
            reply = self._draft(request)
            model_usage(span, response_model=reply.model)
            return reply

    def _draft(self, request: DraftRequest) -> ProviderReply:
        ticket_words = content_words(request.ticket_text)
        scored: list[tuple[float, int, int, str]] = []
        for rank, passage in enumerate(request.passages[: self.max_passages]):
            for position, sentence in enumerate(split_sentences(passage.text)):
                words = content_words(sentence)
                if len(words) < 3 or sentence.endswith(":"):
                    continue
                overlap = len(words & ticket_words) / (len(words) ** 0.5)
                # Prefer the best passage and a passage's opening sentences, which state its point.
                score = overlap + passage.score * 2 - rank * 0.3 - position * 0.05
                scored.append((score, rank, position, sentence))
        if not scored:
            raise ProviderError("no usable sentence in the retrieved passages", retryable=False)
        chosen = sorted(scored, key=lambda s: -s[0])[: self.max_sentences]
        chosen.sort(key=lambda s: (s[1], s[2]))  # keep the passages' own order
        cited = _unique(request.passages[rank].chunk_id for _, rank, _, _ in chosen)
        body = "\n\n".join(
            [
                greeting(request.requester_name),
                OPENING.format(topic=topic_for(request.category_name)),
                # What the shop's own system says, as it said it: the customer's own answer, first.
                *request.facts,
                " ".join(sentence for *_, sentence in chosen),
                CLOSING,
            ]
        )
        return ProviderReply(output={"body": body, "citations": cited, "model": MODEL}, model=MODEL)


def _unique(values: Iterable[int]) -> list[int]:
    seen: dict[int, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
