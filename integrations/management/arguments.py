"""Argument types shared by the management commands (the integrations' and the domain's)."""

from __future__ import annotations

from argparse import ArgumentTypeError
from decimal import Decimal, InvalidOperation


def at_least_one(raw: str) -> int:
    """A whole number of at least 1: a limit or a count of attempts of none (or fewer) is a mistake, not a no-op."""
    try:
        value = int(raw)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def at_least_zero(raw: str) -> int:
    """A whole number of at least 0."""
    try:
        value = int(raw)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 0:
        raise ArgumentTypeError(f"must be at least 0, not {value}")
    return value


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
