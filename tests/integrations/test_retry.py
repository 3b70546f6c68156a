"""The wait before a failed call is tried again: backoff with jitter, Retry-After honoured, capped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from integrations.llm.base import ProviderError
from integrations.retry import MAX_WAIT, retry_after_seconds, wait_seconds


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_the_wait_doubles_per_attempt_with_up_to_one_base_of_jitter(attempt):
    waits = [wait_seconds(attempt=attempt, error=TimeoutError(), base=0.5) for _ in range(200)]

    floor = 0.5 * 2 ** (attempt - 1)
    # A range, not a value: the jitter is random on purpose (workers must not retry in step).
    assert all(floor <= w <= floor + 0.5 for w in waits)
    assert len({round(w, 6) for w in waits}) > 1  # jittered, so workers do not retry in step


def test_the_wait_is_never_shorter_than_the_servers_retry_after():
    error = ProviderError("429", retryable=True, status=429, retry_after=7.0)

    assert wait_seconds(attempt=1, error=error, base=0.5) == 7.0


def test_the_wait_is_capped_whatever_the_attempt_or_the_server_asks():
    assert wait_seconds(attempt=30, error=TimeoutError(), base=0.5) == MAX_WAIT
    assert wait_seconds(attempt=1, error=ProviderError("429", retryable=True, retry_after=3600), base=0.5) == MAX_WAIT


def test_no_base_means_no_wait_unless_the_server_asks():
    assert wait_seconds(attempt=3, error=TimeoutError(), base=0.0) == 0.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # Anthropic's finer header wins
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers_are_read_as_seconds(headers, expected):
    assert retry_after_seconds(headers) == expected


def test_a_retry_after_http_date_counts_from_now():
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)

    # A range: the header has whole seconds and the clock moves between writing and reading it.
    assert 8.0 <= retry_after_seconds({"retry-after": in_ten}) <= 10.0
    assert retry_after_seconds({"retry-after": format_datetime(datetime(2015, 10, 21, tzinfo=UTC), usegmt=True)}) == 0.0
