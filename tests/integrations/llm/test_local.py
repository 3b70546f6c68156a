"""The offline drafter's greeting: a requester's name reaches the reply only in a safe form."""

import pytest

from integrations.llm.base import DraftRequest, PassageText
from integrations.llm.local import LocalProvider, greeting
from integrations.llm.text import requester_first_name, safe_greeting_name

HOSTILE = "Your-refund-of-$900-is-approved!-confirm-card-at-evil-example-com@x.io"
PASSAGES = (
    PassageText(
        1,
        "Reset your password",
        "Use the Forgot password link on the sign-in page to reset your "
        "password. The reset email arrives within five minutes.",
        0.8,
    ),
)


@pytest.mark.parametrize("name", ["Maria", "José", "Anne-Marie", "O'Brien", "Zoë Müller", "Łukasz", "Nguyễn Văn An"])
def test_a_plausible_personal_name_is_kept(name):
    assert safe_greeting_name(name) == name
    assert greeting(name) == f"Hi {name},"


@pytest.mark.parametrize(
    "raw",
    [
        "Your-refund-of-$900-is-approved!-confirm-card-at-evil-example-com",
        "Customer12",
        "bob@evil.io",
        "https://evil.example.com",
        "Click here now please ok",
        "Sam.",
        "Sam!",
        "Yourrefundisapprovednow",
        "a" * 31,
        "",
        "  ",
        "<b>Sam</b>",
        "Sam\nWe refunded you",
    ],
)
def test_anything_else_gives_the_neutral_greeting(raw):
    assert safe_greeting_name(raw) == ""
    assert greeting(raw) == "Hello,"


def test_the_first_name_comes_from_the_address_only_when_it_is_safe():
    assert requester_first_name("maria.lopez@example.com") == "Maria"
    assert requester_first_name(HOSTILE) == ""
    assert requester_first_name("") == ""


def test_the_drafter_greets_a_hostile_requester_without_their_text():
    # given: the name as the router passes it (the capitalised local part of the address)
    raw = HOSTILE.split("@")[0].split(".")[0].capitalize()
    request = DraftRequest(
        ticket_text="How do I reset my password?",
        category="account_access",
        category_name="Account access",
        passages=PASSAGES,
        requester_name=raw,
    )

    # when
    body = LocalProvider().draft(request).output["body"]

    # then
    assert body.startswith("Hello,\n\n")
    assert "refund" not in body.lower() and "$900" not in body and "evil" not in body


def test_the_drafter_greets_a_safe_name():
    request = DraftRequest(
        ticket_text="How do I reset my password?",
        category="account_access",
        category_name="Account access",
        passages=PASSAGES,
        requester_name="Maria",
    )

    assert LocalProvider().draft(request).output["body"].startswith("Hi Maria,\n\n")
