"""`manage.py evaluate` as a user runs it: a subprocess, its own throw-away database, JSON on the last line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from tests.conftest import DEMO, ROOT, SHARED_DATASETS


def evaluate(dataset, *args: str) -> tuple[dict, str]:
    last, stderr = evaluate_text(dataset, "--no-progress", *args)
    return json.loads(last), stderr


def evaluate_text(dataset, *args: str, database: str = "test_triage_evaluate_anchor") -> tuple[str, str]:
    """The report's JSON line as printed, and stderr; `database`: the one the command is configured with."""
    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(dataset), "--json", *args],
        cwd=ROOT,
        env={**os.environ, "TRIAGE_DB_NAME": database},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1], done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_evaluate_on_the_demo_reports_every_figure_gated_and_ungated(workers):
    # The demo company's target (manage.py demo sets it): its examples cannot show 1% at 90%.
    # The same exact figures whether the runs are worked in this process or by two forked workers.
    report, _ = evaluate(DEMO, "--limit", "60", "--target", "0.05", "--workers", workers)

    assert report["tickets"] == 60 and report["knowledge_base"] is True
    # The demo, the classifier's fit and the chain are deterministic: the figures are exact.
    assert {key: report[key] for key in ("auto_handled", "routed_to_person", "mishandled", "escalations_by_gate")} == {
        "auto_handled": 12,
        "routed_to_person": 48,
        "mishandled": 0,
        "escalations_by_gate": {"confidence": 48, "money": 31, "retrieval": 3},
    }
    # The calibration data counts unseen-category examples as wrong: 448 tickets, a stricter threshold.
    assert report["thresholds"]["pooled"] == 0.989 and report["thresholds"]["refused"] == []
    assert report["thresholds"]["calibration_tickets"] == 448
    # 32 automatable: in scope, not a money category, and not marked money=1 (one ticket is).
    assert report["automatable_tickets"] == 32 and report["automatable_share_automated"] == pytest.approx(12 / 32)
    assert report["mishandled_among_auto_handled"] == 0.0
    assert report["automation_rate"] == pytest.approx(12 / 60)
    assert report["mishandled_rate"] == 0.0
    assert report["accuracy"] == pytest.approx(53 / 55)
    assert report["chain_reliability_measured"] == 1.0
    assert set(report["step_reliability"]) == {"retrieve", "classify", "draft"}
    assert report["money_auto_executed"] == 0
    ungated = report["ungated"]
    assert ungated["automation_rate"] == 1.0
    assert ungated["money_auto_executed"] == 23  # the same chain without gates refunds on its own
    assert ungated["mishandled_rate"] == pytest.approx(29 / 60)
    predicted = (
        report["step_reliability"]["retrieve"]
        * report["step_reliability"]["classify"]
        * report["step_reliability"]["draft"]
    )
    assert report["chain_reliability_predicted"] == pytest.approx(predicted)


