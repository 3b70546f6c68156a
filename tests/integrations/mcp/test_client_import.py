"""The MCP SDK is loaded when a tool is first listed or called, and `scipy.optimize` when a classifier is
fitted, not when a process starts.

Every web, worker and `manage.py` process imports the client through the chain's execute step; the SDK
(with its HTTP client) cost 1.2-1.6 s of each start (module docstring of `integrations.mcp.client`). A fresh
interpreter is the only place where "not imported yet" can be checked: this one has imported it already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
import django
django.setup()
import integrations.mcp.registry, triage.pipeline.runner, triage.services, triage.tools
loaded = sorted(name for name in ("mcp", "mcp_types", "httpx2", "anyio", "scipy.optimize") if name in sys.modules)
print(json.dumps(loaded))
"""


def test_starting_a_process_and_loading_the_chain_imports_neither_the_mcp_sdk_nor_scipy_optimize():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEV_MODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
