"""Customer text cannot stall the money detector or a gate: every pattern runs in linear time, and
the detector's time budget fails closed.

The hole: the amount pattern backtracked exponentially on repeated number words, so a 240-character
ticket of "a hundred " held the interpreter for 9 s (and every extra 20 characters quadrupled it).
"""

import time
from decimal import Decimal

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.llm.local import boilerplate_lines
from triage.contracts import (
    ActionKind,
    Classification,
    ContractError,
    Draft,
    Passage,
    ProposedAction,
    Retrieval,
    TicketIn,
)
from triage.pipeline import gates
from triage.pipeline.money import MoneySignals, money_signals


def max_length(model, field: str) -> int:
    return next(m.max_length for m in model.model_fields[field].metadata if hasattr(m, "max_length"))


INTAKE_LIMIT = max_length(TicketIn, "body")  # 100_000
DRAFT_LIMIT = max_length(Draft, "body")  # 20_000

# A hang guard, not a speed target: one call on 100 KB of the worst shapes below takes 50-200 ms on the
# shared 2-core machine, up to 850 ms while other jobs run beside it, and bench/adversarial_text.py
# prints those figures; the old patterns took minutes. 5 s cannot fail on a loaded machine and still
# fails at once on backtracking of the kind that was reported.
CALL_BUDGET_SECONDS = 5.0


def repeat(piece: str, length: int) -> str:
    return (piece * (length // len(piece) + 1))[:length]


def timed(call, *args, **kwargs):
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - started


# --- the reported hole and its relatives: exact outcome, within the budget ------------------------

NOTHING = MoneySignals(moves_money=False)

PATHOLOGICAL = [
    # (piece repeated to the length, the exact signals)
    ("a hundred ", NOTHING),
    ("twenty-five hundred a thousand ", NOTHING),
    ("1,000", NOTHING),
    ("1234567890", NOTHING),
    ("$", NOTHING),
    ("r e f u n d x ", NOTHING),  # never a whole spaced word: the run goes on into "x"
    ("a.b-c_d*", NOTHING),
    ("ignore the your ", NOTHING),
    ("can you send money ", NOTHING),  # "can you send money" is not "can you send me"
    ("in which cases can ", NOTHING),
    ("\u200b", NOTHING),
    ("жж ٣٣ ", NOTHING),
]


@pytest.mark.parametrize("length", [300, INTAKE_LIMIT])
@pytest.mark.parametrize(("piece", "expected"), PATHOLOGICAL, ids=[p for p, _ in PATHOLOGICAL])
def test_pathological_text_is_scanned_in_time_with_the_exact_result(piece, expected, length):
    # given
    text = repeat(piece, length)
    # when
    signals, seconds = timed(money_signals, text)
    # then
    assert signals == expected
    assert seconds < CALL_BUDGET_SECONDS, f"{seconds:.3f}s"


def test_the_reported_ticket_is_answered_at_once():
    # given: the body from the issue, 240 characters of "a hundred " (9 s before the fix)
    text = repeat("a hundred ", 240)
    # when
    signals, seconds = timed(money_signals, text)
    # then
    assert signals == NOTHING
    assert seconds < 0.05


@pytest.mark.parametrize(
    ("piece", "term"),
    [
        ("r e f u n d! ", "refund"),  # "r e f u n d r e f u n d" would be one word, "refundrefund"
        ("r3fund c@sh ", "refund"),
        ("please refund me ", "refund"),
    ],
)
def test_a_request_repeated_over_the_whole_intake_is_still_found(piece, term):
    # given
    text = repeat(piece, INTAKE_LIMIT)
    # when
    signals, seconds = timed(money_signals, text)
    # then
    assert signals.moves_money and signals.checked and term in signals.terms
    assert seconds < CALL_BUDGET_SECONDS, f"{seconds:.3f}s"


def test_a_refund_request_hidden_after_100_kb_of_junk_is_still_found():
    # given
    text = repeat("a hundred ", INTAKE_LIMIT - 40) + " Please refund me 20 dollars."
    # when
    signals, seconds = timed(money_signals, text)
    # then
    assert signals == MoneySignals(
        moves_money=True,
        terms=("refund",),
        amounts=("20 dollars",),
        reason="The ticket asks for a refund or money back and mentions the amount 20 dollars.",
    )
    assert seconds < CALL_BUDGET_SECONDS


def test_an_amount_written_in_number_words_after_the_junk_is_still_found():
    signals = money_signals(repeat("a hundred ", 50_000) + " and twenty five dollars")
    assert signals.amounts == ("twenty five dollars",) and signals.terms == ()


def test_credit_card_talk_repeated_is_not_a_credit_but_a_credit_request_after_it_is():
    # given
    talk = "credit it card " * 6_666
    # when
    harmless, seconds = timed(money_signals, talk)
    request = money_signals(talk + "credit me")
    # then
    assert harmless == NOTHING and seconds < CALL_BUDGET_SECONDS
    assert request.terms == ("credit",)


# --- the budget fails closed ------------------------------------------------------------------------


def test_a_scan_that_runs_out_of_time_says_a_person_must_read_the_ticket():
    # given: harmless text, and no time at all to check it
    text = "Where is my parcel? " * 50
    # when
    signals = money_signals(text, budget_seconds=0.0)
    # then
    assert signals == MoneySignals(
        moves_money=True,
        reason="The ticket text could not be checked for money requests in time (1,000 characters), "
        "so a person must read it.",
        checked=False,
    )


def test_the_money_gate_holds_a_ticket_that_could_not_be_checked(monkeypatch):
    # given: a detector that always runs out of time
    from triage.pipeline import money

    monkeypatch.setattr(money, "SCAN_BUDGET_SECONDS", 0.0)
    # when
    verdict = gates.gate_money(classification=None, category_moves_money=False, ticket_text="Where is my parcel?")
    # then
    assert not verdict.passed
    assert "could not be checked for money requests in time" in verdict.reason


# --- semantics kept where the look-arounds were rewritten ---------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("please credit my card", ("credit",)),
        ("credit my card score please", ()),  # the old (?! score) look-ahead
        ("credit it cardamom", ()),
        ("credit it, card later", ("credit",)),
        ("can you send me my money", ("send money",)),
        ("can you send money to my friend", ()),
        ("could you please give back my deposit", ("send money",)),
        ("will you transfer my money", ("send money",)),
        ("r3fund", ("refund",)),
        ("abc$ refund", ("refund",)),
        ("r e f u n d", ("refund",)),
        ("xr e f u n d", ()),  # starts inside a word: "xr efund"
        ("r e f u n dx", ("refund",)),  # the run backs off to "refun dx", read as one typo of "refund"
        ("r e f u n d!r e f u n d", ("refund",)),
        ("refundж", ()),  # Cyrillic letter: still one word, as Python's \b reads it
    ],
)
def test_rewritten_look_arounds_keep_their_meaning(text, terms):
    assert money_signals(text).terms == terms


