"""Settings: read the environment (django-environ); the defaults are production-safe.

`DJANGO_DEV_MODE=1` is the one switch for the local demo and the tests (`make demo`, `make test`,
and pytest through `[tool.pytest.ini_options] env` in pyproject.toml): it turns on DEBUG, the insecure
development secret key, localhost as allowed hosts and plain-HTTP cookies. Without it DEBUG is off,
a missing `DJANGO_SECRET_KEY` stops start-up with a message naming it, and cookies, HSTS and the
HTTPS redirect are those of a TLS deployment.

Unset `DATABASE_URL` means the embedded PostgreSQL (started on demand, data under `var/`).
Unset `REDIS_URL` means runs are worked by an in-process worker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
VAR_DIR = Path(env.str("TRIAGE_VAR_DIR", default=str(BASE_DIR / "var")))

_BOOLEAN_WORDS = {"1", "true", "yes", "on", "0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    """environ's `bool`, but a typo is an error: `DJANGO_SECURE_COOKIES=flase` must not mean off."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    if raw.lower() not in _BOOLEAN_WORDS:
        raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")
    return env.bool(name)


def env_list(name: str, default: list[str]) -> list[str]:
    """environ's comma-separated `list`, with blanks trimmed and empty items dropped."""
    return [item.strip() for item in env.list(name, default=default) if item.strip()]


# --- Mode, secret key, hosts ------------------------------------------------------------------
DEV_MODE = env_bool("DJANGO_DEV_MODE", False)
DEBUG = env_bool("DJANGO_DEBUG", DEV_MODE)
# Read as is, not through environ: environ takes a value starting with "$" for the name of another
# variable, and Django's own generated keys may start with "$".
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEV_MODE or DEBUG):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production needs a secret key "
            "(DJANGO_DEV_MODE=1 runs the local demo and tests with a development key)."
        )
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"] if DEV_MODE else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "django_htmx",
    "django_rq",
    "solo",
    "triage",
    "approvals",
    "integrations",
]

