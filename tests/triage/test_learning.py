"""Retrain: a challenger is promoted only when it auto-handles more held-out labelled tickets at the same
target; versions are kept with their figures; an admin can roll back."""

from __future__ import annotations

import csv
import re

import numpy
import pytest
from django.db.models import Case, When
from django.utils import timezone

from tests.conftest import DEMO, other_session
from tests.factories import build_run
from triage.autonomy import CalibrationSet
from triage.classifier import Prediction
from triage.learning import (
    RETRAIN_LOCK,
    classifier_activate,
    classifier_retrain,
    classifier_score,
    exceeds_target,
)
from triage.models import Category, LabelledExample, TrainedClassifier
from triage.pipeline.router import Router
from triage.selectors import HeldOutLabel, TrafficTicket, classifier_latest, gate_policy_current
from triage.services import gate_policy_save, ticket_label_record

pytestmark = pytest.mark.django_db


def _demo_tickets() -> list[tuple[str, str]]:
    with (DEMO / "tickets.csv").open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["label"]) for row in csv.DictReader(handle) if row["label"] != "out_of_scope"]


def _label(text: str, category: str, actor, *, shown: str | None = None) -> None:
    """A person decided a ticket with this text: `category` is what they said it is."""
    ticket, _, _ = build_run(body=text, category=shown or category)
    source = LabelledExample.Source.CONFIRMED if (shown or category) == category else LabelledExample.Source.CORRECTED
    ticket_label_record(
        ticket_id=ticket.pk, category=category, source=source, actor=actor, proposed_category=shown or ""
    )


def test_too_few_new_labels_trains_nothing(agent):
    active = classifier_latest()
    for text, label in _demo_tickets()[:5]:
        _label(text, label, agent)

    outcome = classifier_retrain(min_holdout=30)

    assert outcome.challenger is None and outcome.promoted is False
    assert "5 labelled ticket(s)" in outcome.reason
    assert classifier_latest() == active and TrainedClassifier.objects.count() == 1


def _examples_mislabelled(shift: int) -> None:
    """Every imported example moved `shift` categories along (a careless import; -shift puts them back)."""
    categories = list(Category.objects.order_by("label"))
    LabelledExample.objects.filter(ticket__isnull=True).update(
        category_id=Case(
            *[
                When(category_id=c.pk, then=categories[(i + shift) % len(categories)].pk)
                for i, c in enumerate(categories)
            ]
        )
    )


def test_a_worse_challenger_is_kept_but_not_promoted(agent):
    active = classifier_latest()
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)
    _examples_mislabelled(1)

    # A 10% target: 120 held-out tickets can certify it (22 right answers in a row would), so the comparison is real.
    outcome = classifier_retrain(min_holdout=40, target=0.1)

    assert outcome.held_out == 120  # the newest half of the 240 labels the active version never saw
    assert outcome.challenger is not None and outcome.promoted is False
    assert outcome.active_score.automated > outcome.challenger_score.automated
    assert classifier_latest() == active
    challenger = TrainedClassifier.objects.get(pk=outcome.challenger.pk)
    assert challenger.active is False
    assert challenger.figures["promoted"] is False
    assert challenger.figures["comparison"]["held_out"] == 120
    assert challenger.figures["comparison"]["target_error"] == 0.1
    assert challenger.figures["comparison"]["against_version"] == active.pk
    # It learned the 120 labels before the held-out ones, not those.
    assert challenger.trained_on["by_source"]["confirmed"] == 120


