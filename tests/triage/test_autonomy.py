"""Calibrated autonomy's read side: calibration data from the classifier and the inbox, the thresholds in
force, and the target beside what staff measured."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.services import approval_decide
from tests.factories import build_run
from triage.autonomy import calibration_set, target_history, thresholds_current, thresholds_forget
from triage.models import GatePolicy, PipelineRun, TargetChange, Ticket, TrainedClassifier
from triage.selectors import classifier_latest

pytestmark = pytest.mark.django_db


@pytest.fixture
def test_classifier(db):
    """A classifier row named as the factories' runs are, so their classify steps count as its answers."""
    return TrainedClassifier.objects.create(
        model="local-classifier/test",
        blob=b"",
        labels=["order_status", "account_access", "refund_request"],
        example_count=3,
        suggested_threshold=1.0,
        calibration={
            "scores": [0.99, 0.95, 0.5, 0.97],
            "correct": [True, True, False, True],
            "categories": ["order_status", "account_access", "order_status", "refund_request"],
        },
    )


def test_inbox_decisions_become_labels_beside_the_out_of_fold_examples(test_classifier, money_agent):
    # given: approved as proposed (right), category edited (wrong), rejected (no label), marked (wrong)
    _, _, approved = build_run(body="Where is my parcel?", category="order_status", confidence=0.91)
    _, _, edited = build_run(body="Where is my parcel, and my login?", category="order_status", confidence=0.88)
    _, _, rejected = build_run(body="Spam spam", category="order_status", confidence=0.7)
    marked, _, _ = build_run(body="Reset my password", category="account_access", auto=True, confidence=0.99)
    build_run(body="Another password question", category="account_access", auto=True, confidence=0.98)  # silent
    build_run(body="Refund me", category="refund_request", money=True, confidence=0.9)  # money: never decided
    approval_decide(approval_id=approved.pk, actor=money_agent, verdict="approve")
    approval_decide(approval_id=edited.pk, actor=money_agent, verdict="edit", category="account_access")
    approval_decide(approval_id=rejected.pk, actor=money_agent, verdict="reject", reason="spam")
    Ticket.objects.filter(pk=marked.pk).update(mishandled_at=timezone.now())

    # when
    data = calibration_set(classifier=test_classifier)

    # then: the money category's example is left out; three inbox labels follow the three examples
    assert (data.from_examples, data.from_inbox) == (3, 3)
    inbox = sorted(zip(data.scores[3:], data.correct[3:], data.categories[3:], strict=True))
    assert inbox == [(0.88, False, "order_status"), (0.91, True, "order_status"), (0.99, False, "account_access")]


def test_runs_of_an_older_classifier_are_not_its_successors_calibration(money_agent):
    _, _, approved = build_run(body="Where is my parcel?", category="order_status", confidence=0.91)
    approval_decide(approval_id=approved.pk, actor=money_agent, verdict="approve")
    newer = TrainedClassifier.objects.create(
        model="local-classifier/test", blob=b"", labels=[], example_count=0, suggested_threshold=1.0,
        calibration={"scores": [], "correct": [], "categories": []},
    )  # fmt: skip

    assert calibration_set(classifier=newer).from_inbox == 0


def test_thresholds_are_kept_between_labels_until_forgotten_then_chosen_from_the_new_labels(
    test_classifier, money_agent
):
    # given: the thresholds in force, then one more inbox label
    policy = GatePolicy.get_solo()
    thresholds_forget()
    before = thresholds_current(classifier=test_classifier, policy=policy)
    _, _, approval = build_run(body="Where is my parcel?", category="order_status", confidence=0.91)
    approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")

    # when: asked again within the time-to-live, and again after thresholds_forget
    kept = thresholds_current(classifier=test_classifier, policy=policy)
    thresholds_forget()
    after = thresholds_current(classifier=test_classifier, policy=policy)

    # then: the cached choice stands until forgotten; the next one counts the new label
    assert before is not None and after is not None
    assert kept is before
    assert after.calibration_tickets == before.calibration_tickets + 1


