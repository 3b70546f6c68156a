"""The write-back side every vendor client shares: turning an action into REST calls, exactly once."""

from __future__ import annotations

from typing import Any, ClassVar

from integrations.helpdesks.base import comparable
from integrations.helpdesks.breaker import breaker_for
from integrations.helpdesks.http import RestClient, WritebackError

PRIORITIES = ("low", "normal", "high", "urgent")

# Set operations: carried out twice, they leave the ticket as carried out once (a tag the ticket has is not
# added again, a priority or status set to what it is changes nothing). A vendor whose call for one of them
# is not such a set names it in `read_back_kinds` and reads the state back in `reconcile_kind`.
IDEMPOTENT_KINDS = frozenset({"set_category", "add_tags", "set_priority", "solve"})
# Decided here, carried out by people in the billing system: nothing is sent to the helpdesk.
RECORDED_KINDS = frozenset({"refund", "cancel_order", "credit"})


class HelpdeskClient:
    """Subclasses implement the vendor's REST calls; `execute` is the same for all of them.

    Replies are the one write that is not naturally idempotent, so before a reply is posted (and before
    every retry of it) the ticket's replies are read back and an identical one counts as posted.
    Tags, priority and status are set operations: repeating them changes nothing.
    """

    vendor: ClassVar[str] = ""
    # Kinds among IDEMPOTENT_KINDS whose call on this vendor's API is not a set, read back instead of repeated.
    read_back_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, base_url: str, api_user: str, api_token: str, source: str = ""):
        """`source` (``<vendor>:<HelpdeskSource id>``) names the circuit breaker every request goes through."""
        self.api_user = api_user
        self.api_token = api_token
        self.http = RestClient(
            base_url=base_url, headers=self.auth_headers(), breaker=breaker_for(source) if source else None
        )

    # --- per vendor ---
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    def replies(self, *, ticket_id: str) -> list[str]:
        raise NotImplementedError

    def post_reply(self, *, ticket_id: str, body: str, requester: str, key: str, before_retry: Any) -> Any:
        raise NotImplementedError

    def add_tags(self, *, ticket_id: str, tags: list[str], key: str) -> Any:
        raise NotImplementedError

    def set_priority(self, *, ticket_id: str, priority: str, key: str) -> Any:
        raise NotImplementedError

    def solve(self, *, ticket_id: str, key: str) -> Any:
        raise NotImplementedError

    def reconcile_kind(self, *, kind: str, ticket_id: str) -> dict[str, Any] | None:
        """For a kind in `read_back_kinds`: what the remote ticket shows of it (a dict), or None when absent."""
        raise NotImplementedError

    # --- shared ---
    def reconcile(self, *, kind: str, payload: dict[str, Any], ticket_id: str) -> dict[str, Any] | None:
        """After an attempt that was made and never recorded (its worker stopped mid-call): did it land?

        A dict: it is on the ticket (recorded as done, nothing sent again). None: it is not, or carrying it
        out again changes nothing, so `execute` is called. Replies are read back; set operations are
        repeated, because repeating them is harmless; money actions were never sent.
        """
        self.http.budget_start()
        if kind == "send_reply":
            body = str(payload.get("body") or "").strip()
            if body and self.reply_posted(ticket_id=ticket_id, body=body):
                return {"vendor": self.vendor, "reply": "already posted", "reconciled": True}
            return None
        if kind in self.read_back_kinds:
            found = self.reconcile_kind(kind=kind, ticket_id=ticket_id)
            return {**found, "reconciled": True} if found is not None else None
        if kind in IDEMPOTENT_KINDS or kind in RECORDED_KINDS:
            return None
        raise ValueError(f"{self.vendor}: no way to reconcile an action of kind {kind!r}")

    def reply_posted(self, *, ticket_id: str, body: str) -> bool:
        wanted = comparable(body)
        return any(comparable(existing) == wanted for existing in self.replies(ticket_id=ticket_id))

    def execute(
        self, *, kind: str, payload: dict[str, Any], ticket_id: str, requester: str, key: str
    ) -> dict[str, Any]:
        """Carry out one action on the remote ticket; returns what happened, for the trace.

        All its requests share one time budget, so a helpdesk that does not answer costs one bounded wait.
        """
        self.http.budget_start()
        note = str(payload.get("note") or "").strip()
        if kind == "send_reply":
            body = str(payload.get("body") or "").strip()
            if not body:
                raise WritebackError("send_reply has no reply body")
            if self.reply_posted(ticket_id=ticket_id, body=body):
                return {"vendor": self.vendor, "reply": "already posted"}

            def already() -> dict[str, Any] | None:
                return (
                    {"vendor": self.vendor, "reply": "already posted"}
                    if self.reply_posted(ticket_id=ticket_id, body=body)
                    else None
                )

            answer = self.post_reply(ticket_id=ticket_id, body=body, requester=requester, key=key, before_retry=already)
            return (
                answer
                if isinstance(answer, dict) and answer.get("reply") == "already posted"
                else {"vendor": self.vendor, "reply": "posted"}
            )
        if kind == "set_category":
            self.add_tags(ticket_id=ticket_id, tags=[f"triage-{note}"] if note else [], key=key)
            return {"vendor": self.vendor, "category": note}
        if kind == "add_tags":
            tags = [t.strip() for t in note.split(",") if t.strip()]
            self.add_tags(ticket_id=ticket_id, tags=tags, key=key)
            return {"vendor": self.vendor, "tags": tags}
        if kind == "set_priority":
            priority = note if note in PRIORITIES else "normal"
            self.set_priority(ticket_id=ticket_id, priority=priority, key=key)
            return {"vendor": self.vendor, "priority": priority}
        if kind == "solve":
            self.solve(ticket_id=ticket_id, key=key)
            return {"vendor": self.vendor, "status": "solved"}
        # Money moves are decided here but carried out by people in the billing system, not the helpdesk.
        return {"vendor": self.vendor, "recorded": True, "kind": kind}
