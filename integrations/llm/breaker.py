"""A circuit breaker per hosted provider, so a provider that keeps failing is skipped, not hammered.

State lives in the worker process (a dict under a lock), not in the database: each worker learns on
its own within `failures` calls, and nothing has to be written on the hot path. Closed: calls go
through. After `failures` consecutive failed calls: open, every call is refused for `cooldown`
seconds. Then half-open: exactly one probe call goes through; its success closes the breaker, its
failure opens it for another cool-down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failures: int = 5
    cooldown: float = 30.0
    clock: object = field(default=time.monotonic, repr=False)
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    _probe_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one caller gets True (the probe)."""
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown:  # type: ignore[operator]
                self.state = HALF_OPEN
                self._probe_out = False
            if self.state == HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.state = CLOSED
            self.consecutive_failures = 0
            self._probe_out = False

    def record_failure(self) -> None:
        with self._lock:
            self.consecutive_failures += 1
            if self.state == HALF_OPEN or self.consecutive_failures >= self.failures:
                self.state = OPEN
                self.opened_at = self.clock()  # type: ignore[operator]
                self._probe_out = False


_breakers: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(name: str, *, failures: int, cooldown: float) -> CircuitBreaker:
    """The process-wide breaker of provider `name` (created on first use with these limits)."""
    with _registry_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = _breakers[name] = CircuitBreaker(failures=failures, cooldown=cooldown)
        else:
            breaker.failures, breaker.cooldown = failures, cooldown
        return breaker


def breakers_reset() -> None:
    """Forget every breaker's state (tests, and `manage.py` commands that start afresh)."""
    with _registry_lock:
        _breakers.clear()
