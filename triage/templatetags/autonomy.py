"""Template filters of the calibrated-autonomy pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """0.005 -> '0.5%', 0.9 -> '90%', None -> '–': shares as people say them, no more digits than they carry."""
    if value is None:
        return "–"
    return f"{value * 100:.3g}%"
