"""Plain-text helpers shared by the drafters, the router and the gates.

They live in the protocol layer, beside `base`, so the triage domain can judge a draft with the
same notion of "sentence" and "content word" the drafter used, without importing a provider.
"""

from __future__ import annotations

import re
import unicodedata

SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "hi",
        "hello",
        "thanks",
        "thank",
        "please",
        "can't",
        "won't",
        "don't",
        "i'm",
        "i've",
        "it's",
        "get",
        "got",
    ]
)


def content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1}


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage, with Markdown list markers and headings stripped."""
    out: list[str] = []
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