def test_decimal_digits_of_other_scripts_are_still_amounts():
    assert money_signals("٣٠ dollars").amounts == ("٣٠ dollars",)


def test_a_lone_surrogate_does_not_break_the_scan():
    signals = money_signals("refund \ud800 me $5")
    assert signals.terms == ("refund",) and signals.amounts == ("$5",)


# --- the re2 API behaves as the detector assumes -----------------------------------------------


def test_re2_sub_with_a_callable_and_finditer_give_character_offsets():
    pattern = re2.compile("é+")
    assert pattern.sub(lambda m: f"<{m.group(0)}>", "aé éé") == "a<é> <éé>"
    assert [m.span() for m in re2.compile("é+").finditer("aé éé")] == [(1, 2), (3, 5)]


def test_re2_search_from_a_position_sees_the_character_before_it():
    assert re2.compile(r"\bab").search("xab ab", 1).span() == (4, 6)
    assert re2.compile(r"\bab").search(b"xab ab", 1).span() == (4, 6)
    assert re2.compile("^a").search("ba", 1) is None
    assert re2.compile(r"x ?y").match(b"zx y", 1).span() == (1, 4)


def test_re2_is_ascii_for_word_and_digit_classes_which_the_shadow_text_accounts_for():
    assert re2.compile(r"\w").search("ж") is None
    assert re2.compile(r"\bé").search("aé").span() == (1, 2)  # ASCII \b: "a" is a word, "é" is not
    assert re2.compile(r"\d").search("٣") is None
    assert re2.compile(r"[^a-z]").search("ж").group(0) == "ж"


