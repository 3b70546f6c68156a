"""Staff pages of the triage domain: the ticket trace and the reports dashboard.

Only signed-in staff see anything (`staff_required`); the approvals app uses the same gate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from triage import selectors
from triage.autonomy import target_history
from triage.charts import bar_chart, funnel_chart, line_chart
from triage.dashboard import dashboard_figures
from triage.models import Action, PipelineRun, Ticket
from triage.pipeline.gates import gate_label
from triage.risk_charts import target_history_png
from triage.services import MishandledMarkError, OutcomeSettleError, action_outcome_settle, ticket_mark_mishandled

View = Callable[..., HttpResponse]


def staff_required(*perms: str) -> Callable[[View], View]:
    """Signed-in, active staff holding `perms`; anyone else is sent to sign in (or refused: 403).

    An htmx request whose session expired is redirected as a whole page, not swapped into a card.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not user.is_authenticated:
                if getattr(request, "htmx", False):
                    return HttpResponseClientRedirect(
                        f"{reverse('login')}?next={request.headers.get('HX-Current-URL', '/')}"
                    )
                return redirect_to_login(request.get_full_path())
            if not (user.is_active and user.is_staff and user.has_perms(perms)):
                raise PermissionDenied("You do not have permission to see this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@require_GET
@staff_required("triage.view_ticket")
def ticket_trace(request: HttpRequest, ticket_id: int) -> HttpResponse:
    try:
        trace = selectors.ticket_trace(ticket_id=ticket_id)
    except Ticket.DoesNotExist:
        raise Http404("No such ticket.") from None
    can_change = request.user.has_perm("triage.change_ticket")
    can_mark = trace.can_mark_mishandled and can_change
    return render(
        request,
        "triage/ticket.html",
        {"trace": trace, "ticket": trace.ticket, "can_mark": can_mark, "can_settle": can_change},
    )


@require_POST
@staff_required("triage.view_ticket", "triage.change_ticket")
def ticket_mishandled(request: HttpRequest, ticket_id: int) -> HttpResponse:
    if not Ticket.objects.filter(pk=ticket_id).exists():
        raise Http404("No such ticket.")
    try:
        assert isinstance(request.user, AbstractBaseUser)  # staff_required let only a signed-in user through
        ticket_mark_mishandled(ticket_id=ticket_id, actor=request.user)
    except MishandledMarkError as exc:
        messages.error(request, exc.reason)
        response = redirect("ticket-trace", ticket_id=ticket_id)
        response.status_code = 303
        return response
    messages.success(request, "Marked as mishandled. It now counts in the mishandled rate.")
    response = redirect("ticket-trace", ticket_id=ticket_id)
    response.status_code = 303
    return response


@require_POST
@staff_required("triage.view_ticket", "triage.change_ticket")
def action_settle(request: HttpRequest, ticket_id: int, action_id: int) -> HttpResponse:
    """A person checked, in the helpdesk, an action whose outcome was unknown: carried out, or carry it out."""
    if not Action.objects.filter(pk=action_id, run__ticket_id=ticket_id).exists():
        raise Http404("No such action.")
    outcome = request.POST.get("outcome")
    if outcome not in ("carried_out", "carry_out"):
        return HttpResponseBadRequest("outcome must be carried_out or carry_out")
    try:
        assert isinstance(request.user, AbstractUser)  # staff_required let only a signed-in user through
        action = action_outcome_settle(action_id=action_id, actor=request.user, carried_out=outcome == "carried_out")
    except OutcomeSettleError as exc:
        messages.error(request, exc.reason)
    else:
        if action.status == Action.Status.DONE:
            messages.success(request, f"{action.kind}: recorded as carried out.")
        else:
            messages.error(request, f"{action.kind}: carried out again, but it failed: {action.error}")
    response = redirect("ticket-trace", ticket_id=ticket_id)
    response.status_code = 303
    return response


PERIODS = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]
DEFAULT_DAYS = 30
# One report covers at most a year (a leap year's 366 days), from 1 January ten years ago to today: the figures are
# read row by row and the trend has a point per day, so an unbounded range (years 1000-9999) cost
# tens of seconds and hundreds of megabytes. "All time" (days=0) is bounded by the tickets there are.
MAX_SPAN_DAYS = 366
OLDEST_YEARS = 10


class PeriodForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    days = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_SPAN_DAYS, help_text=f"1 to {MAX_SPAN_DAYS} days; 0: all time"
    )

    def __init__(self, *args: Any, today: date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        self.oldest = date(today.year - OLDEST_YEARS, 1, 1)
        for name in ("start", "end"):
            self.fields[name].widget.attrs.update(min=self.oldest.isoformat(), max=today.isoformat())

    def _clean_day(self, name: str, label: str) -> date | None:
        value: date | None = self.cleaned_data.get(name)
        if value is not None and value > self.today:
            raise forms.ValidationError(f"The {label} date cannot be in the future (today is {self.today:%-d %b %Y}).")
        if value is not None and value < self.oldest:
            raise forms.ValidationError(f"The {label} date cannot be before {self.oldest:%-d %b %Y}.")
        return value

    def clean_start(self) -> date | None:
        return self._clean_day("start", "start")

    def clean_end(self) -> date | None:
        return self._clean_day("end", "end")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end") or self.today
        if self.errors:
            return data
        if start is not None:
            if start > end:
                raise forms.ValidationError("The period must start before it ends.")
            if (end - start).days + 1 > MAX_SPAN_DAYS:
                raise forms.ValidationError(
                    f"A report covers at most {MAX_SPAN_DAYS} days; this period has {(end - start).days + 1}. "
                    "Choose a shorter one."
                )
        return data

    def period(self) -> tuple[date | None, date]:
        """(first day or None for all time, last day), both inclusive; call after is_valid().

        Default (and for invalid input): the last 30 days.
        """
        data = self.cleaned_data if self.is_bound and not self.errors else {}
        end = data.get("end") or self.today
        if data.get("days") == 0:
            return None, end
        if data.get("start"):
            return data["start"], end
        days = data.get("days") or DEFAULT_DAYS
        return end - timedelta(days=days - 1), end


@require_GET
@staff_required("triage.view_pipelinerun")
def reports(request: HttpRequest) -> HttpResponse:
    form = PeriodForm(request.GET or None, today=timezone.localdate())
    # Invalid input is answered 400 with the form's errors over the default period's figures.
    status = 400 if form.is_bound and not form.is_valid() else 200
    first, last = form.period()
    tz = timezone.get_current_timezone()
    start = datetime.combine(first, time.min, tzinfo=tz) if first else None
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz)
    figures = dashboard_figures(start=start, end=end)
    reliability = bar_chart(
        items=[
            *[
                (r.step.capitalize(), r.rate, _share(r.rate, f"{r.right}/{r.counted}"), "bar-step")
                for r in figures.step_reliability
            ],
            ("Chain, predicted", figures.chain_predicted, _share(figures.chain_predicted), "bar-predicted"),
            ("Chain, measured", figures.chain_measured, _share(figures.chain_measured), "bar-measured"),
        ]
    )
    funnel = funnel_chart(figures=figures)
    escalations = bar_chart(
        items=[
            (gate_label(gate), n / max(figures.to_person, 1), str(n), "bar-gate")
            for gate, n in figures.escalations_by_gate.items()
        ]
    )
    f = figures
    tiles = [
        ("tickets-in", "Tickets in", str(f.tickets), f"{f.auto_handled} auto-handled, {f.to_person} to a person"),
        ("automation-rate", "Automation rate", _percent(f.automation_rate), "auto-handled / tickets in"),
        (
            "mishandled-rate",
            "Mishandled rate",
            _percent(f.mishandled_rate),
            f"{f.mishandled} auto-handled wrongly; {f.category_corrected} categories corrected in the inbox (caught)",
        ),
        ("chain", "Chain reliability", _percent(f.chain_measured), f"predicted {_percent(f.chain_predicted)}"),
        ("escalations", "Escalations", str(f.to_person), f"{f.waiting} still waiting"),
        ("llm-spend", "LLM spend", f"${f.llm_cost:,.4f}", f"{f.tokens_in + f.tokens_out:,} tokens"),
        (
            "saved-cost",
            "Saved cost",
            f"${f.saved_cost:,.2f}",
            f"at ${f.human_cost_per_ticket} per ticket a person handles",
        ),
    ]
    context = {
        "form": form,
        "figures": figures,
        "tiles": tiles,
        "nav": "reports",
        "first": first,
        "last": last,
        "periods": PERIODS,
        "trend": line_chart(trend=figures.trend),
        "reliability": reliability,
        "funnel": funnel,
        "escalations": escalations,
        "target_weeks": (weeks := target_history(runs=PipelineRun.objects.all(), weeks=12)),
        "target_chart": target_history_png(weeks=weeks),
    }
    return render(request, "triage/reports.html", context, status=status)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _share(value: float | None, detail: str = "") -> str:
    if value is None:
        return "did not run"
    return f"{value:.1%}" + (f" ({detail})" if detail else "")
