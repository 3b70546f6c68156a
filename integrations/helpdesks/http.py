"""A small REST client for write-back: timeouts, retries on 429/5xx honouring Retry-After, idempotency keys.

It uses the standard library (urllib) so write-back needs no extra dependency.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)
_sleep = time.sleep  # one name for the waits between retries (tests count them)


class WritebackError(Exception):
    """A write-back request that failed; `retryable` ones may succeed later (`manage.py retry_writebacks`)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class WritebackSettings:
    timeout: float
    attempts: int
    max_wait: float
    sleep_scale: float

    @classmethod
    def from_settings(cls) -> WritebackSettings:
        return cls(
            timeout=float(getattr(settings, "TRIAGE_WRITEBACK_TIMEOUT", 10.0)),
            attempts=int(getattr(settings, "TRIAGE_WRITEBACK_ATTEMPTS", 4)),
            max_wait=float(getattr(settings, "TRIAGE_WRITEBACK_MAX_WAIT", 60.0)),
            sleep_scale=float(getattr(settings, "TRIAGE_WRITEBACK_SLEEP_SCALE", 1.0)),
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RestClient:
    def __init__(self, *, base_url: str, headers: Mapping[str, str], config: WritebackSettings | None = None):
        if not base_url:
            raise WritebackError("the helpdesk source has no base URL")
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.config = config or WritebackSettings.from_settings()

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        idempotency_key: str = "",
        before_retry: Callable[[], Any] | None = None,
    ) -> Any:
        """Send one request, retrying what can recover. `before_retry` runs before every retry and, when
        it returns something other than None, that is the answer: an earlier attempt that timed out
        may have landed, so a reply is looked for before it is posted again."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "gated-triage/1", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        last: WritebackError | None = None
        for attempt in range(1, self.config.attempts + 1):
            if attempt > 1 and before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
            wait: float | None = None
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(request, timeout=self.config.timeout) as response:  # noqa: S310 - admin-configured URL
                    raw = response.read()
                return json.loads(raw) if raw.strip() else {}
            except urllib.error.HTTPError as exc:
                status = exc.code
                detail = exc.read()[:300].decode("utf-8", "replace")
                exc.close()
                if status != 429 and status < 500:
                    raise WritebackError(f"{method} {path}: HTTP {status}: {detail}", status=status) from exc
                last = WritebackError(f"{method} {path}: HTTP {status}: {detail}", status=status, retryable=True)
                wait = retry_after_seconds(exc.headers.get("Retry-After"))
            except (TimeoutError, socket.timeout, urllib.error.URLError, ConnectionError, json.JSONDecodeError) as exc:
                last = WritebackError(f"{method} {path}: {type(exc).__name__}: {exc}", retryable=True)
            if attempt < self.config.attempts:
                if wait is None:
                    wait = min(2.0 ** (attempt - 1), 30.0) * (0.5 + random.random())  # noqa: S311 - jitter
                wait = min(wait, self.config.max_wait)
                logger.info("write-back %s %s: %s; retrying in %.1fs", method, path, last, wait)
                _sleep(wait * self.config.sleep_scale)
        assert last is not None
        raise last


def quote(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")
