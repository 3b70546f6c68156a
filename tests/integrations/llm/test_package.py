"""The provider protocol layer stays below the domain: imports run `triage` -> `integrations`, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import integrations.llm


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_provider_module_imports_the_triage_domain():
    package = Path(integrations.llm.__file__).parent

    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m == "triage" or m.startswith(("triage.", "approvals")))
        for path in sorted(package.glob("*.py"))
    }

    assert {name: mods for name, mods in offenders.items() if mods} == {}
