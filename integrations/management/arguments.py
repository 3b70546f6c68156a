"""Argument types shared by the management commands (the integrations' and the domain's)."""

from __future__ import annotations

from argparse import ArgumentTypeError
from collections.abc import Callable
from decimal import Decimal, InvalidOperation


def _whole_number_of_at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ArgumentTypeError(f"not a whole number: {raw!r}") from None
        if value < minimum:
            raise ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


#: A whole number of at least 1: a limit or a count of attempts of none (or fewer) is a mistake, not a no-op.
at_least_one = _whole_number_of_at_least(1)
#: A whole number of at least 0.
at_least_zero = _whole_number_of_at_least(0)


def amount(raw: str) -> Decimal:
    """A sum of money: a finite decimal of at least 0 (`Decimal` alone, as an argparse type, lets a typo end
    in a traceback: it raises `InvalidOperation`, which argparse does not catch)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ArgumentTypeError(f"not an amount: {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ArgumentTypeError(f"must be a finite amount of at least 0, not {raw}")
    return value
