"""Forms of the triage admin pages that are not a model's own."""

from __future__ import annotations

from typing import Any

from django import forms

from triage.risk import DEFAULT_CONFIDENCE, DEFAULT_MIN_PER_CATEGORY, DEFAULT_TARGET


class WhatIfForm(forms.Form):
    """A proposed target, confidence and per-category thresholds, to preview before saving anything.

    Percentages are typed as people say them ("0.5" for 0.5%); per-category thresholds one a line,
    `label = 0.97`, or `label = never` to keep a category with people."""

    target_percent = forms.FloatField(
        label="maximum mishandled rate (%)", min_value=0.05, max_value=20.0, initial=DEFAULT_TARGET * 100
    )
    confidence_percent = forms.FloatField(
        label="confidence of the guarantee (%)", min_value=50.0, max_value=99.9, initial=DEFAULT_CONFIDENCE * 100
    )
    out_of_scope_percent = forms.FloatField(
        label="share of requests no category covers (%)",
        min_value=0.0,
        max_value=50.0,
        required=False,
        help_text="The thresholds are chosen as if this share of the tickets asked for something no category covers "
        "(empty: the policy's).",
    )
    min_per_category = forms.IntegerField(
        label="labelled tickets a category needs", min_value=1, max_value=100_000, initial=DEFAULT_MIN_PER_CATEGORY
    )
    overrides_text = forms.CharField(
        label="per-category thresholds (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 50, "placeholder": "card_arrival = 0.97\ncrypto = never"}),
        help_text="One a line: a category label, '=', then a confidence between 0 and 1 or 'never'.",
    )

    def __init__(self, *args: Any, categories: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._categories = set(categories)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "target_percent" in cleaned:
            cleaned["target"] = cleaned["target_percent"] / 100
        if "confidence_percent" in cleaned:
            cleaned["confidence"] = cleaned["confidence_percent"] / 100
        share = cleaned.get("out_of_scope_percent")
        cleaned["out_of_scope_share"] = None if share is None else share / 100
        overrides: dict[str, float | None] = {}
        problems = []
        for number, line in enumerate((cleaned.get("overrides_text") or "").splitlines(), start=1):
            if not line.strip():
                continue
            label, sep, value = (part.strip() for part in line.partition("="))
            if not sep:
                problems.append(f"line {number}: expected 'label = threshold'")
            elif label not in self._categories:
                problems.append(f"line {number}: no category '{label}'")
            elif value.lower() == "never":
                overrides[label] = None
            else:
                try:
                    threshold = float(value)
                except ValueError:
                    threshold = -1.0
                if not 0.0 <= threshold <= 1.0:
                    problems.append(f"line {number}: '{value}' is not a confidence between 0 and 1 or 'never'")
                else:
                    overrides[label] = threshold
        if problems:
            self.add_error("overrides_text", problems)
        cleaned["overrides"] = overrides
        return cleaned
