"""The Reports page's charts: geometry for inline SVG, computed on the server (no JavaScript).

Presentation only: the figures come from `triage.metrics`; the templates draw what these return.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.metrics import DayPoint, Figures


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    points: str
    dots: list[tuple[float, float, int, str]]


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: int
    bottom: int
    top: int
    right: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]


def line_chart(*, trend: list[DayPoint], width: int = 1200, height: int = 240) -> LineChart:
    """Tickets in, auto-handled and sent to a person per day, as SVG polylines."""
    left, right, top, bottom = 40, 30, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([max(p.tickets, p.auto, p.person) for p in trend] + [1])
    step = _nice_step(peak)
    y_max = step * -(-peak // step)
    n = len(trend)

    def x(i: int) -> float:
        return round(left + (plot_w / 2 if n == 1 else plot_w * i / (n - 1)), 1)

    def y(v: int) -> float:
        return round(top + plot_h - plot_h * v / y_max, 1)

    lines = []
    for name, css, attr in (
        ("Tickets in", "line-in", "tickets"),
        ("Auto-handled", "line-auto", "auto"),
        ("Sent to a person", "line-person", "person"),
    ):
        coords = [(x(i), y(getattr(p, attr)), getattr(p, attr), p.day.isoformat()) for i, p in enumerate(trend)]
        lines.append(
            Line(
                name=name,
                css=css,
                points=" ".join(f"{cx},{cy}" for cx, cy, _, _ in coords),
                dots=coords if n <= 62 else [],
            )
        )
    y_ticks = [(y(v), v) for v in range(0, y_max + 1, step)]
    every = max(1, -(-n // 8))
    # The last day is always labelled; a regular label too close before it is dropped.
    x_labels = [
        (x(i), p.day.strftime("%d %b"))
        for i, p in enumerate(trend)
        if (i % every == 0 and n - 1 - i >= max(every // 2, 1)) or i == n - 1
    ]
    return LineChart(
        width=width,
        height=height,
        left=left,
        bottom=height - bottom,
        top=top,
        right=width - right,
        lines=lines,
        y_ticks=y_ticks,
        x_labels=x_labels,
    )


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if peak / step <= 5:
            return step
    return 10 ** len(str(peak))


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    width: int
    height: int
    label_width: int
    span: int


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    width: float
    y: float
    text: str
    css: str = ""


def bar_chart(
    *, items: list[tuple[str, float | None, str, str]], width: int = 440, label_width: int = 150, row: int = 30
) -> BarChart:
    """Horizontal bars for shares in 0..1: (label, value, text beside the bar, css class)."""
    span = width - label_width - 90  # room for the text after the longest bar
    bars = [
        Bar(label=label, value=value, width=round(span * (value or 0.0), 1), y=i * row, text=text, css=css)
        for i, (label, value, text, css) in enumerate(items)
    ]
    return BarChart(bars=bars, width=width, height=max(len(items), 1) * row, label_width=label_width, span=span)


def funnel_chart(*, figures: Figures, width: int = 440) -> BarChart:
    """Intake, then where every ticket went: auto-handled, approved, edited, rejected, still waiting."""
    total = figures.tickets or 1
    stages = [
        ("Tickets in", figures.tickets, "bar-in"),
        ("Auto-handled", figures.auto_handled, "bar-auto"),
        ("Approved", figures.approved, "bar-approved"),
        ("Edited, then approved", figures.edited, "bar-edited"),
        ("Rejected", figures.rejected, "bar-rejected"),
        ("Waiting for a person", figures.waiting, "bar-waiting"),
    ]
    if figures.failed:
        stages.append(("Failed", figures.failed, "bar-rejected"))
    return bar_chart(
        items=[(label, n / total, f"{n} ({n / total:.0%})", css) for label, n, css in stages],
        width=width,
    )
