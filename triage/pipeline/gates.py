"""Gates: deterministic checks after every consequential step.

Each gate is a pure function that returns a `Verdict` with a reason a support agent can read.
None of them can be talked out of its answer: the ticket text is data to them, never instructions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
import re2

from integrations.llm.text import WORD, content_words, split_sentences
from triage.arguments import TOOL_ARGUMENTS, gate_tool_arguments
from triage.contracts import OUT_OF_SCOPE, Classification, ContractError, Draft, Retrieval, Verdict
from triage.pipeline.money import money_signals
from triage.pipeline.promises import money_promises

SCHEMA = "schema"
RETRIEVAL = "retrieval"
CONFIDENCE = "confidence"
MONEY = "money"
GROUNDEDNESS = "groundedness"
PERSONAL_DATA = "personal_data"
MONEY_PROMISE = "money_promise"
CATEGORY_POLICY = "category_policy"
STEP_FAILED = "step_failed"

#: The money gate fails when the classifier's probabilities on money-moving categories add up to this
#: much or more, whatever its top category: one chance in twenty that the ticket asks for money to move
#: is too much to answer it without a person (README "Gates").
MONEY_PROBABILITY_LIMIT = 0.05

__all__ = ["TOOL_ARGUMENTS", "gate_tool_arguments"]  # the argument gate lives beside its extraction


@dataclass(frozen=True)
class Gate:
    """One gate (or reason a run stops) as the product shows and counts it.

    `step`: the step whose output it checks (its verdicts carry that step unless a caller says
    otherwise); empty for `step_failed`, which any step can give. `judges_step`: a failed verdict
    means the step's own output was wrong, so it counts against that step's reliability figure.
    A hold (money, money promise, category policy) says who must act, not that the step erred.
    """

    name: str
    label: str
    step: str
    judges_step: bool


# The one list of gates: the inbox filter, the trace and reports pages, the reliability figures and
# every verdict read it. Ordered as the inbox lists them (money first: it is what staff look for).
REGISTRY: tuple[Gate, ...] = (
    Gate(MONEY, "Money", "classify", judges_step=False),
    Gate(CONFIDENCE, "Confidence", "classify", judges_step=True),
    Gate(SCHEMA, "Schema", "classify", judges_step=True),
    Gate(RETRIEVAL, "Retrieval", "retrieve", judges_step=True),
    Gate(GROUNDEDNESS, "Groundedness", "draft", judges_step=True),
    Gate(PERSONAL_DATA, "Personal data", "draft", judges_step=True),
    # Before any MCP tool call (a look-up, or an action a person approved): the arguments match the tool's
    # input schema and the ticket. A hold: the ticket lacks what the tool needs, the chain did not err.
    Gate(TOOL_ARGUMENTS, "Tool arguments", "lookup", judges_step=False),
    # Not a judge of the draft: on a refund ticket "we will refund you" is the reply the approver
    # sends. It decides who may send the reply; a draft a person had to rewrite is counted from the
    # decision (reply rewritten) instead.
    Gate(MONEY_PROMISE, "Money promise", "draft", judges_step=False),
    Gate(CATEGORY_POLICY, "Category policy", "validate", judges_step=False),
    # Not a gate: the reason a run stopped when a step kept failing (retries and fallback spent).
    Gate(STEP_FAILED, "Step failed", "", judges_step=False),
)
BY_NAME: dict[str, Gate] = {g.name: g for g in REGISTRY}
ALL_GATES = tuple(g.name for g in REGISTRY if g.name != STEP_FAILED)


def gate_label(name: str) -> str:
    """The label people read for a gate name; an unknown name (an old verdict) is made readable."""
    gate = BY_NAME.get(name)
    return gate.label if gate else name.replace("_", " ").capitalize()


def gates_judging(step: str) -> frozenset[str]:
    """The gates whose failed verdict means `step`'s own output was wrong."""
    return frozenset(g.name for g in REGISTRY if g.step == step and g.judges_step)


