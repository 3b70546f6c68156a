"""A circuit breaker per hosted provider (pybreaker), so a provider that keeps failing is skipped, not hammered.

State lives in the worker process (pybreaker's memory storage), not in the database: each worker
learns on its own within `failures` calls, and nothing has to be written on the hot path. Closed:
calls go through. After `failures` consecutive failed calls: open, every call is refused for
`cooldown` seconds. Then half-open: exactly one probe call goes through; its success closes the
breaker, its failure opens it for another cool-down.

pybreaker's own `call()` holds the breaker's lock for the whole guarded call, which would make the
in-process queue's worker threads wait for each other's Claude calls (up to the timeout each). So
the network call is made outside it: `allow()` asks before the call (and hands out the one probe),
and the call's outcome is then passed through `breaker.call()` with a function that returns or
raises at once, so pybreaker does the counting, opening, half-opening and closing as usual.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta

import pybreaker


class _CallFailed(Exception):
    """Stands for a provider call that failed, when its outcome is passed through pybreaker."""


def _succeeded() -> None:
    return None


def _failed() -> None:
    raise _CallFailed


class ProviderBreaker:
    """One provider's breaker: ask `allow()` before a call, then report `record_success()` or `record_failure()`."""

    def __init__(self, name: str, *, failures: int, cooldown: float):
        self.storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # throw_new_error_on_trip=False: the call that opens the breaker keeps its own error (caught below).
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=cooldown,
            name=name,
            state_storage=self.storage,
            throw_new_error_on_trip=False,
        )
        self._gate = threading.Lock()

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half-open' (pybreaker's names)."""
        return self.breaker.current_state

    @property
    def consecutive_failures(self) -> int:
        return self.breaker.fail_counter

    def configure(self, *, failures: int, cooldown: float) -> None:
        self.breaker.fail_max = failures
        self.breaker.reset_timeout = cooldown

    def allow(self) -> bool:
        """May a call go out now? Closed: yes. Open: no, until the cool-down is over; then the breaker
        turns half-open and this caller's yes is the probe. Half-open: the probe is out, so no."""
        with self._gate:
            state = self.breaker.current_state
            if state == pybreaker.STATE_CLOSED:
                return True
            if state == pybreaker.STATE_HALF_OPEN:
                return False
            opened_at = self.storage.opened_at
            if opened_at is not None and datetime.now(UTC) < opened_at + timedelta(seconds=self.breaker.reset_timeout):
                return False
            self.breaker.half_open()
            return True

    def record_success(self) -> None:
        # Other calls may have opened it while this one was out: their cool-down stands.
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            self.breaker.call(_succeeded)

    def record_failure(self) -> None:
        # Counted (or the breaker is open already); the caller raises the real error.
        with contextlib.suppress(_CallFailed, pybreaker.CircuitBreakerError):
            self.breaker.call(_failed)


_breakers: dict[str, ProviderBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(name: str, *, failures: int, cooldown: float) -> ProviderBreaker:
    """The process-wide breaker of provider `name` (created on first use; the limits follow the settings)."""
    with _registry_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = _breakers[name] = ProviderBreaker(name, failures=failures, cooldown=cooldown)
        else:
            breaker.configure(failures=failures, cooldown=cooldown)
        return breaker


def breakers_reset() -> None:
    """Forget every breaker's state (tests, and `manage.py` commands that start afresh)."""
    with _registry_lock:
        _breakers.clear()
