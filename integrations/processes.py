"""What every forked worker process of ours does first (the initializer of its `ProcessPoolExecutor`)."""

from __future__ import annotations

import signal


def child_signals_default() -> None:
    """Give SIGTERM and SIGINT back their default actions in a forked child.

    Why: a child inherits its parent's Python signal handlers, and a parent that handles SIGTERM (an RQ
    worker's warm shutdown, a test runner) makes the child ignore `Process.terminate()`: it runs the handler
    and goes back to waiting for work. When one worker dies, `ProcessPoolExecutor` terminates the others and
    joins them, so such a child would hang its caller for ever (seen in the test suite).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