def _verdict(gate: str, passed: bool, reason: str, *, step: str | None = None, **details: object) -> Verdict:
    return Verdict(
        gate=gate, step=BY_NAME[gate].step if step is None else step, passed=passed, reason=reason, details=details
    )


def gate_schema(*, classification: Classification | None, error: ContractError | None) -> Verdict:
    """The model's output satisfied the Classification contract (known category, valid fields)."""
    if error is not None or classification is None:
        reason = error.reason if error else "no classification was produced"
        return _verdict(
            SCHEMA, False, f"The classification is invalid: {reason}.", fields=error.fields if error else []
        )
    return _verdict(SCHEMA, True, "The classification matches the contract.")


def gate_retrieval(*, retrieval: Retrieval, min_score: float) -> Verdict:
    """The best knowledge-base passage is close enough to the ticket to answer it from."""
    top = retrieval.top_score
    if not retrieval.passages:
        return _verdict(RETRIEVAL, False, "No knowledge-base passage was found.", top_score=0.0)
    if top < min_score:
        return _verdict(
            RETRIEVAL,
            False,
            f"The best knowledge-base passage scores {top:.2f}, below the {min_score:.2f} needed.",
            top_score=round(top, 4),
            min_score=min_score,
        )
    return _verdict(
        RETRIEVAL,
        True,
        f"The best passage scores {top:.2f} (needs {min_score:.2f}).",
        top_score=round(top, 4),
        min_score=min_score,
    )


def gate_confidence(*, classification: Classification, threshold: float, refusal: str = "") -> Verdict:
    """The classifier is sure enough for this category, and some category fits at all.

    `refusal`: why no confidence is enough for this category (the risk chooser could not guarantee the
    target error on its labelled tickets); the ticket then always goes to a person."""
    if classification.out_of_scope or classification.category == OUT_OF_SCOPE:
        return _verdict(
            CONFIDENCE, False, "No category fits this ticket (out of scope).", confidence=classification.confidence
        )
    if refusal or math.isinf(threshold):
        return _verdict(
            CONFIDENCE,
            False,
            f"'{classification.category}' is not automated: {refusal or 'no threshold guarantees the target'}.",
            confidence=classification.confidence,
        )
    if classification.confidence < threshold:
        return _verdict(
            CONFIDENCE,
            False,
            f"Confidence {classification.confidence:.2f} for '{classification.category}' is below "
            f"the category's threshold {threshold:.2f}.",
            confidence=classification.confidence,
            threshold=threshold,
        )
    return _verdict(
        CONFIDENCE,
        True,
        f"Confidence {classification.confidence:.2f} meets the threshold {threshold:.2f}.",
        confidence=classification.confidence,
        threshold=threshold,
    )


def gate_money(
    *,
    classification: Classification | None,
    category_moves_money: bool,
    ticket_text: str,
    money_probability: float = 0.0,
) -> Verdict:
    """Anything that moves money waits for a person, whatever the ticket says.

    Four independent tripwires: the category is flagged money-moving, the classifier puts at least
    `MONEY_PROBABILITY_LIMIT` of its probability on money-moving categories (summed: a refund request
    worded like a question may be top-ranked elsewhere), the text asks for money to move (vocabulary or
    an amount), or a proposed action moves money.
    """
    reasons = []
    if category_moves_money and classification is not None:
        reasons.append(f"category '{classification.category}' moves money")
    if money_probability >= MONEY_PROBABILITY_LIMIT:
        reasons.append(f"the classifier puts {money_probability:.0%} probability on money-moving categories")
    signals = money_signals(ticket_text)
    if signals.moves_money:
        reasons.append(signals.reason.rstrip(".").lower() if signals.reason else "the ticket mentions money")
    if classification is not None:
        kinds = sorted({str(a.kind) for a in classification.proposed_actions if a.moves_money})
        if kinds:
            reasons.append(f"proposed actions move money ({', '.join(kinds)})")
    if reasons:
        return _verdict(
            MONEY,
            False,
            "A person must approve: " + "; ".join(reasons) + ".",
            terms=list(signals.terms),
            amounts=list(signals.amounts),
        )
    return _verdict(MONEY, True, "Nothing in the ticket or the proposed actions moves money.")


