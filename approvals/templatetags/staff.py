"""Template helpers of the staff app: links that keep the inbox's filters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from triage.pipeline.gates import gate_label

register = template.Library()


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    """The current path with its query string changed: `""` or None drops a key; the page always resets
    unless it is the key being set (a new filter starts on page 1)."""
    request = context["request"]
    params = request.GET.copy()
    params.pop("page", None)
    for key, value in changes.items():
        if value in ("", None):
            params.pop(key, None)
        else:
            params[key] = value
    query = params.urlencode()
    return f"{request.path}?{query}" if query else request.path


@register.filter
def gate_name(value: str) -> str:
    return gate_label(str(value))


@register.filter
def durationlabel(value: timedelta) -> str:
    """A lockout's length in words: "1 hour", "30 minutes", "1 hour 30 minutes"."""
    minutes = max(1, round(value.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)