def test_a_better_challenger_is_promoted_and_an_admin_can_roll_back(agent, admin_client):
    original = classifier_latest()
    _examples_mislabelled(1)
    bad = classifier_retrain(force=True).challenger
    assert bad is not None and classifier_latest() == bad
    _examples_mislabelled(-1)
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)

    outcome = classifier_retrain(min_holdout=40, target=0.1)

    assert outcome.promoted is True, outcome.reason
    assert outcome.challenger_score.automated > outcome.active_score.automated
    assert classifier_latest() == outcome.challenger
    assert Router.for_run(build_run(body="x")[1]).classifier_id == outcome.challenger.pk

    response = admin_client.post(
        "/admin/triage/trainedclassifier/",
        {"action": "activate", "_selected_action": [original.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert f"Version #{original.pk} is now used for new runs." in response.content.decode()
    assert classifier_latest() == original
    original.refresh_from_db()
    assert original.active and original.activated_by.username == "admin"
    assert TrainedClassifier.objects.filter(active=True).count() == 1


def test_activate_moves_the_active_flag(agent):
    original = classifier_latest()
    second = classifier_retrain(force=True).challenger
    assert classifier_latest() == second

    classifier_activate(version_id=original.pk, actor=agent)

    assert list(TrainedClassifier.objects.filter(active=True)) == [original]


def test_a_challenger_whose_calibration_cannot_certify_the_target_is_not_promoted(agent):
    active = classifier_latest()
    for text, label in _demo_tickets()[:60]:
        _label(text, label, agent)

    # The demo's examples are 84% right out of fold: no threshold shows 1% with 90% confidence on
    # them (the demo's policy says 5%, so the target is given here as `retrain --target 0.01` would).
    outcome = classifier_retrain(min_holdout=30, target=0.01)

    assert outcome.promoted is False and outcome.challenger_score.threshold is None
    assert outcome.challenger_score.automated == 0 == outcome.active_score.automated
    assert outcome.challenger_score.calibration_tickets > 400  # its out-of-fold examples, money left out
    assert outcome.reason.startswith("the challenger's calibration data cannot certify at most 1.0% wrong")
    assert "cannot show a mishandled rate of at most 1.00%" in outcome.reason
    assert classifier_latest() == active


class _Fixed:
    """A stand-in model: every ticket predicted `label` with `confidence`."""

    def __init__(self, label: str, confidence: float) -> None:
        self.label, self.confidence = label, confidence

    def predict(self, *, texts, embeddings):
        return [
            Prediction(self.label, self.confidence, alternatives=(), out_of_scope=False, nearest_similarity=0.9)
            for _ in texts
        ]


def _held_out(categories: list[str]) -> list[HeldOutLabel]:
    now = timezone.now()
    return [HeldOutLabel(f"ticket {i}", numpy.zeros(4), c, False, now) for i, c in enumerate(categories)]


def test_a_model_is_judged_on_held_out_tickets_under_the_thresholds_its_own_calibration_certifies():
    # 400 calibration tickets, right at 0.97 and above, wrong below: 1% is certified at 0.97
    scores = [0.99] * 300 + [0.97] * 60 + [0.5] * 40
    calibration = CalibrationSet(scores, [True] * 360 + [False] * 40, ["order_status"] * 400, 400, 0)
    at = {"money_labels": set(), "target": 0.01, "confidence": 0.9, "min_per_category": 30}

    sure = classifier_score(
        model=_Fixed("order_status", 0.98), calibration=calibration,
        held_out=_held_out(["order_status"] * 99 + ["account_access"]), **at,
    )  # fmt: skip
    unsure = classifier_score(
        model=_Fixed("order_status", 0.9), calibration=calibration, held_out=_held_out(["order_status"] * 100), **at
    )
    careless = classifier_score(
        model=_Fixed("order_status", 0.98), calibration=calibration,
        held_out=_held_out(["order_status"] * 90 + ["account_access"] * 10), **at,
    )  # fmt: skip

    assert sure.threshold == pytest.approx(0.97)
    assert (sure.judged, sure.automated, sure.wrong, sure.exceeds_target) == (100, 100, 1, False)
    assert (unsure.automated, unsure.wrong) == (0, 0)  # under the certified threshold: a person decides
    # 10 wrong in 100 is evidence, at 90% confidence, of more than 1% wrong: such a challenger is refused
    assert (careless.automated, careless.wrong, careless.exceeds_target) == (100, 10, True)


def test_automation_is_also_counted_on_unlabelled_traffic_under_the_certified_thresholds():
    scores = [0.99] * 300 + [0.97] * 60 + [0.5] * 40
    calibration = CalibrationSet(scores, [True] * 360 + [False] * 40, ["order_status"] * 400, 400, 0)
    traffic = [TrafficTicket(ticket_id=i, text=f"ticket {i}") for i in range(50)]
    at = {
        "money_labels": {"refund_request"}, "target": 0.01, "confidence": 0.9, "min_per_category": 30,
        "held_out": _held_out(["order_status"] * 10), "traffic": traffic, "traffic_embeddings": numpy.zeros((50, 4)),
    }  # fmt: skip

    sure = classifier_score(model=_Fixed("order_status", 0.98), calibration=calibration, **at)
    unsure = classifier_score(model=_Fixed("order_status", 0.9), calibration=calibration, **at)
    money = classifier_score(model=_Fixed("refund_request", 0.99), calibration=calibration, **at)

    assert (sure.traffic, sure.traffic_automated, sure.automated) == (50, 50, 10)
    assert (unsure.traffic, unsure.traffic_automated) == (50, 0)
    assert money.traffic_automated == 0  # money always waits for a person
    assert sure.as_dict()["traffic_automation_rate"] == 1.0


def test_retrain_counts_automation_on_every_ticket_of_the_held_out_period_not_only_the_labelled_ones(agent):
    # given: 240 labelled tickets (the newest 120 held out), then 30 tickets the chain auto-handled,
    # which nobody labels: the held-out labels alone are only the tickets sent to a person
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)
    for i in range(30):
        build_run(body=f"Where is my order {i}? It has not arrived yet.", category="order_status", auto=True)

    # when
    outcome = classifier_retrain(min_holdout=40, target=0.1)

    # then: both models are counted on the 150 tickets of the held-out period, not on the 120 labels
    assert outcome.held_out == 120
    assert outcome.challenger_score.traffic == outcome.active_score.traffic == 150
    comparison = TrainedClassifier.objects.get(pk=outcome.challenger.pk).figures["comparison"]
    assert comparison["challenger"]["traffic"] == 150
    more = outcome.challenger_score.traffic_automated > outcome.active_score.traffic_automated
    assert outcome.promoted is (more and not outcome.challenger_score.exceeds_target)
    assert "tickets since the held-out period began" in outcome.reason


def test_exceeds_target_is_a_one_sided_binomial_test():
    assert exceeds_target(wrong=0, automated=500, target=0.01, confidence=0.9) is False
    assert exceeds_target(wrong=1, automated=100, target=0.01, confidence=0.9) is False  # P(>=1) = 0.63
    assert exceeds_target(wrong=2, automated=100, target=0.01, confidence=0.9) is False  # P(>=2) = 0.26
    assert exceeds_target(wrong=3, automated=100, target=0.01, confidence=0.9) is True  # P(>=3) = 0.079 < 0.1
    assert exceeds_target(wrong=3, automated=100, target=0.01, confidence=0.95) is False  # 0.079 > 0.05
    assert exceeds_target(wrong=0, automated=0, target=0.01, confidence=0.9) is False


def test_retrain_compares_at_the_admins_target_and_confidence(agent):
    """Without a target of its own, retrain holds both models to the gate policy's guarantee."""
    policy = gate_policy_current()
    policy.target_mishandled_rate, policy.guarantee_confidence = 0.1, 0.8
    gate_policy_save(policy=policy, actor=None)
    original = classifier_latest()
    _examples_mislabelled(1)
    classifier_retrain(force=True)
    _examples_mislabelled(-1)
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)

    outcome = classifier_retrain(min_holdout=40)

    comparison = outcome.challenger.figures["comparison"]
    assert (comparison["target_error"], comparison["confidence"]) == (0.1, 0.8)
    assert "at most 10.0% wrong with 80% confidence" in outcome.reason
    # At the admin's 10% the challenger's calibration certifies a threshold, which the 1% default could not.
    assert outcome.challenger_score.threshold is not None and outcome.promoted is True, outcome.reason
    assert original is not None


def test_retrain_calibrates_the_challenger_for_the_admins_share_of_out_of_scope_requests(agent):
    from triage.autonomy import calibration_examples

    policy = gate_policy_current()
    policy.out_of_scope_share = 0.3  # far above the 5% every fit samples for: in-scope examples are left out
    gate_policy_save(policy=policy, actor=None)
    for text, label in _demo_tickets()[:60]:
        _label(text, label, agent)

    outcome = classifier_retrain(min_holdout=30, target=0.01)

    money = set(Category.objects.filter(money=True).values_list("label", flat=True))
    stored = TrainedClassifier.objects.get(pk=outcome.challenger.pk).calibration
    examples = calibration_examples(stored, share=0.3, money_labels=money)
    assert examples.out_of_scope_share == 0.3
    # Judged on the calibration data standing for 30% out of scope, as the active version is, not on all of it.
    assert outcome.challenger_score.calibration_tickets == len(examples)
    assert outcome.challenger_score.calibration_tickets < sum(1 for c in stored["categories"] if c not in money)
    assert outcome.challenger.figures["comparison"]["out_of_scope_share"] == 0.3  # kept with the comparison


def test_a_retrain_with_no_new_label_at_the_same_policy_trains_nothing(agent):
    """Every RQ worker runs the daily retrain: the second on the same labels would store the same challenger."""
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)
    _examples_mislabelled(1)
    first = classifier_retrain(min_holdout=40, target=0.1)
    assert first.challenger is not None and first.promoted is False
    versions = TrainedClassifier.objects.count()

    again = classifier_retrain(min_holdout=40, target=0.1)

    assert again.challenger is None and again.promoted is False
    assert f"no label since challenger #{first.challenger.pk}" in again.reason
    assert first.reason in again.reason
    assert TrainedClassifier.objects.count() == versions
    # Another target is another comparison, and so is a new label.
    assert classifier_retrain(min_holdout=40, target=0.2).challenger is not None
    text, label = _demo_tickets()[240]
    _label(text, label, agent)
    assert classifier_retrain(min_holdout=40, target=0.2).challenger is not None
    assert TrainedClassifier.objects.count() == versions + 2


