"""Retry and fallback: what happens to a step attempt that failed.

Per step (`StepPolicy`): transient errors are retried with exponential backoff and jitter, honouring a
provider's Retry-After (the wait is tenacity's, see `integrations.retry`); then the step's fallback
provider is tried once; then a person decides. Output that breaks its contract, and errors no retry can
mend, are never retried into a loop.
"""

from __future__ import annotations

import time

from django.conf import settings

from integrations.llm.base import ProviderError
from integrations.retry import wait_seconds
from triage.models import StepPolicy
from triage.pipeline.steps.base import NotRetryable


def retryable(error: BaseException) -> bool:
    if isinstance(error, NotRetryable):
        return False
    return not (isinstance(error, ProviderError) and not error.retryable)


def backoff(policy: StepPolicy, attempt: int, error: BaseException) -> None:
    """Sleep before the next attempt: exponential with jitter, never sooner than the provider asked for."""
    time.sleep(wait_seconds(attempt=attempt, error=error, base=policy.backoff_seconds) * settings.TRIAGE_BACKOFF_SCALE)


def fallback_policy(policy: StepPolicy, failures: int) -> StepPolicy:
    """One more attempt, on the fallback provider."""
    return StepPolicy(step=policy.step, max_attempts=failures + 1, backoff_seconds=policy.backoff_seconds)
