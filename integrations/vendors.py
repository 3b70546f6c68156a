"""The helpdesk vendors: the one list. The connection model's choices, the webhook URLs, the vendor
modules' lookup (`integrations.helpdesks.vendor_module`) and the write-back (`triage.writeback.writer_for`)
read it.

A module of its own, outside `integrations.helpdesks`: the models read it, and the helpdesks package
reads the models, so a registry inside that package would make an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Vendor:
    name: str  # in webhook URLs and `Ticket.source` (`<name>:<connection id>`)
    label: str  # for people (admin)

    @property
    def module_path(self) -> str:
        """The vendor's package: verify, parse, REST client."""
        return f"integrations.helpdesks.{self.name}"


REGISTRY: tuple[Vendor, ...] = (
    Vendor("zendesk", "Zendesk"),
    Vendor("freshdesk", "Freshdesk"),
    Vendor("helpscout", "Help Scout"),
    Vendor("intercom", "Intercom"),
    Vendor("front", "Front"),
    Vendor("chatwoot", "Chatwoot"),
    Vendor("zammad", "Zammad"),
)
BY_NAME: dict[str, Vendor] = {v.name: v for v in REGISTRY}
VENDORS = tuple(BY_NAME)
