"""Sign-in throttling on both sign-in pages (django-axes): a run of wrong passwords locks the
username+address pair out, the right password included; under the limit sign-in works; staff unlock."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt, AccessLog
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGINS = [pytest.param("login", id="staff-login"), pytest.param("admin:login", id="admin-login")]


def sign_in(client: Client, url_name: str, username: str, password: str, **extra: str):
    return client.post(reverse(url_name), {"username": username, "password": password, "next": "/"}, **extra)


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # Hundreds of sign-ins: PBKDF2's deliberate slowness is not what these tests measure.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def root(make_user):
    return make_user("root", roles=(), superuser=True)


@pytest.mark.parametrize("url_name", LOGINS)
def test_fifty_wrong_passwords_then_the_right_one_is_still_refused(client, root, url_name, settings):
    for _ in range(50):
        sign_in(client, url_name, "root", "wrong-password")

    response = sign_in(client, url_name, "root", PASSWORD)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Sign-in locked" in page and "1 hour" in page and "Traceback" not in page
    assert Session.objects.count() == 0 and settings.SESSION_COOKIE_NAME not in response.cookies
    assert client.get(reverse("approvals:inbox")).status_code == 302  # still signed out
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address) == ("root", "127.0.0.1")
    # every attempt counts, the right password during the lockout too (and restarts the cool-off)
    assert attempt.failures_since_start == 51
    assert not AccessLog.objects.filter(username="root").exists()  # no successful sign-in was logged


@pytest.mark.parametrize("url_name", LOGINS)
def test_the_lockout_starts_at_the_configured_limit(client, root, url_name, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        response = sign_in(client, url_name, "root", "wrong-password")
        assert response.status_code == 200, f"attempt {attempt + 1} already refused"

    response = sign_in(client, url_name, "root", "wrong-password")

    assert settings.AXES_FAILURE_LIMIT == 5
    assert response.status_code == 429
    assert AccessAttempt.objects.get().failures_since_start == 5


@pytest.mark.parametrize("url_name", LOGINS)
def test_the_right_password_under_the_limit_signs_in_and_clears_the_failures(client, root, url_name):
    for _ in range(4):
        sign_in(client, url_name, "root", "wrong-password")
    assert AccessAttempt.objects.get().failures_since_start == 4

    response = sign_in(client, url_name, "root", PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(root.pk)
    assert AccessAttempt.objects.count() == 0  # AXES_RESET_ON_SUCCESS
    assert AccessLog.objects.filter(username="root").count() == 1


def test_a_lockout_is_per_username_and_address_so_a_stranger_cannot_lock_a_colleague_out(root):
    attacker, colleague = Client(REMOTE_ADDR="203.0.113.9"), Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(10):
        sign_in(attacker, "login", "root", "wrong-password")

    assert sign_in(attacker, "login", "root", PASSWORD).status_code == 429
    assert sign_in(colleague, "login", "root", PASSWORD).status_code == 302


def test_a_forged_forwarded_for_header_does_not_buy_fresh_attempts(client, root):
    for n in range(10):
        sign_in(client, "login", "root", "wrong-password", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    response = sign_in(client, "login", "root", PASSWORD, HTTP_X_FORWARDED_FOR="10.0.0.99")

    assert response.status_code == 429
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["127.0.0.1"]


def test_staff_unlock_with_the_axes_command(client, root):
    for _ in range(6):
        sign_in(client, "login", "root", "wrong-password")
    assert sign_in(client, "login", "root", PASSWORD).status_code == 429

    call_command("axes_reset_username", "root", verbosity=0)

    assert AccessAttempt.objects.count() == 0
    assert sign_in(client, "login", "root", PASSWORD).status_code == 302


def test_staff_unlock_in_admin_by_deleting_the_access_attempt(client, root, make_user):
    locked = Client()
    for _ in range(6):
        sign_in(locked, "login", "root", "wrong-password")
    attempt = AccessAttempt.objects.get()
    admin = Client(REMOTE_ADDR="192.0.2.1")
    admin.force_login(make_user("admin2", roles=(), superuser=True))

    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    response = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})

    assert listing.status_code == 200 and "root" in listing.content.decode()
    assert response.status_code == 302 and AccessAttempt.objects.count() == 0
    assert sign_in(locked, "login", "root", PASSWORD).status_code == 302
