"""The Reports page's figures for a period: which runs count, then `triage.metrics` with staff feedback.

The figures and their definitions are in `triage.metrics`; the charts' geometry is in `triage.charts`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings

from triage.metrics import DayPoint, Figures, StaffFeedback, chain_figures
from triage.models import PipelineRun
from triage.selectors import gate_policy_current


def dashboard_figures(*, start: datetime | None, end: datetime) -> Figures:
    """Every figure of the dashboard for tickets created in [start, end) (start None: all time).

    Gated runs only (`evaluate`'s ungated runs are left out). A fixed number of queries whatever the period.
    """
    policy = gate_policy_current()
    runs = PipelineRun.objects.filter(gates_enabled=True, ticket__created_at__lt=end)
    if start is not None:
        runs = runs.filter(ticket__created_at__gte=start)
    figures = chain_figures(
        runs=runs,
        truth=StaffFeedback(),
        human_cost=policy.human_cost_per_ticket or settings.TRIAGE_HUMAN_COST_PER_TICKET,
    )
    figures.trend = _days(start, end, figures.by_day)
    return figures


def _days(start: datetime | None, end: datetime, days: dict[date, list[int]]) -> list[DayPoint]:
    last = (end - timedelta(microseconds=1)).date()
    # All time starts at the first ticket.
    first = start.date() if start is not None else min(days, default=last)
    out = []
    day = first
    while day <= last:
        tickets, auto, person = days.get(day, [0, 0, 0])
        out.append(DayPoint(day=day, tickets=tickets, auto=auto, person=person))
        day += timedelta(days=1)
    return out
