"""The router finds providers through settings: the domain imports the protocol, never a concrete provider."""

from __future__ import annotations

import ast
from pathlib import Path

import triage
from integrations.llm.local import LocalProvider
from triage.pipeline.router import boilerplate_lines

CONCRETE_PROVIDERS = ("integrations.llm.anthropic", "integrations.llm.local")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_domain_module_imports_a_concrete_provider():
    root = Path(triage.__file__).parent

    offenders = {
        str(path.relative_to(root)): sorted(m for m in imported_modules(path) if m.startswith(CONCRETE_PROVIDERS))
        for path in sorted(root.rglob("*.py"))
    }

    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_gate_exempts_the_template_lines_of_the_configured_providers(settings):
    settings.TRIAGE_PROVIDERS = {"local": "integrations.llm.local.LocalProvider",
                                 "anthropic": "integrations.llm.anthropic.AnthropicProvider"}

    assert boilerplate_lines() == LocalProvider.boilerplate  # Claude writes no template lines

    settings.TRIAGE_PROVIDERS = {"anthropic": "integrations.llm.anthropic.AnthropicProvider"}
    assert boilerplate_lines() == ()
