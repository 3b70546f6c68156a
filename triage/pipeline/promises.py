"""Deterministic money-promise detector for replies we are about to send.

`money.py` asks "does the customer want money to move?"; this asks the opposite question of our own
text: "does this reply tell the customer that money has moved, or promise that it will?" — "we have
refunded $500", "your refund is approved", "we will credit your account", "you'll get $20 back".
A reply that says so must come from a person allowed to move money, on a decision that moves it.

It targets statements about *this* customer's money, not descriptions of policy, because the
drafter answers from the knowledge base and the knowledge base is full of policy ("We refund you to
the payment method you used", "Once we have processed a refund, we email you"). So:

* only statements count whose subject is us or the customer's own money: "we have refunded",
  "we will credit", "your refund has been approved", "you will receive $20", "$50 has been credited";
* a statement introduced by a condition word ("once we have processed a refund", "when your refund
  is processed", "if you have been refunded") is a condition, not a statement, and does not count;
* present-simple policy ("we refund the extra amount") does not count: it describes what we do;
* a negation ("we have not refunded") does not count;
* a sentence taken word for word from the knowledge base (passed in as `policy_text`) is the
  company's own published policy and does not count, whatever it says.

Text is folded with `money.normalize_text` first (look-alike letters, full-width digits, spaced-out
letters, zero-width characters), so the same evasions that do not fool the ticket gate do not fool
this one. No Django imports; no model is ever asked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from integrations.llm.text import split_sentences
from triage.pipeline.money import money_amounts, normalize_text

__all__ = ["MoneyPromise", "money_promises", "sentences"]


@dataclass(frozen=True)
class MoneyPromise:
    """One sentence of a reply that says money moved or will move for this customer."""

    sentence: str
    #: The words that made it one, as normalised, e.g. "we have refunded".
    phrase: str
    #: Currency amounts named in the sentence, as written after normalisation.
    amounts: tuple[str, ...] = ()


# Verbs that move money by themselves, and verbs that move money when their object is money.
_MONEY_VERBS = r"(?:re-?fund|credit|reimburs|compensat|waiv|revers|refund)"
_DONE_MONEY = r"(?:re-?funded|credited|reimbursed|compensated|waived|reversed|charged back)"
_DONE_GENERIC = (
    r"(?:sent|issued|processed|approved|authori[sz]ed|released|initiated|arranged|transferred|wired|paid|"
    r"deposited|returned|applied|put through|paid out|given|added|granted|completed|confirmed)"
)
_DO_MONEY = r"(?:re-?fund|credit|reimburse|compensate|waive|reverse)"
_DO_GENERIC = (
    r"(?:send|issue|process|approve|authori[sz]e|release|initiate|arrange|transfer|wire|pay|deposit|return|"
    r"apply|put through|pay out|give|add|grant|complete|confirm)"
)
_MONEY_NOUN = (
    r"(?:re-?funds?|credits?|reimbursements?|compensation|money|funds|cash|payments?|payouts?|amount|sum|"
    r"difference|balance|deposit|chargebacks?|goodwill|voucher|(?:us|a|c)?[$€£¥]\s?\d|\d[\d.,]*\s?(?:usd|eur|gbp|dollars|euros|pounds))"
)
_AMOUNT_HINT = r"(?:[$€£¥₹]\s?\d|\d[\d.,]*\s?(?:[$€£¥₹]|usd|eur|gbp|chf|cad|aud|dollars?|euros?|pounds?|bucks|quid)\b)"
_WE = r"(?:we|i|our (?:team|support team|billing team|finance team)|the (?:team|support team|billing team)|tidewater)"
_YOURS = (
    r"(?:your|the|this|that|a|a full|the full|your full|a partial|your partial|an?)"
    r"(?: \w+)?? (?:re-?fund|credit|reimbursement|compensation|payment|payout|money|chargeback|transfer|funds|amount)"
    r"(?: request)?(?: of \S+)?"
)
# Bounded, so a run of adverbs cannot make the patterns around it backtrack (the text is the customer's too).
_ADV = r"(?:(?:now|just|already|also|successfully|fully|today|immediately|automatically|then|gladly|happily|manually) ){0,3}"

_PROMISES = re.compile(
    "|".join(
        (
            # Done by us: "we have refunded you", "we've issued your refund", "I processed the refund".
            rf"\b{_WE}(?: have| had|'ve|'d)? {_ADV}(?:{_DONE_MONEY}\b|{_DONE_GENERIC}\b[^.!?;]{{0,40}}?\b{_MONEY_NOUN})",
            # To be done by us: "we will refund", "we'll credit your account", "we are sending $20".
            rf"\b{_WE}(?:'ll|'re going to|'m going to|'re happy to|'ve decided to|'ve agreed to|'d be happy to| will| shall|"
            rf" are going to| am going to| are about to| can now| are now| are happy to| are glad to| would be happy to|"
            rf" have decided to| have agreed to) {_ADV}"
            rf"(?:{_DO_MONEY}\b|{_DO_GENERIC}\b[^.!?;]{{0,40}}?\b{_MONEY_NOUN})",
            rf"\b{_WE}(?: are| am|'re|'m) {_ADV}(?:re-?funding|crediting|reimbursing|compensating|waiving|reversing|"
            rf"(?:sending|issuing|processing|transferring|wiring|paying|depositing|returning|applying|releasing|giving|adding)"
            rf"\b[^.!?;]{{0,40}}?\b{_MONEY_NOUN})",
            # The customer's money, in any tense but the policy one: "your refund has been approved".
            rf"\b{_YOURS}(?:'s|'ll| has| have| had| is| are| was| were| will| shall| should| is going to| is being| are being)"
            rf" {_ADV}(?:been |be |being )?{_ADV}(?:approved|processed|issued|sent|completed|confirmed|granted|authori[sz]ed|"
            rf"initiated|released|paid|paid out|credited|re-?funded|transferred|deposited|returned|applied|on (?:its|the) way|"
            rf"arrive|reach|land|appear|go through|gone through|in your account|back in your account)\b",
            # The customer as the one paid: "you have been refunded", "you will receive $20", "your account was credited".
            rf"\b(?:you|your (?:account|card|balance|wallet|bank account|payment method|gift card))"
            rf"(?:'ve|'ll|'re going to| have| has| had| will| shall| are going to| is going to| are about to| should) {_ADV}"
            rf"(?:been |be |now )?{_ADV}(?:re-?funded|credited|reimbursed|compensated|paid(?: back)?|topped up)\b",
            rf"\byou(?:'ll|'re going to| will| shall| are going to| should| are about to) {_ADV}(?:receive|get|see|be getting|be receiving)"
            rf" (?:(?:a|an|the|your|a full|your full|the full|back|back your|some|all|all of your|\w+) ){{0,2}}?"
            rf"(?:{_AMOUNT_HINT}|re-?funds?\b(?! confirmation)|credits?\b|reimbursements?\b|compensation\b|money back\b|your money\b|payments?\b(?! confirmation))",
            # Headline statements: "Refund approved!", "Credit issued".
            r"\b(?:re-?funds?|credits?|reimbursements?|compensation|payouts?|chargebacks?) (?:approved|confirmed|issued|processed|sent|granted|completed|authori[sz]ed)\b",
            # An amount that has moved or will: "$500 has been credited", "$20 will be refunded".
            rf"{_AMOUNT_HINT}[^.!?;]{{0,30}}?(?:'s|'ll| has| have| had| is| are| was| were| will| shall) {_ADV}(?:been |be |being )?{_ADV}"
            r"(?:re-?funded|credited|reimbursed|returned|sent|transferred|deposited|paid|added|applied|released|issued|put back)\b",
        )
    )
)

# A promise introduced by one of these is the condition of something else, not a statement.
_CONDITION_BEFORE = re.compile(r"(?:\b(?:if|when|whenever|once|after|until|unless|before|as soon as|whether)\s+)$")
# An amount with money-to-the-customer vocabulary in the same sentence, in any grammar.
_AMOUNT_TO_CUSTOMER = re.compile(
    r"\b(?:re-?fund\w*|credit(?:ed|ing)? (?:to )?(?:you|your)|reimburs\w*|compensat\w*|money back|pay(?:ing)? you|"
    r"back (?:to|into|onto) your|to your (?:account|card|balance|wallet|bank))"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A line break inside a paragraph is a wrap, not a boundary: "we have\nrefunded $500" is one sentence.
_WRAPPED_LINE = re.compile(r"(?<=\S)[ \t]*\n(?![ \t]*(?:\n|[-*+#>][ \t]|\d+[.)][ \t]))[ \t]*")


def sentences(text: str) -> list[str]:
    """A text's sentences, split the same way for a reply and for the knowledge base it quotes."""
    out: list[str] = []
    for sentence in split_sentences(_WRAPPED_LINE.sub(" ", text or "")):
        out.extend(part for part in _SENTENCE_END.split(sentence) if part)
    return out


