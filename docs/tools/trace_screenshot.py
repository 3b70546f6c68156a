"""Screenshot a run's trace in Arize Phoenix, a tracing UI that receives OTLP/HTTP (how docs/trace-phoenix.png
was made).

1. `pip install arize-phoenix` (anywhere but the project's environment), then
   `PHOENIX_PORT=16006 PHOENIX_TELEMETRY_ENABLED=false python -m phoenix.server.main serve`;
2. `TRIAGE_TRACE_FORWARD=http://127.0.0.1:16006 uv run pytest tests/config/test_telemetry.py -k one_ticket`
   (the test forwards the export requests its receiver got, byte for byte, to Phoenix);
3. `uv run python docs/tools/trace_screenshot.py http://127.0.0.1:16006 docs/trace-phoenix.png`
   (Playwright with Debian's chromium, as tests/zz_browser does).
"""

from __future__ import annotations

import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium")


def main(base: str, out: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/projects", wait_until="networkidle")
        page.get_by_text("default", exact=True).first.click()
        page.wait_for_load_state("networkidle")
        page.get_by_text("run", exact=True).first.click()
        page.wait_for_load_state("networkidle")
        # Select the model call in the tree; the right-hand pane shows the run span's attributes.
        page.get_by_text("anthropic.messages.create", exact=True).first.click()
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(4000)
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
