"""The inbox list: ordering, filters with their counts, pagination, htmx partials, a flat query count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.selectors import InboxFilters, approval_inbox, inbox_counts
from approvals.views import PAGE_SIZE
from triage.contracts import Priority
from triage.models import Category

pytestmark = pytest.mark.django_db


def card_ids(html: str) -> list[int]:
    return [int(part.split('"')[0]) for part in html.split('data-approval-id="')[1:]]


def test_each_item_shows_the_ticket_proposal_draft_failed_gates_and_cited_passages(agent_client, paused):
    paused("Where is order TW-1001?", subject="Late order")

    page = agent_client.get(reverse("approvals:inbox")).content.decode()

    assert "Where is order TW-1001?" in page and "Late order" in page
    assert "order_status" in page and "<code>send_reply</code>" in page
    assert "Thanks for writing about your order status" in page
    assert "Confidence" in page and "below the category&#x27;s threshold 0.70" in page
    assert "1 passage the draft cites" in page and "Returns policy part 0" in page
    assert "Returns policy part 1" not in page  # retrieved but not cited


def test_the_most_urgent_come_first_then_the_newest(agent_client, paused):
    old_urgent = paused(priority=Priority.URGENT, age=timedelta(hours=5))
    new_normal = paused()
    old_normal = paused(age=timedelta(hours=3))
    high = paused(priority=Priority.HIGH, age=timedelta(hours=4))

    urgent_first = card_ids(agent_client.get(reverse("approvals:inbox")).content.decode())
    newest_first = card_ids(agent_client.get(reverse("approvals:inbox") + "?sort=newest").content.decode())

    assert urgent_first == [old_urgent.pk, high.pk, new_normal.pk, old_normal.pk]
    assert newest_first == [new_normal.pk, old_normal.pk, high.pk, old_urgent.pk]


def test_filters_narrow_the_list_and_each_option_shows_its_count(agent_client, paused):
    money = paused("Refund me", money=True)
    confidence = paused(age=timedelta(days=2))
    both = paused("Refund me, not sure which", money=True, failed_gates=("money", "confidence"))

    by_gate = card_ids(agent_client.get(reverse("approvals:inbox") + "?gate=confidence").content.decode())
    by_money = card_ids(agent_client.get(reverse("approvals:inbox") + "?money=yes&gate=confidence").content.decode())
    by_age = card_ids(agent_client.get(reverse("approvals:inbox") + "?age=older").content.decode())
    by_category = card_ids(agent_client.get(reverse("approvals:inbox") + "?category=refund_request").content.decode())

    assert set(by_gate) == {confidence.pk, both.pk}
    assert by_money == [both.pk]
    assert by_age == [confidence.pk]
    assert set(by_category) == {money.pk, both.pk}


def test_counts_per_option_follow_the_other_filters():
    now = timezone.now()
    categories = list(Category.objects.all())

    from tests.factories import build_run

    build_run(body="a", category="refund_request", money=True)
    build_run(body="b", category="order_status")
    build_run(body="c", category="refund_request", money=True, failed_gates=("money", "confidence"))

    counts = inbox_counts(filters=InboxFilters(money="yes"), now=now, categories=categories)

    gates = {o.value: o.count for o in counts.gates}
    money = {o.value: o.count for o in counts.money}
    assert gates == {"money": 2, "confidence": 1}  # among money items
    assert money == {"yes": 2, "no": 1}  # the money facet ignores its own filter
    assert counts.pending_total == 3
    assert next(o for o in counts.money if o.value == "yes").selected


def test_an_unknown_filter_value_is_ignored_not_an_error(agent_client, paused):
    paused()

    response = agent_client.get(reverse("approvals:inbox") + "?gate=<script>&money=maybe&page=abc&sort=sideways")

    assert response.status_code == 200 and len(card_ids(response.content.decode())) == 1


def test_the_list_is_paginated_and_pages_keep_the_filters(agent_client, paused):
    for _ in range(PAGE_SIZE + 3):
        paused()

    first = agent_client.get(reverse("approvals:inbox") + "?gate=confidence").content.decode()
    second = agent_client.get(reverse("approvals:inbox") + "?gate=confidence&page=2").content.decode()

    assert len(card_ids(first)) == PAGE_SIZE and len(card_ids(second)) == 3
    assert 'href="/?gate=confidence&amp;page=2"' in first
    assert not set(card_ids(first)) & set(card_ids(second))


def test_an_htmx_filter_request_renders_only_the_inbox_partial(agent_client, paused):
    paused()

    response = agent_client.get(reverse("approvals:inbox") + "?money=no", headers={"HX-Request": "true"})
    restore = agent_client.get(
        reverse("approvals:inbox"), headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    body = response.content.decode()
    assert body.lstrip().startswith('<div id="inbox-main"') and "<html" not in body
    assert "HX-Request" in response["Vary"]
    assert "<html" in restore.content.decode()


def test_every_inbox_link_and_form_works_without_javascript(agent_client, paused):
    paused()

    page = agent_client.get(reverse("approvals:inbox")).content.decode()

    assert "hx-get=" in page and page.count("hx-get=") <= page.count("href=")
    assert page.count('hx-post="') == page.count('<form method="post" action="/approvals/')
    assert 'hx-headers=\'{"X-CSRFToken": "' in page


def _inbox_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("approvals:inbox"))
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_the_inbox_query_count_stays_flat_as_the_inbox_grows(agent_client, paused):
    for _ in range(5):
        paused(money=True)
    small = _inbox_queries(agent_client)
    for _ in range(45):
        paused()

    large = _inbox_queries(agent_client)

    assert large == small
    assert large <= 10


def test_the_inbox_selector_prefetches_the_evidence_in_one_query(paused):
    for _ in range(5):
        paused()

    with CaptureQueriesContext(connection) as ctx:
        rows = list(approval_inbox(filters=InboxFilters(), now=timezone.now()))
        _ = [r.run.evidence_steps for r in rows] + [r.ticket.body for r in rows]

    assert len(rows) == 5 and len(ctx.captured_queries) == 2