def test_the_demo_classifier_cannot_guarantee_one_percent_so_every_category_is_refused():
    # The demo company: 628 examples, 84% right out of fold. Zero mistakes would need 230 tickets a
    # group, and its mistakes are many: no threshold shows 1% at 90%; 5% it can.
    policy = GatePolicy.get_solo()
    policy.target_mishandled_rate = 0.01
    strict = thresholds_current(classifier=classifier_latest(), policy=policy)
    policy.target_mishandled_rate = 0.05
    loose = thresholds_current(classifier=classifier_latest(), policy=policy)

    assert strict is not None and loose is not None
    assert strict.threshold is None and strict.accepted == 0
    assert strict.refusal_for("order_status").startswith("the pooled categories: ")
    assert "cannot show a mishandled rate of at most 1% with 90% confidence" in strict.reason.replace(".00%", "%")
    assert loose.threshold is not None and loose.accepted > 0
    assert loose.errors / loose.accepted <= 0.05


def test_the_target_in_force_each_week_beside_what_staff_marked(test_classifier):
    now = timezone.now()
    TargetChange.objects.create(
        target_mishandled_rate=0.02, guarantee_confidence=0.9, changed_at=now - timedelta(weeks=3)
    )
    TargetChange.objects.create(
        target_mishandled_rate=0.005, guarantee_confidence=0.9, changed_at=now - timedelta(days=1)
    )
    first, _, _ = build_run(body="a", category="account_access", auto=True)
    build_run(body="b", category="account_access", auto=True)
    build_run(body="c", category="order_status")  # to a person: not auto-handled
    Ticket.objects.filter(pk=first.pk).update(mishandled_at=now)

    weeks = target_history(runs=PipelineRun.objects.filter(ticket__source="test"), weeks=6, now=now)

    assert len(weeks) == 6
    assert [w.target for w in weeks[:2]] == [0.01, 0.01]  # before any change: the field's default
    assert weeks[-1].target == 0.005
    assert (weeks[-1].auto_handled, weeks[-1].mishandled, weeks[-1].measured) == (2, 1, 0.5)
    assert weeks[0].measured is None


def test_the_out_of_scope_share_people_measure_in_the_inbox_replaces_a_lower_assumed_one(money_agent, monkeypatch):
    # given: a classifier whose calibration holds 95 in-scope examples (all right) and the 5 sampled
    # unseen-category examples (all passed the filter, all wrong): it stands for traffic 5% out of scope
    monkeypatch.setattr("triage.autonomy.MIN_INBOX_FOR_SHARE", 10)
    classifier = TrainedClassifier.objects.create(
        model="local-classifier/test", blob=b"", labels=["order_status"], example_count=100, suggested_threshold=1.0,
        calibration={
            "scores": [0.9] * 100, "correct": [True] * 95 + [False] * 5, "categories": ["order_status"] * 100,
            "out_of_scope_sampled": 5, "out_of_scope_in_calibration": 5,
        },
    )  # fmt: skip
    decided = []
    for i in range(9):
        _, _, approval = build_run(body=f"Where is parcel {i}?", category="order_status", confidence=0.8)
        decided.append(approval)
    for approval in decided[:3]:
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="reject", reason="no category fits")
    for approval in decided[3:]:
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")

    # when: fewer decisions than the minimum, the assumption stands
    few = calibration_set(classifier=classifier)
    # when: a tenth decision (approved) makes the measured share 3 in 10
    _, _, tenth = build_run(body="Where is parcel 10?", category="order_status", confidence=0.8)
    approval_decide(approval_id=tenth.pk, actor=money_agent, verdict="approve")
    enough = calibration_set(classifier=classifier)

    # then: all 100 examples at 5%; then 30%: 5 unseen-category examples beside 12 in-scope ones
    # (5 * 0.7 / 0.3 = 11.7), and the rejected tickets themselves are no label
    assert few.out_of_scope_share == pytest.approx(0.05) and (few.from_examples, few.from_inbox) == (100, 6)
    assert enough.out_of_scope_share == pytest.approx(0.3)
    assert (enough.from_examples, enough.from_inbox) == (17, 7)
    assert enough.correct[:17].count(False) == 5
    # the retrain comparison leaves held-out tickets out of the share as well as out of the labels
    rejected_tickets = frozenset(a.run.ticket_id for a in decided[:3])
    assert calibration_set(classifier=classifier, exclude_tickets=rejected_tickets).out_of_scope_share == 0.05


def _stored(*, in_scope: int, sampled: int, passed: int) -> dict:
    """Calibration kept as `IntentClassifier.fit` keeps it: the in-scope rows (right, at 0.99), then the
    unseen-category rows the similarity filter let through (wrong, at 0.99), of `sampled` scored."""
    return {
        "scores": [0.99] * (in_scope + passed),
        "correct": [True] * in_scope + [False] * passed,
        "categories": ["order_status"] * (in_scope + passed),
        "out_of_scope_sampled": sampled,
        "out_of_scope_in_calibration": passed,
    }


