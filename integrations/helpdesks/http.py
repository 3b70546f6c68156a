"""A small REST client for write-back: timeouts, a time budget, retries on 429/5xx honouring Retry-After,
idempotency keys, and the helpdesk source's circuit breaker around every request.

Requests go through the standard library (urllib); tenacity decides what is retried and how long to wait.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pybreaker
from django.conf import settings
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from integrations.retry import retry_after_value

if TYPE_CHECKING:
    from integrations.helpdesks.breaker import HelpdeskBreaker

logger = logging.getLogger(__name__)
_sleep = time.sleep  # one name for the waits between retries (tests count them)


class WritebackError(Exception):
    """A write-back request that failed; `retryable` ones may succeed later (`manage.py retry_writebacks`).

    `unreachable` means the helpdesk gave no answer (refused, timed out, 5xx): those count towards
    opening its circuit. `retry_after` is the helpdesk's own Retry-After, in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        unreachable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.unreachable = unreachable
        self.retry_after = retry_after


class HelpdeskUnavailable(WritebackError):
    """The helpdesk source's circuit is open: the request was not sent. Tried again by `retry_writebacks`."""

    def __init__(self, message: str):
        super().__init__(message, retryable=True)


@dataclass(frozen=True)
class WritebackSettings:
    timeout: float
    attempts: int
    max_wait: float
    sleep_scale: float
    budget: float

    @classmethod
    def from_settings(cls) -> WritebackSettings:
        return cls(
            timeout=float(getattr(settings, "TRIAGE_WRITEBACK_TIMEOUT", 5.0)),
            attempts=max(1, int(getattr(settings, "TRIAGE_WRITEBACK_ATTEMPTS", 3))),
            max_wait=float(getattr(settings, "TRIAGE_WRITEBACK_MAX_WAIT", 10.0)),
            sleep_scale=float(getattr(settings, "TRIAGE_WRITEBACK_SLEEP_SCALE", 1.0)),
            budget=float(getattr(settings, "TRIAGE_WRITEBACK_BUDGET", 15.0)),
        )


def _retryable(exc: BaseException) -> bool:
    # An open circuit is final for this write-back: retrying it here would only wait out the budget.
    return isinstance(exc, WritebackError) and exc.retryable and not isinstance(exc, HelpdeskUnavailable)


class RestClient:
    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        config: WritebackSettings | None = None,
        breaker: HelpdeskBreaker | None = None,
    ):
        if not base_url:
            raise WritebackError("the helpdesk source has no base URL")
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.config = config or WritebackSettings.from_settings()
        self.breaker = breaker
        self.deadline: float | None = None

    def budget_start(self) -> None:
        """Every request from now on shares one time budget (`TRIAGE_WRITEBACK_BUDGET`): one action's
        read-backs, post and retries together cannot hold a worker longer than that."""
        self.deadline = time.monotonic() + self.config.budget

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
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "gated-triage/1", **self.headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        deadline = self.deadline if self.deadline is not None else time.monotonic() + self.config.budget

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = getattr(exc, "retry_after", None)
            if after is not None:
                return min(after, self.config.max_wait)
            return wait_random_exponential(multiplier=1, max=self.config.max_wait)(state)

        def stop(state: RetryCallState) -> bool:
            # Stop when the attempts are used up, or when waiting would overrun the budget.
            return state.attempt_number >= self.config.attempts or time.monotonic() + state.upcoming_sleep >= deadline

        def log(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            logger.info("write-back %s; retrying in %.1fs", exc, state.upcoming_sleep)

        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait,
            stop=stop,
            before_sleep=log,
            reraise=True,
            sleep=lambda seconds: _sleep(seconds * self.config.sleep_scale),
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1 and before_retry is not None:
                    found = before_retry()
                    if found is not None:
                        return found
                return self._guarded(method, path, data=data, headers=headers, deadline=deadline)
        raise AssertionError("unreachable: tenacity returns or re-raises")

    def _guarded(self, method: str, path: str, *, data: bytes | None, headers: dict[str, str], deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            raise WritebackError(
                f"{method} {path}: not sent, the write-back budget of {self.config.budget:g}s is used up",
                retryable=True,
            )
        timeout = min(self.config.timeout, remaining)
        if self.breaker is None:
            return self._request(method, path, data=data, headers=headers, timeout=timeout)
        try:
            return self.breaker.call(self._request, method, path, data=data, headers=headers, timeout=timeout)
        except pybreaker.CircuitBreakerError as exc:
            until = self.breaker.open_until()
            when = f"until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "for now"
            # pybreaker raises this in place of the failure that tripped it; that failure is the context.
            cause = exc.__context__ if isinstance(exc.__context__, WritebackError) else None
            detail = f": {cause}" if cause else ": not sent"
            raise HelpdeskUnavailable(f"helpdesk {self.breaker.name} unreachable, circuit open {when}{detail}") from exc

    def _request(self, method: str, path: str, *, data: bytes | None, headers: dict[str, str], timeout: float) -> Any:
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = exc.read()[:300].decode("utf-8", "replace")
            retry_after = retry_after_value(exc.headers.get("Retry-After"))
            exc.close()
            message = f"{method} {path}: HTTP {status}: {detail}"
            if status == 429:
                raise WritebackError(message, status=status, retryable=True, retry_after=retry_after) from exc
            if status >= 500:
                raise WritebackError(
                    message, status=status, retryable=True, unreachable=True, retry_after=retry_after
                ) from exc
            raise WritebackError(message, status=status) from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as exc:
            raise WritebackError(
                f"{method} {path}: {type(exc).__name__}: {exc}", retryable=True, unreachable=True
            ) from exc
        try:
            return json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise WritebackError(f"{method} {path}: the answer is not JSON: {exc}", retryable=True) from exc


def quote(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")
