import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from integrations import processes
from integrations.processes import ForkPool


def _pid() -> int:
    return os.getpid()


@pytest.fixture
def parent_ignores_sigterm():
    """A parent that handles SIGTERM itself (an RQ worker's warm shutdown, a test runner): its forked children
    inherit the handler until they reset it."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_a_child_terminated_before_its_first_act_stops_instead_of_living_on(monkeypatch, parent_ignores_sigterm):
    # given: a SIGTERM that reaches the child between its fork and its first act (as the executor's terminate
    # does when a sibling dies at once), sent by the child to itself at that moment
    reset = processes.child_signals_default

    def terminated_first() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        reset()

    monkeypatch.setattr(processes, "child_signals_default", terminated_first)

    # when
    with ForkPool(1) as pool:
        future = pool.submit(_pid)

        # then: the child obeyed it (before the fix it ran the parent's handler, ignored it, and worked on)
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=60)


def test_children_run_the_initializer_after_their_signals_are_the_default_ones(parent_ignores_sigterm):
    # given / when
    with ForkPool(2, initializer=_record_handler, initargs=("seen",)) as pool:
        handlers = {pool.submit(_handler_seen).result(timeout=60) for _ in range(4)}

    # then: SIGTERM's default action and an unblocked mask in every child, the initializer run with its
    # arguments; and the parent's mask is as it was
    assert handlers == {("seen", signal.SIG_DFL, False)}
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


_initialized: list[str] = []


def _record_handler(tag: str) -> None:
    _initialized.append(tag)


def _handler_seen() -> tuple[str, object, bool]:
    blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    return _initialized[-1], signal.getsignal(signal.SIGTERM), blocked