@pytest.mark.parametrize(
    ("share", "kept_in_scope", "kept_unseen"),
    [
        (0.05, 95, 5),  # the share the fit drew its sample for: nothing left out
        (0.0, 95, 0),  # the admin states every request has a category
        (0.02, 95, 2),  # 95 * 0.02 / 0.98 = 1.9 of 5
        (0.3, 12, 5),  # 5 * 0.7 / 0.3 = 11.7 in-scope rows
        (1.0, 0, 5),  # the inbox measured every decided ticket out of scope: no in-scope row stands
    ],
)
def test_the_example_part_stands_for_the_share_of_out_of_scope_requests_asked_for(share, kept_in_scope, kept_unseen):
    from triage.autonomy import calibration_examples

    examples = calibration_examples(_stored(in_scope=95, sampled=5, passed=5), share=share, money_labels=set())

    assert examples.out_of_scope_share == share
    assert examples.correct.count(True) == kept_in_scope
    assert examples.correct.count(False) == kept_unseen
    assert examples.from_examples == len(examples) and examples.from_inbox == 0


def test_a_lower_share_thins_the_whole_sample_so_those_the_filter_caught_count_too():
    from triage.autonomy import calibration_examples

    # 10 unseen-category examples scored for 190 in scope (5%), 4 of them let through by the filter. Half
    # the share is half the sample: 5 of the 10, of which the filter lets through 2 (4 * 4.87 / 10 = 1.9).
    examples = calibration_examples(_stored(in_scope=190, sampled=10, passed=4), share=0.025, money_labels=set())

    assert examples.correct.count(False) == 2 and len(examples) == 192
    # The same data gives the same rows (a seeded subset), and a classifier with no unseen-category
    # examples is left as it is, standing for no share; money-moving categories are left out either way.
    assert (
        calibration_examples(_stored(in_scope=190, sampled=10, passed=4), share=0.025, money_labels=set()) == examples
    )
    plain = {"scores": [0.9, 0.8], "correct": [True, False], "categories": ["a", "refund"]}
    unthinned = calibration_examples(plain, share=0.3, money_labels={"refund"})
    assert (unthinned.scores, unthinned.correct, unthinned.categories) == ([0.9], [True], ["a"])
    assert unthinned.out_of_scope_share is None


def test_the_admins_share_chooses_the_thresholds_and_a_change_takes_effect_at_once(db):
    # given: 95 right in-scope examples and 5 wrong unseen-category ones, all at 0.99
    classifier = TrainedClassifier.objects.create(
        model="local-classifier/test", blob=b"", labels=["order_status"], example_count=95, suggested_threshold=1.0,
        calibration=_stored(in_scope=95, sampled=5, passed=5),
    )  # fmt: skip
    policy = GatePolicy.get_solo()
    policy.target_mishandled_rate = 0.05
    policy.save()

    # when: 5% of requests out of scope (the default), then none
    assumed = thresholds_current(classifier=classifier, policy=policy)
    policy.out_of_scope_share = 0.0
    policy.save()
    none_out = thresholds_current(classifier=classifier, policy=policy)

    # then: 5 wrong of 100 cannot show 5% at 90%; 0 wrong of 95 can, and the change needed no forgetting
    assert assumed is not None and assumed.threshold is None
    assert none_out is not None and none_out.threshold == 0.99 and none_out.accepted == 95
    assert calibration_set(classifier=classifier).out_of_scope_share == 0.0


def test_people_measuring_more_out_of_scope_than_the_admin_states_wins_but_never_less(money_agent, monkeypatch):
    monkeypatch.setattr("triage.autonomy.MIN_INBOX_FOR_SHARE", 4)
    classifier = TrainedClassifier.objects.create(
        model="local-classifier/test", blob=b"", labels=["order_status"], example_count=95, suggested_threshold=1.0,
        calibration=_stored(in_scope=95, sampled=5, passed=5),
    )  # fmt: skip
    GatePolicy.objects.update(out_of_scope_share=0.1)
    approvals = [build_run(body=f"Parcel {i}?", category="order_status", confidence=0.8)[2] for i in range(4)]
    for approval in approvals:  # none rejected: the inbox measures 0%
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")

    assert calibration_set(classifier=classifier).out_of_scope_share == 0.1  # the admin's, not the 0% measured
    assert calibration_set(classifier=classifier, out_of_scope_share=0.0).out_of_scope_share == 0.0
