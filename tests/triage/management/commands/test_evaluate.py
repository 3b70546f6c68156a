"""`manage.py evaluate` as a user runs it: a subprocess, its own throw-away database, JSON on the last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import DEMO, ROOT, SHARED_DATASETS


def evaluate(dataset, *args: str) -> tuple[dict, str]:
    env = {**os.environ, "TRIAGE_DB_NAME": "test_triage_evaluate_anchor"}
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(dataset), "--json", "--no-progress", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last), done.stderr


def test_evaluate_on_the_demo_reports_every_figure_gated_and_ungated():
    report, _ = evaluate(DEMO, "--limit", "60")

    assert report["tickets"] == 60 and report["knowledge_base"] is True
    for key in ("automation_rate", "mishandled_rate", "accuracy", "chain_reliability_measured"):
        assert 0.0 <= report[key] <= 1.0
    assert set(report["step_reliability"]) == {"retrieve", "classify", "draft"}
    assert report["money_auto_executed"] == 0
    ungated = report["ungated"]
    assert ungated["automation_rate"] == 1.0
    assert ungated["money_auto_executed"] > 0  # the same chain without gates refunds on its own
    assert ungated["mishandled_rate"] > report["mishandled_rate"]
    predicted = report["step_reliability"]["retrieve"] * report["step_reliability"]["classify"] * report[
        "step_reliability"]["draft"]
    assert report["chain_reliability_predicted"] == pytest.approx(predicted)


def test_evaluate_refuses_a_broken_dataset_with_file_and_line(tmp_path):
    (tmp_path / "categories.csv").write_text("label,money\nbilling,1\nshipping,0\n")
    (tmp_path / "examples.csv").write_text("text,label\nwhere is my parcel,shipping\nrefund me,nonsense\n")
    (tmp_path / "tickets.csv").write_text("text,label\nhello,shipping\n")

    done = subprocess.run([sys.executable, "manage.py", "evaluate", str(tmp_path), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)

    assert done.returncode != 0
    assert "examples.csv:3" in done.stderr and "nonsense" in done.stderr


@pytest.mark.skipif(not (SHARED_DATASETS / "banking77").is_dir(), reason="../shared/datasets is not beside the repo")
def test_evaluate_on_banking77_never_auto_executes_money():
    report, _ = evaluate(SHARED_DATASETS / "banking77", "--limit", "300", "--no-ungated")

    assert report["tickets"] == 300 and report["knowledge_base"] is False
    assert report["money_auto_executed"] == 0
    assert report["mishandled_rate"] <= 0.02
    assert report["automation_rate"] >= 0.45
    assert report["step_reliability"]["retrieve"] is None and report["step_reliability"]["draft"] is None
