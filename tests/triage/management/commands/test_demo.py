"""`manage.py demo` as the README runs it (without serving): a new embedded server of its own, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def manage(*args: str, var_dir) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGE_VAR_DIR": str(var_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)  # the demo works its runs in its own process
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_demo_reports_the_target_and_the_share_of_automatable_tickets_it_automated(tmp_path):
    try:
        done = manage("demo", "--no-serve", "--json", var_dir=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    finally:
        manage("embedded_postgres", "stop", var_dir=tmp_path)

    assert report["tickets"] == 262 and report["money_auto_executed"] == 0
    # What `evaluate` reports beside the chain figures: the target in force and what it bought.
    assert report["target_mishandled_rate"] == 0.05 and report["guarantee_confidence"] == 0.9
    kinds = (
        report["automatable_tickets"]
        + report["money_tickets"]["tickets"]
        + report["out_of_scope_other_business"]["tickets"]
    )
    assert report["automatable_tickets"] > 100 and kinds == report["tickets"]
    automated = report["automatable_share_automated"] * report["automatable_tickets"]
    assert 0 < round(automated) <= report["auto_handled"]
    assert report["mishandled_among_auto_handled"] is not None
