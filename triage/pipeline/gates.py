"""Gates: deterministic checks after every consequential step.

Each gate is a pure function that returns a `Verdict` with a reason a support agent can read.
None of them can be talked out of its answer: the ticket text is data to them, never instructions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from integrations.llm.text import content_words, split_sentences
from triage.contracts import OUT_OF_SCOPE, Classification, ContractError, Draft, Retrieval, Verdict
from triage.pipeline.money import money_signals

SCHEMA = "schema"
RETRIEVAL = "retrieval"
CONFIDENCE = "confidence"
MONEY = "money"
GROUNDEDNESS = "groundedness"
PERSONAL_DATA = "personal_data"
ALL_GATES = (SCHEMA, RETRIEVAL, CONFIDENCE, MONEY, GROUNDEDNESS, PERSONAL_DATA)


def _verdict(gate: str, step: str, passed: bool, reason: str, **details: object) -> Verdict:
    return Verdict(gate=gate, step=step, passed=passed, reason=reason, details=details)


def gate_schema(*, classification: Classification | None, error: ContractError | None) -> Verdict:
    """The model's output satisfied the Classification contract (known category, valid fields)."""
    if error is not None or classification is None:
        reason = error.reason if error else "no classification was produced"
        return _verdict(SCHEMA, "classify", False, f"The classification is invalid: {reason}.",
                        fields=error.fields if error else [])
    return _verdict(SCHEMA, "classify", True, "The classification matches the contract.")


def gate_retrieval(*, retrieval: Retrieval, min_score: float) -> Verdict:
    """The best knowledge-base passage is close enough to the ticket to answer it from."""
    top = retrieval.top_score
    if not retrieval.passages:
        return _verdict(RETRIEVAL, "retrieve", False, "No knowledge-base passage was found.", top_score=0.0)
    if top < min_score:
        return _verdict(RETRIEVAL, "retrieve", False,
                        f"The best knowledge-base passage scores {top:.2f}, below the {min_score:.2f} needed.",
                        top_score=round(top, 4), min_score=min_score)
    return _verdict(RETRIEVAL, "retrieve", True, f"The best passage scores {top:.2f} (needs {min_score:.2f}).",
                    top_score=round(top, 4), min_score=min_score)


def gate_confidence(*, classification: Classification, threshold: float) -> Verdict:
    """The classifier is sure enough for this category, and some category fits at all."""
    if classification.out_of_scope or classification.category == OUT_OF_SCOPE:
        return _verdict(CONFIDENCE, "classify", False, "No category fits this ticket (out of scope).",
                        confidence=classification.confidence)
    if classification.confidence < threshold:
        return _verdict(CONFIDENCE, "classify", False,
                        f"Confidence {classification.confidence:.2f} for '{classification.category}' is below "
                        f"the category's threshold {threshold:.2f}.",
                        confidence=classification.confidence, threshold=threshold)
    return _verdict(CONFIDENCE, "classify", True,
                    f"Confidence {classification.confidence:.2f} meets the threshold {threshold:.2f}.",
                    confidence=classification.confidence, threshold=threshold)


def gate_money(*, classification: Classification | None, category_moves_money: bool, ticket_text: str) -> Verdict:
    """Anything that moves money waits for a person, whatever the ticket says.

    Three independent tripwires: the category is flagged money-moving, the text asks for money to
    move (vocabulary or an amount), or a proposed action moves money.
    """
    reasons = []
    if category_moves_money and classification is not None:
        reasons.append(f"category '{classification.category}' moves money")
    signals = money_signals(ticket_text)
    if signals.moves_money:
        reasons.append(signals.reason.rstrip(".").lower() if signals.reason else "the ticket mentions money")
    if classification is not None:
        kinds = sorted({str(a.kind) for a in classification.proposed_actions if a.moves_money})
        if kinds:
            reasons.append(f"proposed actions move money ({', '.join(kinds)})")
    if reasons:
        return _verdict(MONEY, "classify", False, "A person must approve: " + "; ".join(reasons) + ".",
                        terms=list(signals.terms), amounts=list(signals.amounts))
    return _verdict(MONEY, "classify", True, "Nothing in the ticket or the proposed actions moves money.")


def gate_groundedness(*, draft: Draft, retrieval: Retrieval, min_overlap: float,
                      boilerplate: Iterable[str] = ()) -> Verdict:
    """Every sentence of the draft can be traced to a passage the draft cites.

    A sentence is traced when at least `min_overlap` of its content words appear in one cited
    passage. The template's own greeting and closing (`boilerplate`) are ours and exempt.
    """
    passages = {p.chunk_id: p for p in retrieval.passages}
    unknown = [c for c in draft.citations if c not in passages]
    if unknown:
        return _verdict(GROUNDEDNESS, "draft", False,
                        f"The draft cites passages that were not retrieved: {unknown}.", unknown=unknown)
    cited = [content_words(passages[c].text) for c in draft.citations]
    templates = [_template_regex(b) for b in boilerplate]
    untraced = []
    checked = 0
    for sentence in split_sentences(draft.body):
        if any(t.fullmatch(sentence) for t in templates):
            continue
        words = content_words(sentence)
        if not words:
            continue
        checked += 1
        best = max((len(words & c) / len(words) for c in cited), default=0.0)
        if best < min_overlap:
            untraced.append(sentence[:200])
    if checked == 0:
        return _verdict(GROUNDEDNESS, "draft", False, "The draft says nothing drawn from the knowledge base.")
    if untraced:
        return _verdict(GROUNDEDNESS, "draft", False,
                        f"{len(untraced)} of {checked} sentences cannot be traced to a cited passage, "
                        f"e.g. \u201c{untraced[0]}\u201d.", untraced=untraced)
    return _verdict(GROUNDEDNESS, "draft", True, f"All {checked} sentences trace to cited passages.")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile(".{1,120}".join(re.escape(p) for p in parts), re.DOTALL)


CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
STREET_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|"
    r"Way|Place|Pl|Terrace|Close|Crescent)\b\.?"
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def find_card_numbers(text: str) -> list[str]:
    found = []
    for match in CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append(f"…{digits[-4:]}")
    return found


def gate_personal_data(*, draft: Draft, retrieval: Retrieval, requester: str, allowed_emails: Iterable[str] = ()) -> Verdict:
    """The draft exposes no card number and no one else's e-mail or postal address.

    Addresses that appear in the cited knowledge-base passages (the company's own) are allowed.
    """
    problems = []
    cards = find_card_numbers(draft.body)
    if cards:
        problems.append(f"card number(s) ending {', '.join(cards)}")
    allowed = {e.lower() for e in allowed_emails} | ({requester.lower()} if requester else set())
    kb_text = " ".join(p.text for p in retrieval.passages)
    allowed |= {e.lower() for e in EMAIL.findall(kb_text)}
    emails = sorted({e for e in EMAIL.findall(draft.body) if e.lower() not in allowed})
    if emails:
        problems.append(f"e-mail address(es) of someone else: {', '.join(emails)}")
    addresses = [a for a in STREET_ADDRESS.findall(draft.body) if a not in kb_text]
    if addresses:
        problems.append(f"postal address(es) not from the knowledge base: {', '.join(addresses)}")
    if problems:
        return _verdict(PERSONAL_DATA, "draft", False, "The draft contains personal data: " + "; ".join(problems) + ".")
    return _verdict(PERSONAL_DATA, "draft", True, "No card numbers or other people's contact details in the draft.")
