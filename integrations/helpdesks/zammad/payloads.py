"""Zammad trigger webhook bodies, as Zammad's code builds them (github.com/zammad/zammad):

- ``app/jobs/trigger_webhook_job.rb`` ``default_payload``: ``{ticket: RecordPayload.generate(ticket),
  article: RecordPayload.generate(article)}``; headers ``X-Zammad-Trigger`` (the trigger's name) and
  ``X-Zammad-Delivery`` (the job id, the same on each of the five retries ``retry_on`` makes).
- ``app/jobs/trigger_webhook_job/record_payload.rb``: ``return {} if record.blank?`` -- a trigger that
  fires without an article (a time event, an update without a new article) sends ``"article": {}``.
- ``record_payload/base.rb``: the record's attributes with association names, and the associations listed
  in ``record_payload/ticket.rb`` (``customer`` with its ``email``, ``owner``, ``group``, ``priority``, ...)
  resolved to objects.

Documented example: https://admin-docs.zammad.org/en/latest/manage/webhook/payload.html.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from integrations.helpdesks.base import Email, Id, OptionalId, RequiredText, Tags, Text, VendorPayload, loose_object


class TriggerEnvelope(VendorPayload):
    """Enough to tell a trigger with an article from one without (``"article": {}``)."""

    article: dict[str, object]


class User(VendorPayload):
    email: Email = ""


class Ticket(VendorPayload):
    id: Id
    title: Text = ""
    customer: Annotated[User | None, BeforeValidator(loose_object)] = None
    tags: Tags = []


class Article(VendorPayload):
    id: OptionalId = ""
    body: RequiredText
    content_type: Text = "text/html"
    sender: Text = ""
    internal: bool = False


class TriggerWithArticle(VendorPayload):
    """The default payload of a trigger that fired with an article."""

    ticket: Ticket
    article: Article
