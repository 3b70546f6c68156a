"""PNG charts of calibrated autonomy (matplotlib, drawn on the server): the risk-coverage curve in the gate
policy's admin page and the target against the measured rate on the Reports page.

Presentation only: the figures come from `triage.autonomy` and `triage.risk`.
"""

from __future__ import annotations

import base64
import io
import threading

from triage.autonomy import TargetWeek
from triage.risk import CurvePoint

_lock = threading.Lock()  # pyplot's state is global; one figure at a time per process


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def risk_coverage_png(*, points: list[CurvePoint], target: float) -> str:
    """The automation each target buys (with the guarantee), and the error measured at it, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    with _lock:
        figure, axes = pyplot.subplots(figsize=(7.5, 3.6))
        try:
            xs = [p.target * 100 for p in points]
            axes.plot(xs, [p.coverage * 100 for p in points], marker="o", color="#2563eb", label="automation")
            measured = [(p.target * 100, p.error_rate * 100) for p in points if p.error_rate is not None]
            twin = axes.twinx()
            twin.plot(xs, xs, linestyle=":", color="#9ca3af", label="target (guaranteed bound)")
            if measured:
                twin.plot(*zip(*measured, strict=True), marker="s", color="#dc2626", label="mishandled (measured)")
            twin.set_ylabel("mishandled among auto-handled (%)")
            axes.axvline(target * 100, color="#16a34a", linestyle="--", label=f"current target {target:.2%}")
            axes.set_xscale("log")
            axes.set_xlabel("maximum mishandled rate among auto-handled tickets (%)")
            axes.set_ylabel("tickets automated (%)")
            axes.set_ylim(0, 100)
            handles = axes.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            axes.legend(handles=handles, loc="upper left", fontsize=8)
            axes.grid(alpha=0.3)
            return _png(figure)
        finally:
            pyplot.close(figure)


def target_history_png(*, weeks: list[TargetWeek]) -> str:
    """Per week, the target in force beside the mishandled rate measured among auto-handled tickets."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    with _lock:
        figure, axes = pyplot.subplots(figsize=(9, 2.8))
        try:
            labels = [w.week.strftime("%d %b") for w in weeks]
            axes.step(labels, [w.target * 100 for w in weeks], where="mid", color="#16a34a", label="target")
            measured = [
                (label, w.measured * 100) for label, w in zip(labels, weeks, strict=True) if w.measured is not None
            ]
            if measured:
                axes.plot(*zip(*measured, strict=True), marker="o", color="#dc2626", label="measured (staff marked)")
            axes.set_ylabel("mishandled among\nauto-handled (%)")
            axes.set_ylim(bottom=0)
            axes.legend(fontsize=8)
            axes.grid(alpha=0.3)
            axes.tick_params(axis="x", labelsize=8)
            return _png(figure)
        finally:
            pyplot.close(figure)
