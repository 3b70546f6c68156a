"""Hostile ticket text is escaped on every staff page that shows it (inbox, approval, trace)."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

HOSTILE = (
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2"> <b>bold</b> '
    "[click me](javascript:alert(1)) " + "A" * 400 + " \u202eevil\u202c مرحبا بالعالم 🙂👍🏽"
)


def test_hostile_ticket_text_is_escaped_everywhere_it_is_shown(agent_client, paused):
    approval = paused(HOSTILE, subject="<i>subject</i> \u202e")

    for url in (
        reverse("approvals:inbox"),
        reverse("ticket-trace", args=[approval.ticket_id]),
        reverse("approvals:detail", args=[approval.pk]),
    ):
        page = agent_client.get(url).content.decode()
        assert "<script>window.__pwned" not in page and "<img src=x" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
        assert "&lt;i&gt;subject&lt;/i&gt;" in page
        assert 'href="javascript:' not in page
        assert 'class="ticket-body text" dir="auto"' in page
        assert "مرحبا بالعالم 🙂👍🏽" in page
