"""Browser tests: the staff app served by pytest-django's live server, driven in Debian's headless
Chromium through Playwright's Python API.

This folder is named to run last: `live_server` is a transactional fixture, so every test here
commits its rows and the database is flushed afterwards, which also removes the demo company the
session loaded for the other tests. Tests here create what they need (`demo_company` reloads the
demo categories, examples, classifier and knowledge base when a flush has taken them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("TRIAGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSWORD = "browser-test-pass-1"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Chromium is missing: `make browsers` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def staff(transactional_db, django_user_model):
    """The demo's roles: `admin` may approve money, `agent` (group Agents) may not."""
    from triage.datasets import dataset_load
    from triage.permissions import agents_group_ensure
    from triage.services import categories_import

    categories_import(
        rows=list(
            dataset_load(Path(__file__).resolve().parents[2] / "triage" / "demo", tickets=False).categories.items()
        )
    )
    agents = agents_group_ensure()
    admin = django_user_model.objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)
    agent = django_user_model.objects.create_user("agent", password=PASSWORD, is_staff=True)
    agent.groups.add(agents)
    return {"admin": admin, "agent": agent}


@pytest.fixture
def sign_in(live_server, staff):
    def _sign_in(page, username: str = "agent", next_path: str = "/") -> None:
        page.goto(f"{live_server.url}{next_path}")
        assert "/accounts/login/" in page.url
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server.url}{next_path}")

    return _sign_in


@pytest.fixture
def demo_company(transactional_db):
    """The demo's categories, examples, trained classifier and knowledge base; reloaded if a flush took them."""
    from triage.datasets import dataset_load
    from triage.models import Chunk, TrainedClassifier
    from triage.services import categories_import, classifier_train, examples_import, knowledge_base_import

    demo = Path(__file__).resolve().parents[2] / "triage" / "demo"
    data = dataset_load(demo)
    if not (TrainedClassifier.objects.exists() and Chunk.objects.exists()):
        categories_import(rows=list(data.categories.items()))
        examples_import(rows=[(e.text, e.label) for e in data.examples])
        classifier_train()
        knowledge_base_import(directory=demo / "kb")
    # The demo company's target, as `manage.py demo` sets it (a flush also resets the gate policy).
    from triage.management.commands.demo import DEMO_TARGET
    from triage.models import GatePolicy

    policy = GatePolicy.get_solo()
    if policy.target_mishandled_rate != DEMO_TARGET:
        policy.target_mishandled_rate = DEMO_TARGET
        policy.save()
    return data


@pytest.fixture
def screenshot():
    """Save what the page shows under docs/ (the README links these)."""

    def _screenshot(page, name: str) -> Path:
        DOCS.mkdir(exist_ok=True)
        path = DOCS / name
        page.screenshot(path=str(path), full_page=False)
        return path

    return _screenshot
