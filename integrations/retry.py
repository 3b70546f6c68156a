"""How long to wait before a failed call is tried again: tenacity's exponential backoff with jitter,
never sooner than the server asked for (`retry-after`), never longer than a cap. One home for reading
Retry-After, used by the Claude provider and the helpdesk clients alike.

Which layer retries a Claude call: the runner, not the SDK (`max_retries=0`) and not a tenacity
`Retrying` around the call. Each attempt is a `StepRun` of its own (what it cost, which model, why),
the router passes over a model that answered "overloaded" on the next attempt, and the circuit
breaker counts every call; a retry loop inside the provider would hide all three. So tenacity is
used for what it is best at here, the wait, and the runner's loop asks `wait_seconds` for it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from tenacity import RetryCallState, Retrying, wait_exponential_jitter
from tenacity.wait import wait_base

MAX_WAIT = 60.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """What the server asked for, in seconds: `retry-after-ms` (Anthropic's), else `retry-after` as
    seconds or as an HTTP date. None when neither is there or usable."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    return retry_after_value(headers.get("retry-after"))


def retry_after_value(value: str | None) -> float | None:
    """One `Retry-After` header value (seconds, or an HTTP date) in seconds from now; None when unusable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class wait_retry_after(wait_base):
    """`backoff`'s wait, or longer when the failed attempt's error carries `retry_after` (seconds); at most `cap`."""

    def __init__(self, backoff: wait_base, *, cap: float = MAX_WAIT):
        self.backoff = backoff
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        asked = getattr(error, "retry_after", None)
        if asked:
            wait = max(wait, float(asked))
        return min(wait, self.cap)


def backoff_wait(*, base: float, cap: float = MAX_WAIT) -> wait_base:
    """`base` x 2^(attempt-1) plus up to `base` of jitter, honouring `retry_after`, capped."""
    return wait_retry_after(wait_exponential_jitter(multiplier=base, jitter=base, max=cap), cap=cap)


def wait_seconds(*, attempt: int, error: BaseException, base: float, cap: float = MAX_WAIT) -> float:
    """The wait after failed attempt number `attempt` (1 for the first failure), for a loop that
    retries by itself (see the module's docstring for why the runner does)."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, error.__traceback__))
    return backoff_wait(base=base, cap=cap)(state)
