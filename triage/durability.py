"""What the database being the source of truth asks of every worker: one holder per run, and no verdict
reached while the database is unreachable.

- `run_lock`: the session-level advisory lock that makes one worker the holder of a run. Whoever works a
  run (`run_pipeline`) or carries out one of its actions (`writebacks_retry`) holds it, so a holder that
  finds an action claimed and never recorded knows its claimant is gone: PostgreSQL drops a session's
  advisory locks with the session, when its process dies or its connection is lost.
- `connection_lost`: whether an error means the database connection went away (the server restarting, a
  network cut, a terminated backend). Such an error says nothing about the run: it is left as it is, its
  lease expires, and the sweeper hands it to a worker once the database is back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection
from django.db import utils as db_utils

logger = logging.getLogger(__name__)

RUN_LOCK_NAMESPACE = 7_301

# Django wraps the driver's errors in its own classes (with the original as __cause__); code that talks to
# psycopg directly sees psycopg's. A statement cancelled or a deadlock is also an OperationalError: taking it
# for a lost connection is safe, the run is only left for the sweeper, and the poison limit bounds retries.
_LOST = (db_utils.OperationalError, db_utils.InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def connection_lost(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) is the database connection failing, not a verdict."""
    seen: BaseException | None = exc
    for _ in range(5):  # the cause chain, bounded
        if seen is None:
            return False
        if isinstance(seen, _LOST):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def connection_discard() -> None:
    """Close this thread's connection after a loss, so the next query opens a fresh one."""
    try:
        connection.close()
    except Exception:
        logger.debug("closing a lost database connection failed", exc_info=True)


@contextmanager
def run_lock(run_id: int) -> Iterator[bool]:
    """A session-level advisory lock on the run: yields whether this connection holds it.

    Session locks nest within one connection (a holder that takes it again gets it again), so a service
    that needs the lock may take it whether or not its caller already holds it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, run_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, run_id])
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                # The lock went with the lost session; nothing is left to release.
                connection_discard()
