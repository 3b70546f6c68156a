"""The offline drafter: a reply composed only of sentences taken from the retrieved passages.

It never invents a sentence, so every sentence it writes can be traced to a cited chunk. Which
sentences: the ones that share the most content words with the ticket, from the best passages.
"""

from __future__ import annotations

import re
import unicodedata
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
NEUTRAL_GREETING = "Hello,"
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


# A plausible personal name: letters (accented too), joined by single spaces, hyphens or apostrophes.
# Anything else in a requester's name or address (digits, @, $, dots, "!", URLs, whole sentences) is
# customer-controlled text an attacker can use to make our reply say what they like, so it is dropped.
SAFE_NAME = re.compile(r"[^\W\d_]+(?:[ '\u2019-][^\W\d_]+){0,2}")
SAFE_NAME_MAX = 30
SAFE_NAME_PART_MAX = 15


def safe_greeting_name(raw: str) -> str:
    """The requester's name as it may appear in a reply, or "" when it does not look like a name.

    Short (at most three parts, 30 characters), letters only between the separators; a part longer
    than a plausible name ("Yourrefundisapproved") is refused too. Nothing is repaired or trimmed:
    a name that is not safe as given is not used at all, and the reply greets neutrally.
    """
    name = unicodedata.normalize("NFC", raw or "").strip()
    if not name or len(name) > SAFE_NAME_MAX or not SAFE_NAME.fullmatch(name):
        return ""
    if any(len(part) > SAFE_NAME_PART_MAX for part in re.split(r"[ '\u2019-]", name)):
        return ""
    return name


def requester_first_name(requester: str) -> str:
    """A safe first name from the requester's e-mail address ("maria.lopez@x.io" -> "Maria"), else ""."""
    local = (requester or "").split("@")[0].split(".")[0]
    return safe_greeting_name(local[:1].upper() + local[1:].lower())


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
