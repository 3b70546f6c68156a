from __future__ import annotations

import csv
import json

from triage.evaluation_report import report_write


def test_the_report_writes_json_tables_and_charts(tmp_path):
    report = {
        "dataset": "tiny",
        "automation_rate": 0.5,
        "mishandled_among_auto_handled": 0.0,
        "categories": [
            {"category": "billing", "tickets": 2, "auto_handled": 0, "automation_rate": 0.0, "mishandled": 0},
            {
                "category": "shipping",
                "tickets": 2,
                "auto_handled": 2,
                "automation_rate": 1.0,
                "mishandled": 1,
                "mishandled_among_auto_handled": 0.5,
                "accuracy": 1.0,
                "retrieval_hit_rate": 0.5,
            },
        ],
        "risk_coverage": {
            "gated": [{"threshold": 0.9, "coverage": 0.25, "risk": 0.0, "automated": 1, "mishandled": 0}],
            "ungated": [
                {"threshold": 0.9, "coverage": 0.25, "risk": 0.0, "automated": 1, "mishandled": 0},
                {"threshold": 0.5, "coverage": 1.0, "risk": 0.25, "automated": 4, "mishandled": 1},
            ],
        },
    }

    written = report_write(report=report, directory=tmp_path / "out")

    assert sorted(p.name for p in written) == [
        "automation_by_category.png",
        "categories.csv",
        "categories.md",
        "report.json",
        "risk_coverage.png",
    ]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    rows = list(csv.DictReader((tmp_path / "out" / "categories.csv").open()))
    assert [r["category"] for r in rows] == ["billing", "shipping"] and rows[1]["retrieval_hit_rate"] == "0.5"
    assert (
        "| shipping | 2 | 2 | 100.0% | 1 | 50.0% | 100.0% | 50.0% |  |"
        in (tmp_path / "out" / "categories.md").read_text()
    )
    for chart in ("risk_coverage.png", "automation_by_category.png"):
        assert (tmp_path / "out" / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