def test_while_another_process_retrains_a_retrain_trains_nothing(agent):
    for text, label in _demo_tickets()[:240]:
        _label(text, label, agent)
    versions = TrainedClassifier.objects.count()
    other = other_session()
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [RETRAIN_LOCK])

        outcome = classifier_retrain(min_holdout=40, target=0.1)

        assert outcome.challenger is None and outcome.promoted is False
        assert "another retrain is running" in outcome.reason
        assert TrainedClassifier.objects.count() == versions
        other.execute("SELECT pg_advisory_unlock(%s)", [RETRAIN_LOCK])
        assert classifier_retrain(min_holdout=40, target=0.1).challenger is not None
    finally:
        other.close()


def test_retrain_with_nothing_to_learn_from_says_so(db):
    """A fresh install (no example, no label): `manage.py retrain` says what is missing, not a NumPy error."""
    from django.core.management import CommandError, call_command

    LabelledExample.objects.all().delete()
    with pytest.raises(CommandError, match="needs labelled examples of at least two categories"):
        call_command("retrain", "--force")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "2"], "--target must lie between 0.0005 and 0.2, not 2.0"),
        (["--confidence", "1.5"], "--confidence must lie between 0.5 and 0.999, not 1.5"),
        (["--min-holdout", "-3"], "argument --min-holdout: must be at least 1, not -3"),
        (["--min-holdout", "0"], "argument --min-holdout: must be at least 1, not 0"),
    ],
)
def test_retrain_refuses_arguments_admin_would_refuse_before_training_anything(db, args, message):
    """A held-out set of none would compare the challenger on nothing (it trained and judged one before)."""
    from django.core.management import CommandError, call_command

    versions = TrainedClassifier.objects.count()
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("retrain", *args)
    assert TrainedClassifier.objects.count() == versions