def money_promises(text: str, *, policy_text: Iterable[str] = ()) -> list[MoneyPromise]:
    """The sentences of a reply that tell this customer money has moved or will move (module docstring)."""
    policy = frozenset().union(*map(_policy_sentences, policy_text))
    found: list[MoneyPromise] = []
    for sentence in sentences(text):
        normalized = normalize_text(sentence)
        folded = normalized.replace("\u2019", "'")
        if not folded or folded in policy:
            continue
        phrase = _promise_phrase(folded)
        amounts = money_amounts(normalized)
        if not phrase and amounts and _AMOUNT_TO_CUSTOMER.search(folded):
            phrase = f"an amount ({', '.join(amounts)}) with a refund or credit"
        if phrase:
            found.append(MoneyPromise(sentence=sentence[:300], phrase=phrase, amounts=amounts))
    return found


@functools.lru_cache(maxsize=2048)
def _policy_sentences(passage: str) -> frozenset[str]:
    """A knowledge-base passage's sentences, folded. Kept per passage: the same articles' passages are retrieved
    for ticket after ticket, and folding each of their sentences again for every draft was a good part of
    what this gate cost (a bounded cache: 2,048 passages, each a few kilobytes at most)."""
    return frozenset(normalize_text(s) for s in sentences(passage))


def _promise_phrase(folded: str) -> str:
    for match in _PROMISES.finditer(folded):
        if _CONDITION_BEFORE.search(folded[: match.start()]):
            continue
        return match.group(0).strip()
    return ""
