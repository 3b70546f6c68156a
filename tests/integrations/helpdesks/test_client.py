"""Write-back requests as each vendor documents them: reply, tags, priority and close, checked by the loopback
helpdesk for method, path, exact authentication header and the JSON body's required fields and values
(tests/integrations/helpdesks/documented.py cites the vendor page of each)."""

from __future__ import annotations

import pytest

from integrations.helpdesks import vendor_module
from integrations.vendors import VENDORS
from tests.integrations.helpdesks.documented import BODIES

TICKET = {
    "zendesk": "5158",
    "freshdesk": "1042",
    "helpscout": "2391938111",
    "intercom": "215470211",
    "front": "cnv_55c8c149",
    "chatwoot": "312",
    "zammad": "41",
}
USER = {"zendesk": "agent@example.com", "intercom": "991267460", "front": "tea_2b", "chatwoot": "1"}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    "kind, note", [("send_reply", ""), ("add_tags", "billing, refund"), ("set_priority", "urgent"), ("solve", "")]
)
def test_each_write_back_is_the_documented_request(vendor, kind, note, stub_helpdesk):
    # given: a loopback helpdesk that checks the exact credentials as well as the shape
    stub = stub_helpdesk(vendor)
    user, token = USER.get(vendor, "app-id" if vendor == "helpscout" else ""), "api-token-77"
    if vendor != "helpscout":
        stub.expect(user=user, token=token)
    client = vendor_module(vendor).Client(base_url=stub.base_url, api_user=user, api_token=token)
    payload = {"body": "Your refund is on its way.\nSorry for the wait."} if kind == "send_reply" else {"note": note}

    # when
    result = client.execute(kind=kind, payload=payload, ticket_id=TICKET[vendor], requester="", key="run:1:0")

    # then: nothing the vendor would refuse, and the action reached its endpoint
    assert stub.violations == [], stub.violations
    reached = {k for _, _, _, k in stub.requests}
    if kind == "set_priority":
        # the four vendors whose API sets a priority; the others keep it as a tag (no API field for it)
        if vendor in ("zendesk", "freshdesk", "chatwoot", "zammad"):
            assert "update" in reached and stub.priority[TICKET[vendor]] in ("urgent", "high")
        else:
            assert "priority-urgent" in stub.tags[TICKET[vendor]]
        assert result["priority"] == "urgent"
    elif kind == "send_reply":
        assert len(stub.replies[TICKET[vendor]]) == 1 and "reply" in reached
    elif kind == "add_tags":
        assert {"billing", "refund"} <= set(stub.tags[TICKET[vendor]])
    else:
        assert stub.status[TICKET[vendor]] == "solved"
    writes = [h for m, _, h, k in stub.requests if m != "GET" and k != "token"]
    assert writes and all(h.get("Idempotency-Key", "").startswith("run:1:0") for h in writes)


@pytest.mark.parametrize(
    "vendor, kind, body, problem",
    [
        ("helpscout", "reply", {"text": "<p>Hi</p>"}, "customer"),
        ("intercom", "update", {"priority": "priority"}, "not in the documented body"),
        ("intercom", "reply", {"message_type": "comment", "type": "admin", "body": "x"}, "admin_id"),
        ("zendesk", "reply", {"ticket": {"comment": {"body": "x"}}}, "public"),
        ("freshdesk", "update", {"priority": "high"}, "priority"),
        ("chatwoot", "update", {"priority": "normal"}, "priority"),
        ("zammad", "reply", {"ticket_id": "41", "body": "x", "content_type": "text/plain"}, "ticket_id"),
        ("front", "tags", {"tag_ids": []}, None),
    ],
)
def test_the_checker_refuses_what_the_vendor_refuses(vendor, kind, body, problem):
    problems = BODIES[vendor](kind, body)

    if problem is None:
        assert problems == []  # an empty list of tag ids is a valid (if useless) request
    else:
        assert any(problem in p for p in problems), problems


def test_a_request_with_the_wrong_credentials_is_answered_401_and_recorded(stub_helpdesk):
    from integrations.helpdesks.http import WritebackError

    stub = stub_helpdesk("zammad")
    stub.expect(token="right")
    client = vendor_module("zammad").Client(base_url=stub.base_url, api_user="", api_token="wrong")

    with pytest.raises(WritebackError) as failed:
        client.execute(kind="solve", payload={}, ticket_id="41", requester="", key="k")

    assert failed.value.status == 401 and stub.violations
