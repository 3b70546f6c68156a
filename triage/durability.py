"""What the database being the source of truth asks of every worker: one holder per run, and no verdict
reached while the database is unreachable.

- `run_lock`: the session-level advisory lock that makes one worker the holder of a run. Whoever works a
  run (`run_pipeline`) or carries out one of its actions (`writebacks_retry`) holds it, so a holder that
  finds an action claimed and never recorded knows its claimant is gone: PostgreSQL drops a session's
  advisory locks with the session, when its process dies or its connection is lost.
- `transaction_unflushed`: a transaction whose commit does not wait for the disk flush, for writes whose
  loss in a database crash costs nothing but redoing free work (see its docstring for when that holds).
- `connection_lost`: whether an error means the database connection went away (the server restarting, a
  network cut, a terminated backend). Such an error says nothing about the run: it is left as it is, its
  lease expires, and the sweeper hands it to a worker once the database is back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from django.db import connection, transaction
from django.db import utils as db_utils
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery

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


@contextmanager
def transaction_unflushed() -> Iterator[None]:
    """A transaction committed with `synchronous_commit = off`: visible at once, durable a moment later.

    Such a commit returns without waiting for the WAL to reach the disk (a flush costs 3-10 ms here; the
    commit itself about 0.1 ms). Other sessions see it as soon as it returns, so a *worker* crash after it
    loses nothing. A *database* crash within the WAL writer's delay (`wal_writer_delay`, 200 ms by default;
    at most three of them) may lose it, and only it and later commits: WAL order keeps everything before a
    flushed commit durable with it, so the database comes back as it was at some earlier moment, never with
    a later write kept and an earlier one lost. Use it only for writes whose loss means redoing work that
    paid nothing and sent nothing out (a local model's checkpoint, a run's claim or close, record-only
    actions); anything paid for or sent out goes through an ordinary, flushed, commit.

    Inside a caller's transaction it adds nothing (a `SET LOCAL` would change the caller's commit too):
    that transaction's own commit decides.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        yield


def statements_unflushed(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
    """Run `statements` in one round trip and one transaction, committed unflushed; each one's row count.

    Each round trip costs a context switch to the server and back, which on a busy machine is most of what
    a small write costs; Django sends one statement per round trip, so this sends them together: with
    client-side binding (Django's default for psycopg) a query string of several statements goes out in
    one message and runs as one implicit transaction when the connection is in autocommit. Only for writes
    `transaction_unflushed` allows. Inside a caller's transaction they run in it, and its commit decides;
    with server-side binding (which cannot carry several statements) they go one by one in
    `transaction_unflushed`.
    """
    return [count for count, _ in _unflushed(statements)]


def returning_unflushed(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """One statement with RETURNING, sent as `statements_unflushed` sends its statements; the rows returned."""
    return _unflushed([(sql, params)])[0][1]


def _unflushed(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """Each statement's row count and the rows it returned (see `statements_unflushed`)."""
    results: list[tuple[int, list[tuple[Any, ...]]]] = []
    if not statements:
        return results
    if connection.settings_dict["OPTIONS"].get("server_side_binding"):
        with transaction_unflushed(), connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append((cursor.rowcount, cursor.fetchall() if cursor.description else []))
        return results
    parts = [sql for sql, _ in statements]
    params = [p for _, statement_params in statements for p in statement_params]
    outermost = not connection.in_atomic_block
    if outermost:
        parts.insert(0, "SET LOCAL synchronous_commit = off")
    with connection.cursor() as cursor:
        cursor.execute("; ".join(parts), params)
        raw = cursor.cursor  # psycopg's cursor: one result per statement, walked with nextset()
        if outermost:
            raw.nextset()  # past the SET
        while True:
            results.append((raw.rowcount, raw.fetchall() if raw.description else []))
            if not raw.nextset():
                break
    return results


def update_statement(queryset: QuerySet[Any], **values: Any) -> tuple[str, Sequence[Any]]:
    """`queryset.update(**values)` as SQL and parameters, compiled by the ORM, for `statements_unflushed`."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    query.annotations = {}
    sql, params = query.get_compiler(queryset.db).as_sql()
    return sql, params
