"""A circuit breaker per helpdesk source (``<vendor>:<HelpdeskSource id>``), so one helpdesk that is down
fails its write-backs at once instead of holding a worker for every ticket; other sources are unaffected.

pybreaker does the state machine (closed, open for a cool-down, one half-open probe). With REDIS_URL set
the state lives in Redis: RQ runs each job in a forked work horse, so a breaker kept in process memory
would forget every failure when the job ends. Without Redis (the in-process worker) it is kept in memory.

pybreaker holds a breaker's thread lock for the length of a guarded call, so threads of one process
send to one helpdesk source one request at a time (other sources are not affected). RQ work horses and
`retry_writebacks` are single-threaded; for the in-process pool this bounds how many of its threads
one dead helpdesk can tie up to the breaker's first few failures, each within TRIAGE_WRITEBACK_TIMEOUT.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import pybreaker
import redis
from django.conf import settings

logger = logging.getLogger(__name__)


class HelpdeskBreaker(pybreaker.CircuitBreaker):
    def __init__(self, *, source: str, storage: pybreaker.CircuitBreakerStorage, **kwargs):
        super().__init__(name=source, state_storage=storage, **kwargs)
        self.storage = storage

    def open_until(self) -> datetime | None:
        """When the cool-down of an open circuit ends (UTC), else None."""
        if self.current_state != pybreaker.STATE_OPEN:
            return None
        opened_at = self.storage.opened_at
        if opened_at is None:
            return None
        until = opened_at + timedelta(seconds=self.reset_timeout)
        return until if until > datetime.now(until.tzinfo) else None


def _counts_as_down(exc: BaseException) -> bool:
    # Only "no answer" opens the circuit: refused connections, timeouts and 5xx. A 4xx or a 429 is the
    # helpdesk answering; pybreaker treats an excluded exception as a success.
    return bool(getattr(exc, "unreachable", False))


_breakers: dict[str, HelpdeskBreaker] = {}
_lock = threading.Lock()


def _storage(source: str) -> pybreaker.CircuitBreakerStorage:
    url = getattr(settings, "REDIS_URL", "")
    if url:
        try:
            return pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED,
                redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1),
                namespace=f"triage:helpdesk:{source}",
            )
        except redis.RedisError as exc:
            logger.warning("helpdesk breaker for %s kept in memory: Redis unavailable (%s)", source, exc)
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def breaker_for(source: str) -> HelpdeskBreaker:
    """The breaker of one helpdesk source, with the current settings' threshold and cool-down."""
    with _lock:
        breaker = _breakers.get(source)
        if breaker is None:
            breaker = _breakers[source] = HelpdeskBreaker(
                source=source, storage=_storage(source), exclude=[lambda exc: not _counts_as_down(exc)]
            )
    breaker.fail_max = max(1, int(getattr(settings, "TRIAGE_WRITEBACK_BREAKER_FAILURES", 3)))
    breaker.reset_timeout = float(getattr(settings, "TRIAGE_WRITEBACK_BREAKER_COOLDOWN", 60.0))
    return breaker


def open_until(source: str) -> datetime | None:
    """When write-backs to `source` may be tried again, if its circuit is open now."""
    return breaker_for(source).open_until()


def breakers_forget() -> None:
    """Drop every breaker this process holds (tests; Redis-held state stays in Redis)."""
    with _lock:
        _breakers.clear()
