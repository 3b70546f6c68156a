"""The provider circuit breaker (pybreaker underneath): open after N failures, one probe after the cool-down."""

from __future__ import annotations

import threading
from datetime import timedelta

from integrations.llm.breaker import ProviderBreaker, breaker_for, breakers_reset


def cool_down_over(breaker: ProviderBreaker) -> None:
    breaker.storage.opened_at -= timedelta(seconds=breaker.breaker.reset_timeout + 1)


def opened(failures: int = 2) -> ProviderBreaker:
    breaker = ProviderBreaker("anthropic", failures=failures, cooldown=30.0)
    for _ in range(failures):
        assert breaker.allow()
        breaker.record_failure()
    return breaker


def test_consecutive_failures_open_the_breaker_and_calls_are_refused_during_the_cool_down():
    breaker = ProviderBreaker("anthropic", failures=3, cooldown=30.0)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()

    breaker.record_failure()

    assert breaker.state == "open" and breaker.consecutive_failures == 3
    assert [breaker.allow() for _ in range(3)] == [False, False, False]


def test_a_success_resets_the_count_of_consecutive_failures():
    breaker = ProviderBreaker("anthropic", failures=2, cooldown=30.0)
    breaker.record_failure()

    breaker.record_success()
    breaker.record_failure()

    assert breaker.state == "closed" and breaker.consecutive_failures == 1


def test_after_the_cool_down_exactly_one_probe_goes_out_even_when_threads_race():
    breaker = opened()
    cool_down_over(breaker)
    start = threading.Barrier(8)
    answers: list[bool] = []

    def ask() -> None:
        start.wait()
        answers.append(breaker.allow())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(answers) == [False] * 7 + [True] and breaker.state == "half-open"


def test_a_successful_probe_closes_the_breaker():
    breaker = opened()
    cool_down_over(breaker)
    assert breaker.allow()

    breaker.record_success()

    assert breaker.state == "closed" and breaker.consecutive_failures == 0 and breaker.allow()


def test_a_failed_probe_opens_the_breaker_for_another_cool_down():
    breaker = opened()
    cool_down_over(breaker)
    assert breaker.allow()

    breaker.record_failure()

    assert breaker.state == "open" and not breaker.allow()
    cool_down_over(breaker)
    assert breaker.allow()


def test_a_call_in_flight_does_not_block_another_thread_from_asking():
    # pybreaker's own call() would hold the breaker's lock for the whole provider call.
    breaker = ProviderBreaker("anthropic", failures=2, cooldown=30.0)
    assert breaker.allow()  # a call goes out and has not answered yet
    asked: list[bool] = []
    other = threading.Thread(target=lambda: asked.append(breaker.allow()))

    other.start()
    other.join(timeout=2)

    assert asked == [True]


def test_the_registry_keeps_one_breaker_per_provider_following_the_settings_and_can_be_reset():
    first = breaker_for("anthropic", failures=5, cooldown=30.0)
    first.record_failure()

    again = breaker_for("anthropic", failures=2, cooldown=10.0)

    assert again is first and (again.breaker.fail_max, again.breaker.reset_timeout) == (2, 10.0)
    assert again.consecutive_failures == 1
    breakers_reset()
    assert breaker_for("anthropic", failures=2, cooldown=10.0).consecutive_failures == 0
