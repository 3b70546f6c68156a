"""The offline drafter: a reply composed only of sentences taken from the retrieved passages.

It never invents a sentence, so every sentence it writes can be traced to a cited chunk. Which
sentences: the ones that share the most content words with the ticket, from the best passages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from integrations.llm.base import ClassifyRequest, DraftRequest, ProviderError, ProviderReply

SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    hi hello thanks thank please can't won't don't i'm i've it's get got""".split()
)

GREETING = "Hi {name},"
OPENING = "Thanks for getting in touch about {topic}."
CLOSING = "If this does not answer your question, reply to this message and a member of our team will help."


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage, with Markdown list markers and headings stripped."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:#+|[-*+]|\d+[.)])\s+", "", line).strip()
        if not line:
            continue
        out.extend(s.strip() for s in SENTENCE_SPLIT.split(line) if s.strip())
    return out


def boilerplate_lines() -> tuple[str, ...]:
    """Template text the drafter adds around the passages; the groundedness gate knows it."""
    return (GREETING, OPENING, CLOSING)


class LocalProvider:
    """Offline provider: drafts extractively. Classification is the trained local classifier's job."""

    name = "local"
    # Template text around the passages: ours, so the groundedness gate does not ask a passage for it.
    boilerplate = (GREETING, OPENING, CLOSING)
    max_sentences = 4
    max_passages = 3

    def classify(self, request: ClassifyRequest) -> ProviderReply:
        raise ProviderError("the local provider does not classify; the trained classifier does", retryable=False)

    def draft(self, request: DraftRequest) -> ProviderReply:
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
                GREETING.format(name=request.requester_name or "there"),
                OPENING.format(topic=request.category_name.lower() or "your request"),
                " ".join(sentence for *_, sentence in chosen),
                CLOSING,
            ]
        )
        return ProviderReply(output={"body": body, "citations": cited, "model": "local-extractive"}, model="local-extractive")


def _unique(values: Iterable[int]) -> list[int]:
    seen: dict[int, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
