"""The settings' defaults are production-safe; DJANGO_DEV_MODE=1 is the one switch for running locally.

Each case imports the settings in a fresh interpreter with its own environment (the test session
itself runs in dev mode, set by pyproject.toml's pytest `env`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY = "k3y-for-the-settings-test-" + "x" * 40
# An external database URL keeps the embedded PostgreSQL out of it: nothing here connects.
BASE_ENV = {"DATABASE_URL": "postgres://nobody@127.0.0.1:9/none", "DJANGO_SETTINGS_MODULE": "config.settings"}
READ = """
import json
from django.conf import settings
names = ["DEBUG", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
         "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECRET_KEY",
         "AXES_FAILURE_LIMIT", "TRIAGE_WEBHOOK_MAX_BYTES", "TRIAGE_DRAFT_PROVIDERS"]
print(json.dumps({n: getattr(settings, n) for n in names}))
"""


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TRIAGE_"))}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **BASE_ENV, **env}, capture_output=True, text=True, timeout=120
    )


def read_settings(**env: str) -> dict[str, object]:
    result = run(["-c", READ], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_is_the_default_debug_off_secure_cookies_hsts_and_https():
    s = read_settings(DJANGO_SECRET_KEY=KEY)

    assert s["DEBUG"] is False and s["ALLOWED_HOSTS"] == []
    assert s["SESSION_COOKIE_SECURE"] is True and s["CSRF_COOKIE_SECURE"] is True and s["SECURE_SSL_REDIRECT"] is True
    assert (s["SECURE_HSTS_SECONDS"], s["SECURE_HSTS_INCLUDE_SUBDOMAINS"], s["SECURE_HSTS_PRELOAD"]) == (
        31536000,
        True,
        False,
    )
    assert s["SECRET_KEY"] == KEY and s["AXES_FAILURE_LIMIT"] == 5


def test_a_secret_key_starting_with_a_dollar_is_taken_as_it_is():
    assert read_settings(DJANGO_SECRET_KEY="$" + KEY)["SECRET_KEY"] == "$" + KEY


def test_without_a_secret_key_production_refuses_to_start_and_names_it():
    result = run(["-c", READ])

    assert result.returncode == 1
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr


def test_dev_mode_switches_on_debug_the_development_key_and_localhost():
    s = read_settings(DJANGO_DEV_MODE="1")

    assert s["DEBUG"] is True and s["SECRET_KEY"].startswith("insecure-local-development-key")
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "testserver"]
    assert s["SESSION_COOKIE_SECURE"] is False and s["SECURE_SSL_REDIRECT"] is False and s["SECURE_HSTS_SECONDS"] == 0


def test_the_variables_that_existed_before_keep_working():
    s = read_settings(
        DJANGO_SECRET_KEY=KEY,
        DJANGO_DEBUG="1",
        DJANGO_ALLOWED_HOSTS=" triage.example.com, ops.example.com ",
        DJANGO_SECURE_COOKIES="0",
        TRIAGE_WEBHOOK_MAX_BYTES="2048",
        TRIAGE_DRAFT_PROVIDERS="anthropic,local",
        TRIAGE_LOGIN_FAILURE_LIMIT="3",
    )

    assert s["DEBUG"] is True and s["ALLOWED_HOSTS"] == ["triage.example.com", "ops.example.com"]
    assert s["SESSION_COOKIE_SECURE"] is False and s["TRIAGE_WEBHOOK_MAX_BYTES"] == 2048
    assert s["TRIAGE_DRAFT_PROVIDERS"] == ["anthropic", "local"] and s["AXES_FAILURE_LIMIT"] == 3


def test_a_mistyped_boolean_stops_start_up_instead_of_meaning_off():
    result = run(["-c", READ], DJANGO_SECRET_KEY=KEY, DJANGO_SECURE_COOKIES="flase")

    assert result.returncode == 1
    assert "DJANGO_SECURE_COOKIES must be a boolean (1/0, true/false), got 'flase'" in result.stderr


def test_the_deploy_check_passes_for_a_configured_production():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=KEY,
        DJANGO_ALLOWED_HOSTS="triage.example.com",
        DJANGO_HSTS_PRELOAD="1",
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