def test_evaluate_refuses_a_broken_dataset_with_file_and_line(tmp_path):
    (tmp_path / "categories.csv").write_text("label,money\nbilling,1\nshipping,0\n")
    (tmp_path / "examples.csv").write_text("text,label\nwhere is my parcel,shipping\nrefund me,nonsense\n")
    (tmp_path / "tickets.csv").write_text("text,label\nhello,shipping\n")

    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(tmp_path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 1
    assert done.stderr == f"CommandError: {tmp_path / 'examples.csv'}:3: label 'nonsense' is not in categories.csv\n"


def test_evaluate_calibrates_for_the_share_of_out_of_scope_requests_it_is_given():
    # The demo's first 60 tickets at its 5% target (the figures of the first test at the default 5% share):
    # stating that every request has a category leaves the 21 unseen-category examples the similarity filter
    # let through out of the calibration data, and a looser threshold is certified.
    report, _ = evaluate(DEMO, "--limit", "60", "--no-ungated", "--target", "0.05", "--out-of-scope-share", "0")

    assert report["out_of_scope_share"] == 0.0
    assert report["thresholds"]["calibration_tickets"] == 448 - 21
    assert report["thresholds"]["pooled"] == 0.986  # 0.989 at 5%
    assert (report["auto_handled"], report["mishandled"]) == (12, 0)

    done = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(DEMO), "--out-of-scope-share", "0.6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr == "CommandError: --out-of-scope-share must lie between 0.0 and 0.5, not 0.6\n"


@pytest.mark.skipif(not (SHARED_DATASETS / "banking77").is_dir(), reason="../shared/datasets is not beside the repo")
def test_evaluate_on_banking77_never_auto_executes_money():
    report, _ = evaluate(SHARED_DATASETS / "banking77", "--limit", "300", "--no-ungated")

    assert report["tickets"] == 300 and report["knowledge_base"] is False
    assert report["money_auto_executed"] == 0
    assert report["money_tickets"]["auto_handled"] == 0
    # The thresholds come from the 1% target at 90% (the policy's defaults), chosen on the examples'
    # out-of-fold predictions: a pooled threshold exists, something is automated, and on this slice the
    # share of auto-handled tickets that went wrong is within the target.
    assert report["target_mishandled_rate"] == 0.01 and report["guarantee_confidence"] == 0.9
    assert report["thresholds"]["pooled"] is not None
    assert report["auto_handled"] > 0
    assert report["mishandled_among_auto_handled"] <= 0.01
    assert report["automatable_share_automated"] == report["auto_handled"] / report["automatable_tickets"]
    assert report["step_reliability"]["retrieve"] is None and report["step_reliability"]["draft"] is None


HOSTILE_MONEY = ROOT / "tests" / "triage" / "management" / "commands" / "hostile_money"


def test_evaluate_auto_handles_no_hostile_money_ticket_while_it_automates_ordinary_ones():
    # A target loose enough (20%) that 40 examples a category can support it, so ordinary tickets are
    # automated and the test could fail; the ten money requests dressed as card, PIN and exchange-rate
    # questions (or as instructions to the product) must all wait for a person.
    report, _ = evaluate(HOSTILE_MONEY, "--no-ungated", "--target", "0.2")

    assert report["target_mishandled_rate"] == 0.2
    assert report["money_tickets"] == {"tickets": 10, "auto_handled": 0}
    assert report["money_auto_executed"] == 0 and report["money_tickets_auto_handled"] == 0
    assert report["auto_handled"] > 0  # ordinary questions were automated
    assert report["automatable_tickets"] == 8
    assert report["automatable_share_automated"] == report["auto_handled"] / 8


TINY_CATEGORIES = "label,money\nshipping,0\nbilling,1\npassword,0\n"
TINY_EXAMPLES = {
    "shipping": [
        "Where is my parcel?",
        "My order has not arrived yet",
        "The tracking number shows no movement",
        "When will my package be delivered?",
        "My delivery is late",
        "Has my order shipped?",
    ],
    "billing": [
        "I was charged twice",
        "Please refund my payment",
        "There is a charge I do not recognise",
        "I want my money back",
        "Why was my card billed again?",
        "Refund the duplicate charge",
    ],
    "password": [
        "I forgot my password",
        "The password reset link does not work",
        "How do I change my password?",
        "I cannot sign in to my account",
        "Reset my login please",
        "My account is locked after wrong passwords",
    ],
}
TINY_TICKETS = [
    ("Where is my parcel? It is late.", "shipping", 0),
    ("My delivery has not arrived yet", "shipping", 0),
    ("I forgot my password and the reset link does not work", "password", 0),
    ("I was charged twice, please refund me", "billing", 1),
    ("My package is late, and refund the shipping fee", "shipping", 1),
    ("What is the capital of France?", "out_of_scope", 0),
]


def tiny_dataset(folder):
    import csv as csv_module

    folder.mkdir()
    (folder / "categories.csv").write_text(TINY_CATEGORIES)
    with (folder / "examples.csv").open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((text, label) for label, texts in TINY_EXAMPLES.items() for text in texts)
    with (folder / "tickets.csv").open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["text", "label", "money"])
        writer.writerows(TINY_TICKETS)
    kb = folder / "kb"
    kb.mkdir()
    (kb / "delivery.md").write_text(
        "category: shipping\n\n# Delivery times\n\nParcels arrive within three working days. "
        "A late parcel can be tracked with the tracking number in your e-mail.\n"
    )
    (kb / "passwords.md").write_text(
        "category: password\n\n# Resetting your password\n\nUse the reset link on the sign-in page. "
        "A reset link works for one hour; ask for a new one if it does not work.\n"
    )
    (kb / "about.md").write_text("# About us\n\nWe are a small coffee roaster.\n")
    return folder


