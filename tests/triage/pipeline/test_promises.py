"""The money-promise detector on reply text: statements about this customer's money, not policy."""

from pathlib import Path

import pytest

from triage.pipeline.promises import money_promises, sentences

KB_DIR = Path(__file__).resolve().parents[3] / "triage" / "demo" / "kb"


@pytest.mark.parametrize(
    ("reply", "phrase"),
    [
        ("We have refunded $500.", "we have refunded"),
        ("Good news: we've issued your refund today.", "we've issued your refund"),
        ("Your refund is approved!", "your refund is approved"),
        ("Your refund of $900 has been approved.", "your refund of $900 has been approved"),
        ("We will credit your account.", "we will credit"),
        ("We'll refund you in full once you reply.", "we'll refund"),
        ("You'll get a full refund.", "you'll get a full refund"),
        ("$500 has been credited to your card.", "$500 has been credited"),
        ("Refund approved.", "refund approved"),
        ("You have been refunded.", "you have been refunded"),
        ("Your account has been credited.", "your account has been credited"),
        ("We are happy to refund your order.", "we are happy to refund"),
        ("Once again, we have refunded your order.", "we have refunded"),
    ],
)
def test_a_statement_that_money_moved_or_will_move_is_found(reply, phrase):
    found = money_promises(reply)

    assert [p.phrase for p in found] == [phrase]
    assert found[0].sentence == reply


def test_an_amount_with_refund_words_is_found_in_any_grammar():
    found = money_promises("You are getting $500 back to your card.")

    assert len(found) == 1 and found[0].amounts == ("$500",)


@pytest.mark.parametrize(
    "reply",
    [
        "W\u0435 h\u0430v\u0435 r\u0435fund\u0435d $500.",  # Cyrillic look-alike letters
        "We have r e f u n d e d you.",  # spaced-out letters
        "We have\nrefunded $500.",  # a line wrap inside the sentence
        "We\u200b have refunded you.",  # zero-width space
    ],
)
def test_evasions_do_not_hide_a_promise(reply):
    assert len(money_promises(reply)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        "We have not refunded you.",
        "How do I get a refund?",
        "You will receive a refund confirmation email.",
        "We refund you to the payment method you used for the order.",
        "Once we have processed a refund, we email you a confirmation with the amount.",
        "We email you when your refund has been processed.",
        "If you have been refunded, the amount shows within 3 days.",
        "Orders over $40 ship free.",
        "Refunds take 3 to 10 business days to show.",
        "Hi Maria,\n\nYou can pause your subscription for up to eight weeks.",
    ],
)
def test_policy_descriptions_conditions_and_negations_are_not_promises(reply):
    assert money_promises(reply) == []


def test_a_sentence_quoted_word_for_word_from_the_knowledge_base_is_policy():
    # given: a policy sentence that reads like a promise out of context
    kb = (
        "## Refund amounts\n\n"
        "A refund for a change-of-mind return is the price you paid, minus $6.50 if you used our label."
    )
    quote = "A refund for a change-of-mind return is the price you paid, minus $6.50 if you used our label."

    # then: flagged on its own, not when the knowledge base says it
    assert len(money_promises(quote)) == 1
    assert money_promises(quote, policy_text=[kb]) == []


def test_part_of_a_knowledge_base_sentence_is_not_policy():
    kb = "If you cancel before roasting, contact us and we will refund that delivery in full."

    found = money_promises("We will refund that delivery in full.", policy_text=[kb])

    assert [p.phrase for p in found] == ["we will refund"]


def test_every_sentence_of_the_demo_knowledge_base_passes_when_quoted_from_it():
    articles = [path.read_text() for path in sorted(KB_DIR.glob("*.md"))]
    quoted = "\n\n".join(s for text in articles for s in sentences(text))

    assert money_promises(quoted, policy_text=articles) == []


@pytest.mark.parametrize(
    "text",
    [
        "your refund has " + "now " * 5000 + "x",  # a run of adverbs between subject and verb
        "you will " + "now " * 5000 + "x",
        ("we have " + "a " * 5000 + "$5 ") * 3 + "your refund " * 3000,
    ],
)
def test_long_hostile_text_is_checked_without_backtracking(text):
    import time

    started = time.perf_counter()
    money_promises(text)
    # a hang guard (backtracking took minutes), not a speed target: bench/adversarial_text.py measures
    assert time.perf_counter() - started < 5.0
