"""What staff send the inbox: filter choices (GET) and decisions (POST), parsed before anything acts."""

from __future__ import annotations

from django import forms

from approvals.models import Decision
from approvals.selectors import AGES, GATE_NAMES, SORTS, InboxFilters
from triage.models import Category


class InboxFilterForm(forms.Form):
    category = forms.CharField(required=False, max_length=100)
    gate = forms.ChoiceField(required=False, choices=[("", ""), *GATE_NAMES.items()])
    money = forms.ChoiceField(required=False, choices=[("", ""), ("yes", "yes"), ("no", "no")])
    age = forms.ChoiceField(required=False, choices=[("", "")] + [(a, a) for a in AGES])
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SORTS])
    page = forms.IntegerField(required=False, min_value=1)

    def filters(self) -> InboxFilters:
        """The valid part of the query string; a value that is not a choice is ignored, not an error."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return InboxFilters(
            category=data.get("category") or "",
            gate=data.get("gate") or "",
            money=data.get("money") or "",
            age=data.get("age") or "",
            sort=data.get("sort") or "urgent",
        )


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=Decision.Verdict.choices)
    reason = forms.CharField(required=False, max_length=2000)
    reply = forms.CharField(required=False, max_length=20_000, strip=False, widget=forms.Textarea)
    category = forms.ChoiceField(required=False)
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: object, categories: list[Category], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # Form's own arguments, passed through
        category_field = self.fields["category"]
        assert isinstance(category_field, forms.ChoiceField)
        category_field.choices = [("", "")] + [(c.label, c.label) for c in categories]

    def clean_reply(self) -> str:
        # Browsers send textarea line breaks as CRLF; the draft was stored with LF.
        return (self.cleaned_data.get("reply") or "").replace("\r\n", "\n")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("verdict") == Decision.Verdict.REJECT and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why you reject it: the reason is kept in the audit trail.")
        return data
