"""Helpdesk vendors: one module each (verify, parse, REST client). Found by name, never imported by domain code."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

VENDORS = ("zendesk", "freshdesk", "helpscout", "intercom", "front", "chatwoot", "zammad")


def vendor_module(vendor: str) -> ModuleType:
    if vendor not in VENDORS:
        raise LookupError(f"unknown helpdesk vendor {vendor!r}")
    return import_module(f"integrations.helpdesks.{vendor}")