def gate_category_policy(*, category: str, auto_reply: bool) -> Verdict:
    """The category may be answered without a person (admin's per-category auto-reply switch)."""
    if not auto_reply:
        return _verdict(CATEGORY_POLICY, False, f"Category '{category}' is set to always wait for a person.")
    return _verdict(CATEGORY_POLICY, True, f"Category '{category}' may be answered automatically.")


def gate_groundedness(
    *,
    draft: Draft,
    retrieval: Retrieval,
    min_overlap: float,
    boilerplate: Iterable[str] = (),
    facts: Iterable[str] = (),
) -> Verdict:
    """Every sentence of the draft can be traced to a passage the draft cites, or to a look-up's answer.

    A sentence is traced when at least `min_overlap` of its content words appear in one cited
    passage or in one look-up answer (`facts`: what the shop's own system said, see steps/lookup.py),
    and every figure in it (a number, a date, an order or tracking number) appears in the cited passages
    or the look-up answers: a reply may not change the delivery date the shop gave. The template's own
    lines (`boilerplate`, filled in: the greeting with the safe name only) are ours and exempt when they
    match exactly; a greeting that says anything else is checked like every other sentence.
    """
    passages = {p.chunk_id: p for p in retrieval.passages}
    unknown = [c for c in draft.citations if c not in passages]
    if unknown:
        return _verdict(
            GROUNDEDNESS, False, f"The draft cites passages that were not retrieved: {unknown}.", unknown=unknown
        )
    facts = [f for f in facts if f]
    evidence = [passages[c].text for c in draft.citations] + facts
    cited = [content_words(text) for text in evidence]
    figures = {w for text in evidence for w in WORD.findall(text.lower()) if any(ch.isdigit() for ch in w)}
    ours = {line.strip() for line in boilerplate}
    untraced = []
    checked = 0
    for sentence in split_sentences(draft.body):
        if sentence in ours:
            continue
        words = content_words(sentence)
        if not words:
            continue
        checked += 1
        best = max((len(words & c) / len(words) for c in cited), default=0.0)
        unknown_figures = {w for w in WORD.findall(sentence.lower()) if any(ch.isdigit() for ch in w)} - figures
        if best < min_overlap or unknown_figures:
            untraced.append(sentence[:200])
    if checked == 0:
        return _verdict(GROUNDEDNESS, False, "The draft says nothing drawn from the knowledge base or a look-up.")
    if untraced:
        return _verdict(
            GROUNDEDNESS,
            False,
            f"{len(untraced)} of {checked} sentences cannot be traced to a cited passage or a look-up, "
            f"e.g. \u201c{untraced[0]}\u201d.",
            untraced=untraced,
        )
    where = "cited passages and the look-up" if facts else "cited passages"
    return _verdict(GROUNDEDNESS, True, f"All {checked} sentences trace to {where}.")


def gate_reply_money(*, reply: str, policy_text: Iterable[str] = (), step: str = "draft") -> Verdict:
    """The reply does not tell the customer that money has moved or will move.

    Such a reply may only go out from a person allowed to move money, on a decision that moves it,
    so the chain never sends one itself. Its own gate name (not `money`): the ticket may not move
    money at all, and an agent without that permission may still take the promise out and send it.
    Sentences quoted word for word from the knowledge base
    (`policy_text`) are the company's published policy, not a promise, and pass. Always on: there
    is no switch for it, because the reply is what the customer acts on.
    """
    promises = money_promises(reply, policy_text=policy_text)
    if promises:
        quoted = "; ".join(f"\u201c{p.sentence[:160]}\u201d" for p in promises[:3])
        amounts = sorted({a for p in promises for a in p.amounts})
        return _verdict(
            MONEY_PROMISE,
            False,
            f"The reply tells the customer money has moved or will move: {quoted}.",
            sentences=[p.sentence for p in promises],
            phrases=[p.phrase for p in promises],
            amounts=amounts,
            step=step,
        )
    return _verdict(MONEY_PROMISE, True, "The reply promises no refund, credit or payment.", step=step)


CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# RE2, not re: the backtracking engine takes seconds on 10 KB of "a.a.a." without an "@" (the draft
# can quote the customer). The classes are ASCII, so both engines find the same addresses.
EMAIL = re2.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def find_emails(text: str) -> list[str]:
    # A lone surrogate cannot be handed to RE2, and is no part of an address.
    return EMAIL.findall(_SURROGATE.sub("\ufffd", text))


STREET_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|"
    r"Way|Place|Pl|Terrace|Close|Crescent)\b\.?"
)


# Numbers written without a country code are read as North American ones (the demo shop's); a number
# with "+" and a country code is found whatever the region.
PHONE_REGION = "US"


def find_phone_numbers(text: str) -> list[str]:
    """Valid phone numbers in `text`, as E.164, by Google's libphonenumber rules (not a digit-run guess)."""
    return [
        phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
        for m in phonenumbers.PhoneNumberMatcher(text, PHONE_REGION, leniency=phonenumbers.Leniency.VALID)
    ]


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


def gate_personal_data(
    *, draft: Draft, retrieval: Retrieval, requester: str, allowed_emails: Iterable[str] = ()
) -> Verdict:
    """The draft exposes no card number and no one else's e-mail, phone number or postal address.

    Contact details that appear in the cited knowledge-base passages (the company's own) are allowed.
    """
    return gate_reply_personal_data(
        reply=draft.body,
        policy_text=[p.text for p in retrieval.passages],
        requester=requester,
        allowed_emails=allowed_emails,
    )


def gate_reply_personal_data(
    *, reply: str, policy_text: Iterable[str], requester: str, allowed_emails: Iterable[str] = (), step: str = "draft"
) -> Verdict:
    """Any reply about to be sent (drafted or written by a person) exposes no card number and no one
    else's e-mail, phone number or postal address; those in `policy_text` (the knowledge base) are the company's."""
    problems = []
    cards = find_card_numbers(reply)
    if cards:
        problems.append(f"card number(s) ending {', '.join(cards)}")
    kb_text = " ".join(policy_text)
    # The knowledge base is searched only for what the reply has: most replies have no address or number,
    # and the phone-number matcher is most of this gate's time (the same verdict either way).
    emails = find_emails(reply)
    if emails:
        allowed = {e.lower() for e in allowed_emails} | ({requester.lower()} if requester else set())
        allowed |= {e.lower() for e in find_emails(kb_text)}
        emails = sorted({e for e in emails if e.lower() not in allowed})
    if emails:
        problems.append(f"e-mail address(es) of someone else: {', '.join(emails)}")
    phones = find_phone_numbers(reply)
    if phones:
        phones = sorted(set(phones) - set(find_phone_numbers(kb_text)))
    if phones:
        problems.append(f"phone number(s) not from the knowledge base: {', '.join(phones)}")
    addresses = [a for a in STREET_ADDRESS.findall(reply) if a not in kb_text]
    if addresses:
        problems.append(f"postal address(es) not from the knowledge base: {', '.join(addresses)}")
    what = "draft" if step == "draft" else "reply"
    if problems:
        return _verdict(
            PERSONAL_DATA, False, f"The {what} contains personal data: " + "; ".join(problems) + ".", step=step
        )
    return _verdict(
        PERSONAL_DATA,
        True,
        f"No card numbers, phone numbers or other people's contact details in the {what}.",
        step=step,
    )