MIDDLEWARE = [
    # First: /healthz, /readyz and /metrics, answered before host validation and the HTTPS redirect.
    "config.probes_middleware.ProbesMiddleware",
    # Then a SERVER span around everything else (a no-op unless tracing is on; config/telemetry.py).
    "config.tracing_middleware.RequestSpanMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

if not DEV_MODE:
    # Static files from the web process itself (admin and staff CSS/JS), compressed and cached for good in
    # production: no separate static server to run. Locally, runserver and the test server serve them.
    MIDDLEWARE.insert(3, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
EMBEDDED_POSTGRES_DIR = VAR_DIR / "pgdata"
_db: dict[str, Any]
if DATABASE_URL:
    _db = dict(dj_database_url.parse(DATABASE_URL, conn_max_age=60))
    _db["ENGINE"] = "django.db.backends.postgresql"
else:
    # Started by the first connection (config.embedded_db), not by importing these settings.
    _db = {
        "ENGINE": "config.embedded_db",
        "NAME": os.environ.get("TRIAGE_DB_NAME", "triage"),
        "EMBEDDED_DATA_DIR": str(EMBEDDED_POSTGRES_DIR),
        "TEST": {"NAME": os.environ.get("TRIAGE_TEST_DB_NAME", "test_triage")},
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Queue ----------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
RQ_QUEUES = {"default": {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 600}}
# Shared by every process when REDIS_URL is set (Help Scout's API tokens, looked-up Zendesk requesters),
# else each process keeps its own.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
RQ = {"COMMIT_MODE": "auto"}  # we enqueue on commit ourselves (triage.tasks.enqueue_run)
# "rq" when REDIS_URL is set, else "inprocess"; TRIAGE_QUEUE_BACKEND overrides.
TRIAGE_QUEUE_BACKEND = env.str("TRIAGE_QUEUE_BACKEND", default="rq" if REDIS_URL else "inprocess")
# Recovery (README "Recovery"): a worker holds a run for TRIAGE_RUN_LEASE seconds and renews the lease
# between steps; every TRIAGE_SWEEP_INTERVAL seconds a sweeper (inside each RQ worker, triage.worker, or
# inside the in-process worker) hands back to the queue the runs whose lease expired and the runs queued
# longer than TRIAGE_SWEEP_GRACE seconds that the queue does not hold; a run taken TRIAGE_RUN_MAX_TAKES
# times without finishing (it keeps killing its worker) fails with the reason, for a person.
TRIAGE_RUN_LEASE = env.float("TRIAGE_RUN_LEASE", default=120.0)
TRIAGE_SWEEP_INTERVAL = env.float("TRIAGE_SWEEP_INTERVAL", default=15.0)
TRIAGE_SWEEP_GRACE = env.float("TRIAGE_SWEEP_GRACE", default=60.0)
TRIAGE_RUN_MAX_TAKES = env.int("TRIAGE_RUN_MAX_TAKES", default=3)
# A task that finds the database unreachable (restarting) waits for it, with backoff, this many seconds before
# it gives up and leaves the run to the sweeper (triage.tasks.database_wait).
TRIAGE_DB_WAIT = env.float("TRIAGE_DB_WAIT", default=30.0)
# The runner's statements are prepared once per database session (triage.durability.statement_prepared).
# Turn off behind a pooler in transaction mode that does not keep prepared statements (PgBouncer < 1.21).
TRIAGE_PREPARED_STATEMENTS = env.bool("TRIAGE_PREPARED_STATEMENTS", default=True)
# `manage.py rqworker default` loads the models once in the worker before it forks, and sweeps.
RQ["WORKER_CLASS"] = "triage.worker.TriageWorker"

# --- The chain ------------------------------------------------------------------------------
TRIAGE_LLM_PROVIDER = env.str("TRIAGE_LLM_PROVIDER", default="local")
TRIAGE_PROVIDERS = {
    "local": "integrations.llm.local.LocalProvider",
}
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
# Who receives a run that a gate stopped: approvals owns the inbox, triage only knows this path.
TRIAGE_ESCALATION_HANDLER = "approvals.services.approval_request_open"
# A human's cost of handling one ticket, in dollars; admins can override it (GatePolicy).
TRIAGE_HUMAN_COST_PER_TICKET = Decimal(env.str("TRIAGE_HUMAN_COST_PER_TICKET", default="4.00"))
# Sleep between retries is real in production; tests shrink it.
TRIAGE_BACKOFF_SCALE = env.float("TRIAGE_BACKOFF_SCALE", default=1.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
# Production serves `collectstatic`'s hashed, compressed copies (run it at each deploy); the local demo and
# the tests serve the app directories as they are.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEV_MODE
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SESSION_COOKIE_AGE = env.int("TRIAGE_SESSION_SECONDS", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# --- Sign-in throttling (django-axes) ---------------------------------------------------------
# Both sign-in pages (/accounts/login/, /admin/login/) authenticate through AxesBackend: after
# TRIAGE_LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is refused
# (429, registration/locked_out.html) for TRIAGE_LOGIN_LOCKOUT_MINUTES, right password or not.
# Locking by username+address, not username alone, so a stranger cannot lock a colleague out.
# Staff unlock in admin (Axes › Access attempts: delete) or with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("TRIAGE_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("TRIAGE_LOGIN_LOCKOUT_MINUTES", default=60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# The client address is REMOTE_ADDR unless a trusted proxy count is given; a client-set
# X-Forwarded-For must not buy fresh attempts.
AXES_IPWARE_PROXY_COUNT = env.int("TRIAGE_TRUSTED_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if AXES_IPWARE_PROXY_COUNT else ("REMOTE_ADDR",)
)

# --- HTTP security headers and cookies --------------------------------------------------------
# Content-Security-Policy through Django's own middleware (django.middleware.csp, Django 6.0+).
# No inline script anywhere; inline <style> only with the per-request nonce (the admin's change list
# uses one); the SVG charts are drawn with classes from staff.css.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEV_MODE:
    # A TLS deployment. Behind a TLS-terminating proxy, DJANGO_SECURE_PROXY_SSL_HEADER=1 trusts its
    # X-Forwarded-Proto (only when the proxy always sets it).
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is a commitment for the whole domain, hard to undo: the operator opts in.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)

# One JSON object per line in production (python-json-logger), with `trace_id` and `span_id` when the line is
# written inside a traced span (config.telemetry.TraceContextFilter); development mode keeps readable lines.
# TRIAGE_LOG_FORMAT (json or plain) overrides the choice.
TRIAGE_LOG_FORMAT = env.str("TRIAGE_LOG_FORMAT", default="plain" if DEV_MODE else "json")
if TRIAGE_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"TRIAGE_LOG_FORMAT must be json or plain, got {TRIAGE_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace_context": {"()": "config.telemetry.TraceContextFilter"}},
    "formatters": {
        "plain": {"()": "config.telemetry.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(levelname)s %(name)s %(message)s %(process)d %(threadName)s",
            "rename_fields": {"levelname": "level", "name": "logger", "threadName": "thread"},
            "timestamp": True,  # ISO 8601, UTC
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": TRIAGE_LOG_FORMAT, "filters": ["trace_context"]}
    },
    "root": {"handlers": ["console"], "level": env.str("TRIAGE_LOG_LEVEL", default="WARNING")},
    "loggers": {
        "triage": {"level": env.str("TRIAGE_LOG_LEVEL", default="INFO"), "propagate": True},
        "integrations": {"level": env.str("TRIAGE_LOG_LEVEL", default="INFO"), "propagate": True},
    },
}

# --- Observability (README "Observability"; config/telemetry.py, triage/probes.py, triage/instruments.py) ----
# Traces: the standard OTEL_* environment (OTEL_EXPORTER_OTLP_ENDPOINT turns them on), read by config.telemetry.
# An RQ work-horse exits without exit handlers: it sends its job's spans first, waiting at most this long.
TRIAGE_OTEL_HORSE_FLUSH_SECONDS = env.float("TRIAGE_OTEL_HORSE_FLUSH_SECONDS", default=2.0)
# /metrics: open unless METRICS_TOKEN is set (then `Authorization: Bearer <token>`). With several processes
# on one machine (gunicorn workers, RQ workers) PROMETHEUS_MULTIPROC_DIR names the directory they share.
TRIAGE_METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR:
    # Made here, before any app is loaded: prometheus-client opens its file there as soon as a metric is made
    # (django-rq makes one at import), and a directory not made yet (a fresh tmpfs) would stop the process.
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# /readyz: a worker must have been seen this recently; Redis and the database must answer within the timeout.
TRIAGE_WORKER_SEEN_SECONDS = env.float("TRIAGE_WORKER_SEEN_SECONDS", default=120.0)
TRIAGE_PROBE_TIMEOUT = env.float("TRIAGE_PROBE_TIMEOUT", default=2.0)

# --- Helpdesk intake and write-back (integrations/helpdesks) ----------------------------------------
# Integrations reach the domain through these paths only.
TRIAGE_TICKET_CONTRACT = "triage.contracts.TicketIn"
# The action kinds the API describes (its OpenAPI document): the contract's enumeration, found by name.
# What the ticket API answers: the contract (for the OpenAPI document) and the function that fills it.
TRIAGE_TICKET_OUT_CONTRACT = "triage.api.TicketOut"
TRIAGE_TICKET_OUT = "triage.api.ticket_out"
TRIAGE_INGEST_SERVICE = "triage.services.ticket_ingest"
TRIAGE_WEBHOOK_MAX_BYTES = env.int("TRIAGE_WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Signed timestamps further than this from now are refused as replays.
TRIAGE_WEBHOOK_REPLAY_SECONDS = env.int("TRIAGE_WEBHOOK_REPLAY_SECONDS", default=300)
# Where a vendor signs no time (Help Scout, Intercom, Freshdesk, Zammad, Front rule webhooks, unsigned
# Chatwoot), a body already received within this many days is a replay, whatever delivery id it carries.
TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS = env.float("TRIAGE_WEBHOOK_REPLAY_RETENTION_DAYS", default=30)
# The retention pass (triage.retention.deliveries_prune_task) deletes delivery records older than that period,
# and failed deliveries never replayed after this many days (never fewer than the replay period; 0 keeps them).
TRIAGE_FAILED_DELIVERY_RETENTION_DAYS = env.float("TRIAGE_FAILED_DELIVERY_RETENTION_DAYS", default=90)
# Intake reads a vendor's API while the webhook waits (Front previews, Zendesk requesters): one attempt,
# at most this many seconds; a failure keeps the delivery for replay. Looked-up requesters are cached
# (Django cache) this long.
TRIAGE_INTAKE_FETCH_TIMEOUT = env.float("TRIAGE_INTAKE_FETCH_TIMEOUT", default=5.0)
TRIAGE_INTAKE_LOOKUP_CACHE_SECONDS = env.int("TRIAGE_INTAKE_LOOKUP_CACHE_SECONDS", default=3600)
# The absolute root the webhook URLs shown in admin start with (e.g. https://triage.example.com), when the
# admin is reached at another address than the helpdesks use; empty: the admin request's own.
TRIAGE_PUBLIC_URL = env.str("TRIAGE_PUBLIC_URL", default="")
# After a secret is rotated in admin, the previous one stays valid this long.
TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS = env.int("TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS", default=24 * 3600)
# One write-back (every request of one action, read-backs and retries included) stays within
# TRIAGE_WRITEBACK_BUDGET seconds: each request waits at most TIMEOUT, at most ATTEMPTS tries, Retry-After
# honoured up to MAX_WAIT. With the breaker below, a helpdesk that does not answer holds a worker about
# 15-20 s for its first ticket, then its circuit opens; not minutes per ticket.
TRIAGE_WRITEBACK_TIMEOUT = env.float("TRIAGE_WRITEBACK_TIMEOUT", default=5.0)
TRIAGE_WRITEBACK_ATTEMPTS = env.int("TRIAGE_WRITEBACK_ATTEMPTS", default=3)
TRIAGE_WRITEBACK_MAX_WAIT = env.float("TRIAGE_WRITEBACK_MAX_WAIT", default=10.0)
TRIAGE_WRITEBACK_SLEEP_SCALE = env.float("TRIAGE_WRITEBACK_SLEEP_SCALE", default=1.0)
TRIAGE_WRITEBACK_BUDGET = env.float("TRIAGE_WRITEBACK_BUDGET", default=15.0)
# A circuit breaker per helpdesk source: after this many consecutive requests that got no answer
# (connection refused, timeout, 5xx), write-backs to that source fail at once for COOLDOWN seconds.
# Its state is in Redis when REDIS_URL is set (shared by every worker), else in the process.
TRIAGE_WRITEBACK_BREAKER_FAILURES = env.int("TRIAGE_WRITEBACK_BREAKER_FAILURES", default=3)
TRIAGE_WRITEBACK_BREAKER_COOLDOWN = env.float("TRIAGE_WRITEBACK_BREAKER_COOLDOWN", default=60.0)

# MCP tools (README "Tools over MCP"): an action carried out through a shop's MCP tool is tried up to
# TRIAGE_TOOL_ATTEMPTS times on errors that may pass (unreachable, timeout, 5xx, the tool's own error), with
# exponential backoff from TRIAGE_TOOL_BACKOFF seconds; then it is FAILED on the trace, to be retried.
TRIAGE_TOOL_ATTEMPTS = env.int("TRIAGE_TOOL_ATTEMPTS", default=3)
TRIAGE_TOOL_BACKOFF = env.float("TRIAGE_TOOL_BACKOFF", default=0.5)

# --- Claude as the reasoning provider (issue #5) ------------------------------------------------
# Found like every provider: by name, through TRIAGE_PROVIDERS. A key (or a base URL of a compatible
# server) turns the classify cascade on: local classifier first, Claude when it is unsure, then a person.
TRIAGE_PROVIDERS["anthropic"] = "integrations.llm.anthropic.AnthropicProvider"
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
_claude_configured = bool(ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL)
TRIAGE_CLASSIFY_CASCADE = env_list("TRIAGE_CLASSIFY_CASCADE", ["anthropic"] if _claude_configured else [])
TRIAGE_DRAFT_PROVIDERS = env_list("TRIAGE_DRAFT_PROVIDERS", ["local"])
# Per step, the models in order: the first answers; the next takes over when one is overloaded (529/503).
# Admin's ProviderSettings overrides these.
TRIAGE_ANTHROPIC_MODELS = {
    "classify": env_list("TRIAGE_ANTHROPIC_CLASSIFY_MODELS", ["claude-haiku-4-5", "claude-sonnet-4-6"]),
    "draft": env_list("TRIAGE_ANTHROPIC_DRAFT_MODELS", ["claude-sonnet-4-6", "claude-haiku-4-5"]),
}
TRIAGE_ANTHROPIC_TIMEOUT = env.float("TRIAGE_ANTHROPIC_TIMEOUT", default=30.0)
TRIAGE_ANTHROPIC_MAX_TOKENS = env.int("TRIAGE_ANTHROPIC_MAX_TOKENS", default=1024)
# Dollars per million tokens (input, output, 5-minute cache write, cache read); admin's ModelPrice rows
# override. A model id matches its longest listed prefix; an unknown model is charged at the dearest row.
TRIAGE_MODEL_PRICES = {
    "claude-haiku-4-5": {"input": "1.00", "output": "5.00", "cache_write": "1.25", "cache_read": "0.10"},
    "claude-sonnet-4-5": {"input": "3.00", "output": "15.00", "cache_write": "3.75", "cache_read": "0.30"},
    "claude-sonnet-4-6": {"input": "3.00", "output": "15.00", "cache_write": "3.75", "cache_read": "0.30"},
    "claude-opus-4-5": {"input": "5.00", "output": "25.00", "cache_write": "6.25", "cache_read": "0.50"},
    "claude-opus-4-6": {"input": "5.00", "output": "25.00", "cache_write": "6.25", "cache_read": "0.50"},
}
# Dollars per UTC day across all runs; over it, runs use the local models or a person. 0: no cap.
TRIAGE_DAILY_SPEND_CAP = Decimal(env.str("TRIAGE_DAILY_SPEND_CAP", default="25.00"))
# Circuit breaker (state per worker process): this many consecutive failed calls open it; after the
# cool-down one probe call is let through (half-open); its success closes the breaker again.
TRIAGE_BREAKER_FAILURES = env.int("TRIAGE_BREAKER_FAILURES", default=5)
TRIAGE_BREAKER_COOLDOWN = env.float("TRIAGE_BREAKER_COOLDOWN", default=30.0)
