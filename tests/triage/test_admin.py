"""The triage admin: gate and category policies validated and applied to new runs, articles re-embedded,
a run's resolution and who marked a ticket mishandled read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals.services import approval_decide
from triage.models import Article, Category, GatePolicy, PipelineRun, TargetChange
from triage.pipeline.runner import run_pipeline

pytestmark = pytest.mark.django_db

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", roles=(), superuser=True))
    return client


def category_form(category: Category, **changes: object) -> dict[str, object]:
    data = {
        "label": category.label,
        "name": category.name,
        "confidence_threshold": category.confidence_threshold or "",
        "description": category.description,
    }
    if category.money:
        data["money"] = "on"
    if category.auto_reply:
        data["auto_reply"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_threshold_outside_0_to_1_is_refused_with_a_message(admin_client):
    category = Category.objects.get(label="order_status")
    before = category.confidence_threshold

    response = admin_client.post(
        reverse("admin:triage_category_change", args=[category.pk]), category_form(category, confidence_threshold="1.5")
    )

    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 1.0." in response.content.decode()
    assert Category.objects.get(pk=category.pk).confidence_threshold == before


def test_a_gate_policy_with_a_negative_retrieval_score_is_refused(admin_client):
    before = GatePolicy.get_solo().retrieval_min_score

    # One policy (django-solo): the admin edits it in place; there is no "add".
    response = admin_client.post(
        reverse("admin:triage_gatepolicy_change"),
        {
            "retrieval_min_score": "-0.2",
            "groundedness_min_overlap": "0.8",
        },
    )

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0.0." in response.content.decode()
    assert GatePolicy.objects.count() == 1
    assert GatePolicy.get_solo().retrieval_min_score == before


def test_a_category_policy_change_in_admin_applies_to_the_next_run_without_a_restart(admin_client, ingest):
    category = Category.objects.get(label="account_access")
    response = admin_client.post(
        reverse("admin:triage_category_change", args=[category.pk]), category_form(category, auto_reply=None)
    )
    assert response.status_code == 302 and not Category.objects.get(pk=category.pk).auto_reply

    result = ingest(PASSWORD_TICKET, enqueue=False)
    run = run_pipeline(run_id=result.run.pk)

    assert run.status == PipelineRun.Status.WAITING
    assert "category_policy" in run.approval.failed_gates


def test_editing_an_article_in_admin_re_embeds_its_passages(admin_client):
    response = admin_client.post(
        reverse("admin:triage_article_add"),
        {
            "slug": "descaling",
            "title": "Descaling your kettle",
            "body": "Descale every month.\n\n## Vinegar\nUse one part vinegar to two parts water.",
        },
    )
    assert response.status_code == 302
    article = Article.objects.get(slug="descaling")
    assert sorted(article.chunks.values_list("heading", flat=True)) == ["", "Vinegar"]

    admin_client.post(
        reverse("admin:triage_article_change", args=[article.pk]),
        {
            "slug": "descaling-kettles",
            "title": "Descaling your kettle",
            "body": "Descale every two months.\n\n## Citric acid\nUse citric acid, never vinegar.",
        },
    )

    article = Article.objects.get(pk=article.pk)
    assert article.slug == "descaling-kettles" and Article.objects.filter(title="Descaling your kettle").count() == 1
    texts = dict(article.chunks.values_list("heading", "text"))
    assert texts == {"": "Descale every two months.", "Citric acid": "Use citric acid, never vinegar."}
    assert all(len(c.embedding) == 384 for c in article.chunks.all())


def test_a_runs_resolution_is_read_only_in_admin_so_a_post_cannot_change_what_runs(admin_client, agent, paused):
    approval = paused()
    approval_decide(approval_id=approval.pk, actor=agent, verdict="reject", reason="spam")
    run = PipelineRun.objects.get(pk=approval.run_id)
    before = run.resolution
    assert before is not None
    url = reverse("admin:triage_pipelinerun_change", args=[run.pk])

    page = admin_client.get(url).content.decode()
    response = admin_client.post(
        url,
        {
            "resolution": '{"verdict": "approve", "actions": [{"kind": "refund", "amount": "999.00"}]}',
            "steps-TOTAL_FORMS": "0",
            "steps-INITIAL_FORMS": "0",
            "steps-MIN_NUM_FORMS": "0",
            "steps-MAX_NUM_FORMS": "0",
        },
    )

    assert 'name="resolution"' not in page
    assert response.status_code == 302
    assert PipelineRun.objects.get(pk=run.pk).resolution == before


def test_who_marked_a_ticket_mishandled_is_shown_read_only_in_admin(admin_client, agent, auto_handled):
    from triage.services import ticket_mark_mishandled

    ticket = ticket_mark_mishandled(ticket_id=auto_handled().pk, actor=agent)

    page = admin_client.get(reverse("admin:triage_ticket_change", args=[ticket.pk])).content.decode()

    assert "Mishandled by" in page and "agent1" in page and 'name="mishandled_by"' not in page


@pytest.fixture
def one_percent(db):
    """The policy's own default target, which the demo's examples cannot support (the session sets 5%)."""
    GatePolicy.objects.update(target_mishandled_rate=0.01)


def test_the_gate_policy_page_shows_the_risk_coverage_curve_and_why_nothing_is_automated(admin_client, one_percent):
    response = admin_client.get(reverse("admin:triage_gatepolicy_change"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Risk–coverage curve" in page and 'src="data:image/png;base64,' in page
    # The demo's examples cannot show 1% at 90%: the page says so instead of guessing a threshold.
    assert "Not automated: the data cannot support the target" in page
    assert "cannot show a mishandled rate of at most 1.00% with 90% confidence" in page
    assert 'id="autonomy-curve"' in page and "<td>5%</td>" in page
    assert "for traffic in which <strong>5%</strong> of requests are ones no" in page


def test_what_if_previews_a_target_on_the_labelled_history_and_saves_nothing(admin_client, one_percent):
    from triage.autonomy import calibration_set, what_if
    from triage.selectors import classifier_latest

    url = reverse("admin:triage_gatepolicy_what_if")
    response = admin_client.get(
        url, {"target_percent": "5", "confidence_percent": "90", "min_per_category": "30", "overrides_text": ""}
    )

    page = response.content.decode()
    assert response.status_code == 200
    expected = what_if(
        data=calibration_set(classifier=classifier_latest()), target=0.05, confidence=0.9, min_per_category=30,
        overrides={},
    )  # fmt: skip
    assert expected.outcome.accepted > 0  # the demo's data supports 5%, not 1%
    assert f"<td>0 (0%)</td><td>{expected.outcome.accepted} (" in page  # in force (1%) beside proposed
    assert "proposed: 5% at 90%" in page
    assert GatePolicy.get_solo().target_mishandled_rate == 0.01
    assert not TargetChange.objects.exists()


def test_what_if_previews_another_share_of_out_of_scope_requests(admin_client):
    url = reverse("admin:triage_gatepolicy_what_if")
    params = {"target_percent": "5", "confidence_percent": "90", "min_per_category": "30"}

    assumed = admin_client.get(url, params)  # empty share: the policy's (5%)
    none_out = admin_client.get(url, params | {"out_of_scope_percent": "0"})

    # Stating that every request has a category leaves the unseen-category examples out of the calibration
    # data (each a mistake if automated), so the same target automates more; nothing is saved.
    assert assumed.context["proposed_share"] == 0.05 == none_out.context["current_share"]
    assert none_out.context["proposed_share"] == 0.0
    assert none_out.context["proposed"].outcome.tickets < assumed.context["proposed"].outcome.tickets
    assert none_out.context["proposed"].outcome.accepted > assumed.context["proposed"].outcome.accepted
    assert "proposed: 5% at 90%, 0% out of scope" in none_out.content.decode()
    assert GatePolicy.get_solo().out_of_scope_share == 0.05


def test_what_if_with_a_category_kept_with_people_automates_less(admin_client):
    url = reverse("admin:triage_gatepolicy_what_if")
    params = {"target_percent": "5", "confidence_percent": "90", "min_per_category": "30"}

    plain = admin_client.get(url, params).context["proposed"].outcome
    never = admin_client.get(url, params | {"overrides_text": "order_status = never"}).context["proposed"]

    assert never.overridden == {"order_status": None}
    assert never.outcome.accepted < plain.accepted
    assert "order_status = never" in never_page(admin_client, url, params)


def never_page(admin_client, url, params):
    return admin_client.get(url, params | {"overrides_text": "order_status = never"}).content.decode()


def test_what_if_refuses_a_line_it_cannot_read_with_the_line_number(admin_client):
    response = admin_client.get(
        reverse("admin:triage_gatepolicy_what_if"),
        {"target_percent": "1", "confidence_percent": "90", "min_per_category": "30",
         "overrides_text": "order_status = 0.9\nno_such_category = 0.5\norder_status = 2"},
    )  # fmt: skip

    page = response.content.decode()
    assert response.status_code == 200 and "proposed" not in response.context
    assert "line 2: no category &#x27;no_such_category&#x27;" in page
    assert "line 3: &#x27;2&#x27; is not a confidence between 0 and 1 or &#x27;never&#x27;" in page


def test_saving_a_new_target_records_it_for_the_reports(admin_client):
    response = admin_client.post(
        reverse("admin:triage_gatepolicy_change"),
        {
            "retrieval_min_score": "0.35",
            "groundedness_min_overlap": "0.8",
            "target_mishandled_rate": "0.005",
            "guarantee_confidence": "0.95",
            "out_of_scope_share": "0.05",
            "min_labelled_per_category": "30",
        },
    )

    assert response.status_code == 302
    policy = GatePolicy.get_solo()
    assert (policy.target_mishandled_rate, policy.guarantee_confidence) == (0.005, 0.95)
    change = TargetChange.objects.get()
    assert (change.target_mishandled_rate, change.guarantee_confidence) == (0.005, 0.95)
    assert change.changed_by.username == "root"
