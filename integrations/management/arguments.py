"""Argument types shared by the integrations' management commands."""

from __future__ import annotations

from argparse import ArgumentTypeError


def at_least_one(raw: str) -> int:
    """A whole number of at least 1: a limit or a count of attempts of none (or fewer) is a mistake, not a no-op."""
    try:
        value = int(raw)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise ArgumentTypeError(f"must be at least 1, not {value}")
    return value
