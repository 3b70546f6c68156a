"""Helpdesk vendors: one module each (verify, parse, REST client). Found by name, never imported by domain code.

Which vendors there are is `integrations.vendors.REGISTRY`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from integrations.vendors import BY_NAME, VENDORS

__all__ = ["VENDORS", "vendor_module"]


def vendor_module(vendor: str) -> ModuleType:
    if vendor not in BY_NAME:
        raise LookupError(f"unknown helpdesk vendor {vendor!r}")
    return import_module(BY_NAME[vendor].module_path)