def test_evaluate_measures_retrieval_citations_and_money_asks_and_writes_the_report(tmp_path):
    report, stderr = evaluate(tiny_dataset(tmp_path / "tiny"), "--report", str(tmp_path / "report"))

    assert report["money_column"] is True and report["articles_with_category"] == 2
    # Retrieval and citations are judged on the in-scope tickets whose category has an article (4 of 6).
    assert report["retrieval_judged"] == 4
    assert 0.0 <= report["retrieval_hit_rate"] <= 1.0
    assert report["draft_citations_judged"] <= 4
    assert report["automatable_tickets"] == 3  # in scope, not a money category, not money=1
    assert "automatable" not in report and "mishandled_among_automated" not in report  # one name per figure
    assert report["money_asked_auto_handled"] == 0 and report["money_auto_executed"] == 0
    assert report["ungated"]["money_asked_auto_handled"] == 2  # without gates both money asks are acted on
    assert "categories" not in report and "risk_coverage" not in report  # those are in the report files
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == [
        "automation_by_category.png",
        "categories.csv",
        "categories.md",
        "report.json",
        "risk_coverage.png",
    ]
    full = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["category"] for row in full["categories"]] == ["billing", "out_of_scope", "password", "shipping"]
    assert len(full["risk_coverage"]["ungated"]) >= 1
    assert "Report written" in stderr


def _die(chunk):
    if chunk == [[1]]:
        os._exit(9)  # a worker killed in the middle of its runs (as the kernel's OOM killer would)
    return 1  # the other worker lives on, idle, until the executor terminates it


def test_a_run_worker_that_dies_stops_the_evaluation_with_an_error_instead_of_hanging(monkeypatch):
    # given: one run worker that dies as soon as it gets its runs, the other alive, and a parent that handles
    # SIGTERM itself (as an RQ worker or a test runner may), which its forked children inherit
    from triage import evaluation

    monkeypatch.setattr(evaluation, "_chunk_work", _die)
    monkeypatch.setattr(evaluation, "_CHUNK", 1)  # a chunk a group: both workers get work
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    outcome: dict = {}

    def work() -> None:
        try:
            evaluation.runs_work(run_groups=[[1], [2], [3], [4]], router=None, workers=2, tick=lambda n: None)
        except RuntimeError as exc:
            outcome["error"] = str(exc)

    # when
    caller = threading.Thread(target=work)
    caller.start()
    caller.join(120)
    signal.signal(signal.SIGTERM, previous)

    # then: the caller came back with an error that says what happened and what to do
    assert not caller.is_alive(), "runs_work hung on a dead worker"
    assert "a process working the evaluation's runs died" in outcome["error"]
    assert "--workers 1" in outcome["error"]


@pytest.fixture
def configured_database(django_db_blocker):
    """A migrated database for the command to be configured with (where it keeps its caches), dropped after."""
    from django.db import connection

    name = f"test_triage_fits_{os.getpid()}"
    env = {**os.environ, "TRIAGE_DB_NAME": name}
    with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        migrated = subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        yield name
    finally:
        with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_evaluating_the_same_examples_again_reuses_the_kept_fit_and_reports_the_same(configured_database, tmp_path):
    def run(dataset, *args: str) -> tuple[str, str]:
        # The demo company's target: something is automated, so the reports can differ.
        return evaluate_text(
            dataset, "--limit", "20", "--no-ungated", "--target", "0.05", *args, database=configured_database
        )

    # The first evaluation fits and keeps its classifier; the second, on the same examples, reuses it.
    first, said = run(DEMO)
    assert "classifier: fitted, and kept for the next evaluation of these examples" in said
    second, said = run(DEMO)
    assert "the fit an earlier evaluation kept for these examples was reused" in said
    assert second == first  # the kept fit is the model a fit gives: the same report, figure for figure
    assert json.loads(first)["auto_handled"] > 0

    # --refit fits again, and gets the same report.
    refit, said = run(DEMO, "--refit")
    assert "classifier: fitted (--refit)" in said and refit == first

    # Other examples (one moved to another category): another fit.
    changed = tmp_path / "demo"
    shutil.copytree(DEMO, changed)
    lines = (changed / "examples.csv").read_text(encoding="utf-8").splitlines()
    text, _, label = lines[1].rpartition(",")
    lines[1] = f"{text},{'order_status' if label != 'order_status' else 'shipping_delay'}"
    (changed / "examples.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, said = run(changed)
    assert "classifier: fitted, and kept" in said


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "argument --limit: must be at least 1, not 0"),  # evaluated every ticket
        (["--limit", "-5"], "argument --limit: must be at least 1, not -5"),  # every ticket but the last five
        (["--hold-out", "-1"], "argument --hold-out: must be at least 0, not -1"),
        (["--human-cost", "-3"], "argument --human-cost: must be a finite amount of at least 0, not -3"),
        (["--human-cost", "NaN"], "argument --human-cost: must be a finite amount of at least 0, not NaN"),
        (["--human-cost", "abc"], "argument --human-cost: not an amount: 'abc'"),  # a decimal.InvalidOperation
    ],
)
def test_evaluate_refuses_a_count_or_a_cost_that_means_nothing_before_doing_anything(args, message):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("evaluate", str(DEMO), "--no-progress", *args)
