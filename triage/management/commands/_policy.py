"""Command options that stand in for the gate policy's numbers are held to what admin allows for them."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.management.base import CommandError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Field

from triage.models import GatePolicy


def policy_option_check(option: str, field: str, values: Iterable[float | None]) -> None:
    """Refuse a value of `--option` outside the bounds of `GatePolicy.<field>` (its validators: the same
    numbers admin refuses, kept in one place)."""
    model_field = GatePolicy._meta.get_field(field)
    assert isinstance(model_field, Field), field
    validators = model_field.validators
    low = next(v.limit_value for v in validators if isinstance(v, MinValueValidator))
    high = next(v.limit_value for v in validators if isinstance(v, MaxValueValidator))
    for value in values:
        if value is not None and not low <= value <= high:
            raise CommandError(f"--{option} must lie between {low} and {high}, not {value}")
