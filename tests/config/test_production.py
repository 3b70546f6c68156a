"""The production path, as docs/DEPLOY.md tells an operator to run it: production settings (no dev mode), a
database by URL, `check --deploy`, `migrate`, the first admin, `collectstatic`, then gunicorn with
config/gunicorn.py behind a TLS-terminating proxy (X-Forwarded-Proto). Uses a database of its own on the
embedded PostgreSQL server, reached by URL exactly as an external one would be."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from config.embedded_postgres import embedded_server_uri

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "triage_production_smoke"
PASSWORD = "first-admin-" + secrets.token_hex(8)

pytestmark = pytest.mark.skipif(
    bool(settings.DATABASE_URL), reason="builds its own database on the embedded server (DATABASE_URL is set)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database_url() -> Iterator[str]:
    admin = embedded_server_uri(data_dir=Path(settings.EMBEDDED_POSTGRES_DIR), database="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    params = conninfo_to_dict(admin)
    host = urllib.parse.quote(str(params["host"]), safe="")
    try:
        yield f"postgres://{params.get('user', 'postgres')}@{host}:{params.get('port', 5432)}/{DATABASE}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def production_env(database_url: str, static_root: Path, port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TRIAGE_", "GUNICORN_"))}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
        "DJANGO_HSTS_PRELOAD": "1",
        "DJANGO_STATIC_ROOT": str(static_root),
        "DATABASE_URL": database_url,
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def request(
    port: int, method: str, path: str, *, https: bool = True, body: str = "", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    # The first request waits for a gunicorn worker to boot (it loads the models); on a loaded 2-core
    # machine that has taken over 30 s.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
    sent = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if https:
        sent["X-Forwarded-Proto"] = "https"
    conn.request(method, path, body=body or None, headers=sent)
    response = conn.getresponse()
    response.read_body = response.read()  # type: ignore[attr-defined]  # kept for the assertions below
    conn.close()
    return response


def test_the_documented_production_path_serves_the_staff_app_securely(database_url, tmp_path):
    port = _free_port()
    env = production_env(database_url, tmp_path / "static", port)

    for args in (
        ("check", "--deploy", "--fail-level", "WARNING"),
        ("migrate", "--noinput"),
        ("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"),
        ("collectstatic", "--noinput"),
    ):
        done = manage(*args, env=env)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"

    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert web.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not come up"
                time.sleep(0.2)

        plain = request(port, "GET", "/accounts/login/", https=False)
        assert plain.status == 301
        assert plain.getheader("Location") == f"https://127.0.0.1:{port}/accounts/login/"

        login = request(port, "GET", "/accounts/login/")
        page = login.read_body.decode()  # type: ignore[attr-defined]
        assert login.status == 200
        assert login.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains; preload"
        assert "script-src 'self'" in (login.getheader("Content-Security-Policy") or "")
        cookie = login.getheader("Set-Cookie") or ""
        assert "csrftoken=" in cookie and "Secure" in cookie

        stylesheet = re.search(r'href="(/static/approvals/staff\.[0-9a-f]{12}\.css)"', page)
        assert stylesheet is not None, "collectstatic's hashed name is linked"
        css = request(port, "GET", stylesheet.group(1))
        assert css.status == 200 and "immutable" in (css.getheader("Cache-Control") or "")

        missing = request(port, "GET", "/no-such-page/")
        assert missing.status == 404 and b"URLconf" not in missing.read_body  # type: ignore[attr-defined]

        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        csrf_cookie = re.search(r"csrftoken=([^;]+)", cookie)
        assert token and csrf_cookie
        form = urllib.parse.urlencode(
            {"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        )
        signed_in = request(
            port,
            "POST",
            "/accounts/login/",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf_cookie.group(1)}",
                "Origin": f"https://127.0.0.1:{port}",
                "Referer": f"https://127.0.0.1:{port}/accounts/login/",
            },
        )
        assert signed_in.status == 302 and signed_in.getheader("Location") == "/"
        assert "sessionid=" in (signed_in.getheader("Set-Cookie") or "")
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
