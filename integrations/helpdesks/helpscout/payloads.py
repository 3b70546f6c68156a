"""Help Scout webhook bodies (https://developer.helpscout.com/webhooks/): the event is the
``X-HelpScout-Event`` header; for ``convo.created`` the body is the Mailbox API 2.0 Conversation object
(https://developer.helpscout.com/mailbox-api/endpoints/conversations/get/), its threads under
``_embedded.threads`` (https://developer.helpscout.com/mailbox-api/endpoints/conversations/threads/list/).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from integrations.helpdesks.base import Email, Id, Tags, Text, VendorPayload, loose_object

CREATED = "convo.created"


class Person(VendorPayload):
    email: Email = ""


class Creator(VendorPayload):
    """``createdBy``: a customer or a user (agent); only a customer is the requester."""

    type: Text = ""
    email: Email = ""


class Thread(VendorPayload):
    type: Text = ""
    body: Text = ""
    customer: Annotated[Person | None, BeforeValidator(loose_object)] = None


class Embedded(VendorPayload):
    threads: list[Thread] = []


class Conversation(VendorPayload):
    """The v2 Conversation object sent with ``convo.created``."""

    id: Id
    subject: Text = ""
    preview: Text = ""
    primary_customer: Annotated[Person | None, BeforeValidator(loose_object)] = Field(
        default=None, alias="primaryCustomer"
    )
    customer: Annotated[Person | None, BeforeValidator(loose_object)] = None  # Mailbox API 1.0 name
    created_by: Annotated[Creator | None, BeforeValidator(loose_object)] = Field(default=None, alias="createdBy")
    tags: Tags = []
    embedded: Annotated[Embedded | None, BeforeValidator(loose_object)] = Field(default=None, alias="_embedded")

    @property
    def customer_text(self) -> str:
        """The customer's message: the first customer thread with a body, else Help Scout's preview of it."""
        threads = self.embedded.threads if self.embedded else []
        customer = [t.body for t in threads if t.type == "customer" and t.body.strip()]
        return customer[-1] if customer else self.preview

    @property
    def requester(self) -> str:
        """The primary customer's e-mail; Help Scout may send that customer as an id only (its own SDK's
        webhook test does), so then the customer who created the conversation, else a customer thread's."""
        for person in (self.primary_customer, self.customer):
            if person and person.email:
                return person.email
        if self.created_by and self.created_by.type == "customer" and self.created_by.email:
            return self.created_by.email
        threads = self.embedded.threads if self.embedded else []
        return next((t.customer.email for t in threads if t.type == "customer" and t.customer and t.customer.email), "")
