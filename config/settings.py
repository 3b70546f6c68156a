"""Settings: read the environment, with safe local defaults.

Unset `DATABASE_URL` means the embedded PostgreSQL (started on demand, data under `var/`).
Unset `REDIS_URL` means runs are worked by an in-process worker. In production
(`DJANGO_DEBUG=0`) a missing `DJANGO_SECRET_KEY` stops start-up with a message naming it.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TRIAGE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production (DJANGO_DEBUG=0) needs a secret key."
        )
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "django_rq",
    "triage",
    "approvals",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
EMBEDDED_POSTGRES_DIR = VAR_DIR / "pgdata"
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60)
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
REDIS_URL = os.environ.get("REDIS_URL", "")
RQ_QUEUES = {"default": {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": 600}}
RQ = {"COMMIT_MODE": "auto"}  # we enqueue on commit ourselves (triage.tasks.enqueue_run)
# "rq" when REDIS_URL is set, else "inprocess"; TRIAGE_QUEUE_BACKEND overrides.
TRIAGE_QUEUE_BACKEND = os.environ.get("TRIAGE_QUEUE_BACKEND", "rq" if REDIS_URL else "inprocess")

# --- The chain ------------------------------------------------------------------------------
TRIAGE_LLM_PROVIDER = os.environ.get("TRIAGE_LLM_PROVIDER", "local")
TRIAGE_PROVIDERS = {
    "local": "integrations.llm.local.LocalProvider",
}
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
# Who receives a run that a gate stopped: approvals owns the inbox, triage only knows this path.
TRIAGE_ESCALATION_HANDLER = "approvals.services.approval_request_open"
# A human's cost of handling one ticket, in dollars; admins can override it (GatePolicy).
TRIAGE_HUMAN_COST_PER_TICKET = Decimal(os.environ.get("TRIAGE_HUMAN_COST_PER_TICKET", "4.00"))
# Sleep between retries is real in production; tests shrink it.
TRIAGE_BACKOFF_SCALE = float(os.environ.get("TRIAGE_BACKOFF_SCALE", "1.0"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SESSION_COOKIE_AGE = int(os.environ.get("TRIAGE_SESSION_SECONDS", 8 * 3600))
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("TRIAGE_LOG_LEVEL", "WARNING")},
    "loggers": {
        "triage": {"level": os.environ.get("TRIAGE_LOG_LEVEL", "INFO"), "propagate": True},
        "integrations": {"level": os.environ.get("TRIAGE_LOG_LEVEL", "INFO"), "propagate": True},
    },
}

# --- Helpdesk intake and write-back (integrations/helpdesks) ----------------------------------------
# Integrations reach the domain through these paths only.
TRIAGE_TICKET_CONTRACT = "triage.contracts.TicketIn"
TRIAGE_INGEST_SERVICE = "triage.services.ticket_ingest"
TRIAGE_WEBHOOK_MAX_BYTES = int(os.environ.get("TRIAGE_WEBHOOK_MAX_BYTES", 1024 * 1024))
# Signed timestamps further than this from now are refused as replays.
TRIAGE_WEBHOOK_REPLAY_SECONDS = int(os.environ.get("TRIAGE_WEBHOOK_REPLAY_SECONDS", 300))
# After a secret is rotated in admin, the previous one stays valid this long.
TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS = int(os.environ.get("TRIAGE_WEBHOOK_SECRET_GRACE_SECONDS", 24 * 3600))
# One write-back (every request of one action, read-backs and retries included) stays within
# TRIAGE_WRITEBACK_BUDGET seconds: each request waits at most TIMEOUT, at most ATTEMPTS tries, Retry-After
# honoured up to MAX_WAIT. With the breaker below, a helpdesk that does not answer holds a worker about
# 15-20 s for its first ticket, then its circuit opens; not minutes per ticket.
TRIAGE_WRITEBACK_TIMEOUT = float(os.environ.get("TRIAGE_WRITEBACK_TIMEOUT", 5))
TRIAGE_WRITEBACK_ATTEMPTS = int(os.environ.get("TRIAGE_WRITEBACK_ATTEMPTS", 3))
TRIAGE_WRITEBACK_MAX_WAIT = float(os.environ.get("TRIAGE_WRITEBACK_MAX_WAIT", 10))
TRIAGE_WRITEBACK_SLEEP_SCALE = float(os.environ.get("TRIAGE_WRITEBACK_SLEEP_SCALE", 1.0))
TRIAGE_WRITEBACK_BUDGET = float(os.environ.get("TRIAGE_WRITEBACK_BUDGET", 15))
# A circuit breaker per helpdesk source: after this many consecutive requests that got no answer
# (connection refused, timeout, 5xx), write-backs to that source fail at once for COOLDOWN seconds.
# Its state is in Redis when REDIS_URL is set (shared by every worker), else in the process.
TRIAGE_WRITEBACK_BREAKER_FAILURES = int(os.environ.get("TRIAGE_WRITEBACK_BREAKER_FAILURES", 3))
TRIAGE_WRITEBACK_BREAKER_COOLDOWN = float(os.environ.get("TRIAGE_WRITEBACK_BREAKER_COOLDOWN", 60))
# An action in flight longer than this is taken as abandoned by a stopped worker: `retry_writebacks`
# (and a resumed run) may claim it again; the reply is read back before it is posted, so not doubled.
TRIAGE_WRITEBACK_LEASE = float(os.environ.get("TRIAGE_WRITEBACK_LEASE", 600))

# --- Claude as the reasoning provider (issue #5) ------------------------------------------------
# Found like every provider: by name, through TRIAGE_PROVIDERS. A key (or a base URL of a compatible
# server) turns the classify cascade on: local classifier first, Claude when it is unsure, then a person.
TRIAGE_PROVIDERS["anthropic"] = "integrations.llm.anthropic.AnthropicProvider"
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
_claude_configured = bool(ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL)
TRIAGE_CLASSIFY_CASCADE = [
    p for p in os.environ.get("TRIAGE_CLASSIFY_CASCADE", "anthropic" if _claude_configured else "").split(",") if p
]
TRIAGE_DRAFT_PROVIDERS = [p for p in os.environ.get("TRIAGE_DRAFT_PROVIDERS", "local").split(",") if p]
# Per step, the models in order: the first answers; the next takes over when one is overloaded (529/503).
# Admin's ProviderSettings overrides these.
TRIAGE_ANTHROPIC_MODELS = {
    "classify": [m for m in os.environ.get("TRIAGE_ANTHROPIC_CLASSIFY_MODELS", "claude-haiku-4-5,claude-sonnet-4-6").split(",") if m],
    "draft": [m for m in os.environ.get("TRIAGE_ANTHROPIC_DRAFT_MODELS", "claude-sonnet-4-6,claude-haiku-4-5").split(",") if m],
}
TRIAGE_ANTHROPIC_TIMEOUT = float(os.environ.get("TRIAGE_ANTHROPIC_TIMEOUT", "30"))
TRIAGE_ANTHROPIC_MAX_TOKENS = int(os.environ.get("TRIAGE_ANTHROPIC_MAX_TOKENS", "1024"))
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
TRIAGE_DAILY_SPEND_CAP = Decimal(os.environ.get("TRIAGE_DAILY_SPEND_CAP", "25.00"))
# Circuit breaker (state per worker process): this many consecutive failed calls open it; after the
# cool-down one probe call is let through (half-open); its success closes the breaker again.
TRIAGE_BREAKER_FAILURES = int(os.environ.get("TRIAGE_BREAKER_FAILURES", "5"))
TRIAGE_BREAKER_COOLDOWN = float(os.environ.get("TRIAGE_BREAKER_COOLDOWN", "30"))
# Ticket sources "<vendor>:<id>" for these vendors are written back to the helpdesk (triage.writeback.helpdesk).
TRIAGE_WRITEBACK_VENDORS = ("zendesk", "freshdesk", "helpscout", "intercom", "front", "chatwoot", "zammad")
