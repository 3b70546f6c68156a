"""Our pools of forked worker processes: children that obey `terminate()` from the moment they exist."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

#: The signals a child must obey as soon as it is forked.
_STOPPING = frozenset({signal.SIGTERM, signal.SIGINT})


def child_signals_default() -> None:
    """Give SIGTERM and SIGINT back their default actions in a forked child, then let them in.

    Why: a child inherits its parent's Python signal handlers, and a parent that handles SIGTERM (an RQ
    worker's warm shutdown, a test runner) makes the child ignore `Process.terminate()`: it runs the handler
    and goes back to waiting for work. When one worker dies, `ProcessPoolExecutor` terminates the others and
    joins them, so such a child would hang its caller for ever (seen in the test suite). The signals were
    blocked when the child was forked (`ForkPool`); one sent before this point is pending, and now acts.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)


@contextmanager
def _stopping_signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT blocked in this thread meanwhile (a forked child starts with this thread's mask)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _child_start(initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    child_signals_default()
    if initializer is not None:
        initializer(*initargs)


class ForkPool(ProcessPoolExecutor):
    """A `ProcessPoolExecutor` of forked children (they get the parent's memory as it is: loaded models,
    arrays) whose first act is `child_signals_default`, before `initializer`.

    Why the signals are held while it forks: a child forked with the parent's handlers ignores a SIGTERM
    that arrives before its initializer has run, and when a sibling dies at once the executor terminates
    the pool at about that moment, then waits for every child for ever (a test in `test_evaluate.py` hung
    that way on a loaded machine). Children are forked inside `submit` (with the fork context the executor
    starts all of them at the first one), so `submit` blocks SIGTERM and SIGINT in the forking thread
    meanwhile: a child is born with them blocked, and its first act makes them default and lets them in.
    """

    def __init__(
        self,
        max_workers: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_child_start,
            initargs=(initializer, initargs),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with _stopping_signals_held():
            return super().submit(fn, *args, **kwargs)
