"""`evaluate --report DIR`: the figures as files people read.

    report.json                 every figure, the per-category table and both risk-coverage curves
    categories.csv, categories.md   one row per true category
    risk_coverage.png           mishandled share among automated tickets against the automation rate, as the
                                confidence threshold sweeps: gated vs ungated, with the operating point
    automation_by_category.png  automation rate per category, mishandled tickets marked

Charts are drawn with matplotlib's Agg backend (files only, no display).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

COLUMNS = [
    "category",
    "tickets",
    "auto_handled",
    "automation_rate",
    "mishandled",
    "mishandled_among_auto_handled",
    "accuracy",
    "retrieval_hit_rate",
    "draft_cites_category_article",
]
RATES = {
    "automation_rate",
    "mishandled_among_auto_handled",
    "accuracy",
    "retrieval_hit_rate",
    "draft_cites_category_article",
}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in RATES:
        return f"{value:.1%}"
    return str(value)


def report_write(*, report: dict[str, Any], directory: Path) -> list[Path]:
    """Write the report files into `directory` (created if needed); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    path = directory / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    rows = report.get("categories", [])
    path = directory / "categories.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    written.append(path)
    path = directory / "categories.md"
    lines = [
        f"# {report['dataset']}: per category",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_cell(k, row.get(k)) for k in COLUMNS) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(path)
    written += _charts(report=report, directory=directory)
    return written


def _charts(*, report: dict[str, Any], directory: Path) -> list[Path]:
    # Lazily: matplotlib takes a second to import and only the report needs it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import PercentFormatter

    written = []
    curves = report.get("risk_coverage", {})
    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=110)
    for name, color, linestyle in (("ungated", "#c0392b", "--"), ("gated", "#1f618d", "-")):
        points = curves.get(name) or []
        if points:
            axes.plot(
                [p["coverage"] for p in points],
                [p["risk"] for p in points],
                label=name,
                color=color,
                linestyle=linestyle,
            )
    operating = (report.get("automation_rate"), report.get("mishandled_among_auto_handled"))
    if operating[0] is not None and operating[1] is not None:
        axes.scatter([operating[0]], [operating[1]], color="#1f618d", zorder=3, label="gated, as evaluated")
    axes.set_xlabel("automation rate (coverage)")
    axes.set_ylabel("mishandled among automated (risk)")
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlim(0, 1)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    axes.set_title(f"{report['dataset']}: risk against coverage as the confidence threshold sweeps")
    figure.tight_layout()
    path = directory / "risk_coverage.png"
    figure.savefig(path)
    pyplot.close(figure)
    written.append(path)

    rows = report.get("categories", [])
    figure, axes = pyplot.subplots(figsize=(7, max(2.5, 0.28 * len(rows) + 1.2)), dpi=110)
    labels = [r["category"] for r in rows]
    rates = [r["automation_rate"] for r in rows]
    bars = axes.barh(labels, rates, color="#1f618d")
    for bar, row in zip(bars, rows, strict=True):
        if row["mishandled"]:
            bar.set_color("#c0392b")
        axes.text(
            bar.get_width() + 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{row['auto_handled']}/{row['tickets']}"
            + (f" ({row['mishandled']} mishandled)" if row["mishandled"] else ""),
            va="center",
            fontsize=7,
        )
    axes.invert_yaxis()
    axes.set_xlim(0, 1.25)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.tick_params(axis="y", labelsize=7)
    axes.set_xlabel("automation rate (red: some auto-handled tickets were mishandled)")
    axes.set_title(f"{report['dataset']}: automation by category")
    figure.tight_layout()
    path = directory / "automation_by_category.png"
    figure.savefig(path)
    pyplot.close(figure)
    written.append(path)
    return written