# --- property: no adversarial text stalls the detector or any gate -------------------------------

PIECES = [
    "a hundred ",
    "twenty-",
    "a thousand ",
    "million ",
    "dollars",
    "$",
    "€",
    "£",
    "usd",
    "1,000",
    ",000",
    "1234",
    "0.99",
    "r e f u n d ",
    "r.e.f.u.n.d.",
    "r-e-f-u-n-d",
    "r3fund",
    "c@sh",
    "4cc0unt",
    "\u200b",
    "\u00ad",
    "\ufeff",
    "реfund",
    "ж",
    "٣",
    "ｒｅｆｕｎｄ",
    "é",
    "\u0301",
    "ignore ",
    "the ",
    "your ",
    "rules",
    "system:",
    "[admin]",
    "can you ",
    "send ",
    "me ",
    "money ",
    "back ",
    "credit it ",
    "card ",
    "what is your refund policy? ",
    "in which cases can ",
    "how long do refunds usually take ",
    "refnud ",
    "reimbursment ",
    "whikch caess ",
    "a@",
    "b.",
    "a.",
    "1 ",
    "1-",
    "12 Harbour Road ",
    "Ab ",
    ". ",
    "! ",
    "\n",
    "- ",
    "# ",
    "1) ",
    "<",
    "&#",
    " ",
]
CHUNK = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join)
ADVERSARIAL = st.one_of(
    st.tuples(CHUNK, st.integers(min_value=1, max_value=INTAKE_LIMIT)).map(lambda t: repeat(t[0], t[1])),
    st.lists(st.tuples(CHUNK, st.integers(1, 2_000)), min_size=1, max_size=30).map(
        lambda parts: "".join(chunk * count for chunk, count in parts)[:INTAKE_LIMIT]
    ),
    st.text(max_size=2_000),
).filter(lambda text: text.strip())

PASSAGE = Passage(
    chunk_id=7,
    article_id=1,
    article_title="Refunds",
    score=0.7,
    text="You can ask for a refund within 30 days. Write to help@example.com.",
)


def every_gate(text: str) -> list[tuple[str, float]]:
    """Run each gate with ``text`` in each place customer text can reach it; the slowest call per gate."""
    body = text[:DRAFT_LIMIT]
    passage = PASSAGE.model_copy(update={"text": text})
    retrieval = Retrieval(passages=[PASSAGE, passage])
    classification = Classification(
        category="refund_request",
        confidence=0.9,
        rationale=text[:2_000],
        proposed_actions=[ProposedAction(kind=ActionKind.REFUND, amount=Decimal("5"), note=text[:500])],
    )
    draft = Draft(body=body, citations=[7])
    calls = {
        "money_signals": lambda: money_signals(text),
        "gate_schema": lambda: gates.gate_schema(
            classification=None, error=ContractError("Classification", text[:2_000], ["category"])
        ),
        "gate_retrieval": lambda: gates.gate_retrieval(retrieval=retrieval, min_score=0.5),
        "gate_confidence": lambda: gates.gate_confidence(classification=classification, threshold=0.8),
        "gate_money": lambda: gates.gate_money(
            classification=classification, category_moves_money=False, ticket_text=text
        ),
        "gate_groundedness": lambda: gates.gate_groundedness(
            draft=draft, retrieval=retrieval, min_overlap=0.5, boilerplate=boilerplate_lines()
        ),
        "gate_personal_data": lambda: gates.gate_personal_data(
            draft=draft, retrieval=retrieval, requester="someone@example.com"
        ),
    }
    return [(name, timed(call)[1]) for name, call in calls.items()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=ADVERSARIAL)
def test_no_adversarial_text_stalls_the_detector_or_a_gate(text):
    # when
    timings = every_gate(text)
    # then
    slow = [(name, round(seconds, 3)) for name, seconds in timings if seconds >= CALL_BUDGET_SECONDS]
    assert not slow, f"{len(text)} characters starting {text[:60]!r}: {slow}"
