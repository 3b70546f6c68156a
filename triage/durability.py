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

import dataclasses
import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import orjson
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db import utils as db_utils
from django.db.models import Field, Model, QuerySet, signals
from django.db.models.base import ModelState
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


class RunLock:
    """The run's advisory lock, taken inside a caller's round trip rather than in one of its own.

    `take` is a statement for `statements_unflushed` that tries the lock and notes the answer in a
    transaction-local setting, so the statements after it in the same message can act only when this
    session holds it (`HELD`); `held` is read from its result. `release` is a statement to send after the
    commit of the run's last write (`statements_unflushed(after_commit=...)`), saving the unlock its own
    round trip; `released()` says it went out, so `run_lock_handle` does not unlock a second time.
    """

    #: SQL true in a statement sent after `take` in the same transaction, when this session holds the lock.
    HELD = "current_setting('triage.run_lock', true) = 'true'"

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.held = False
        self._released = False

    def take(self) -> tuple[str, list[Any]]:
        return (
            "SELECT set_config('triage.run_lock', pg_try_advisory_lock(%s, %s)::text, true)",
            [RUN_LOCK_NAMESPACE, self.run_id],
        )

    def taken(self, answer: list[tuple[Any, ...]]) -> bool:
        """Note the answer of `take` (its rows); whether the lock is held."""
        self.held = answer[0][0] == "true"
        return self.held

    def release(self) -> tuple[str, list[Any]]:
        return "SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, self.run_id]

    def released(self) -> None:
        self._released = True

    @property
    def owed(self) -> bool:
        """Held and not yet released."""
        return self.held and not self._released


@contextmanager
def run_lock_handle(run_id: int) -> Iterator[RunLock]:
    """A `RunLock` not taken yet, released on the way out if it was taken and not released with a write."""
    lock = RunLock(run_id)
    try:
        yield lock
    finally:
        if lock.owed:
            _unlock(lock)


def _unlock(lock: RunLock) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(*lock.release())
        lock.released()
    except Exception as exc:
        if not connection_lost(exc):
            raise
        # The lock went with the lost session; nothing is left to release.
        connection_discard()


@contextmanager
def run_lock(run_id: int) -> Iterator[bool]:
    """A session-level advisory lock on the run: yields whether this connection holds it.

    Session locks nest within one connection (a holder that takes it again gets it again), so a service
    that needs the lock may take it whether or not its caller already holds it.
    """
    with run_lock_handle(run_id) as lock:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, run_id])
            lock.held = bool(cursor.fetchone()[0])
        yield lock.held


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


def statements_unflushed(
    statements: Sequence[tuple[str, Sequence[Any]]], *, after_commit: Sequence[tuple[str, Sequence[Any]]] = ()
) -> list[int]:
    """Run `statements` in one round trip and one transaction, committed unflushed; each one's row count.

    Each round trip costs a context switch to the server and back, which on a busy machine is most of what
    a small write costs; Django sends one statement per round trip, so this sends them together: with
    client-side binding (Django's default for psycopg) a query string of several statements goes out in
    one message and runs as one implicit transaction when the connection is in autocommit. Only for writes
    `transaction_unflushed` allows. Inside a caller's transaction they run in it, and its commit decides;
    with server-side binding (which cannot carry several statements) they go one by one in
    `transaction_unflushed`.

    `after_commit` (a run lock's release) goes in the same message after the commit; inside a caller's
    transaction there is no commit of ours to follow, so it is left unsent and the caller's `RunLock`
    still owes it (see `run_lock_handle`). Its results are not returned.
    """
    return [count for count, _ in _unflushed(statements, after_commit=after_commit)]


def rows_unflushed(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
    """As `statements_unflushed`, giving each statement's rows (for reads that go with the writes)."""
    return [rows for _, rows in _unflushed(statements)]


def returning_unflushed(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """One statement with RETURNING, sent as `statements_unflushed` sends its statements; the rows returned."""
    return _unflushed([(sql, params)])[0][1]


def _unflushed(
    statements: Sequence[tuple[str, Sequence[Any]]], *, after_commit: Sequence[tuple[str, Sequence[Any]]] = ()
) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """Each statement's row count and the rows it returned (see `statements_unflushed`)."""
    results: list[tuple[int, list[tuple[Any, ...]]]] = []
    if not statements:
        return results
    outermost = not connection.in_atomic_block
    if connection.settings_dict["OPTIONS"].get("server_side_binding"):
        with transaction_unflushed(), connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append((cursor.rowcount, cursor.fetchall() if cursor.description else []))
        if outermost:
            with connection.cursor() as cursor:
                for sql, params in after_commit:
                    cursor.execute(sql, params)
        return results
    statements = statements_prepared(statements)
    # (sql, whether its result is one of `statements`')
    parts: list[tuple[str, bool]] = [(sql, True) for sql, _ in statements]
    params = [p for _, statement_params in statements for p in statement_params]
    if outermost:
        if after_commit:
            # An explicit transaction, so that what follows its COMMIT runs after it, in the same message.
            parts = [("BEGIN", False), ("SET LOCAL synchronous_commit = off", False), *parts, ("COMMIT", False)]
            parts += [(sql, False) for sql, _ in after_commit]
            params += [p for _, after_params in after_commit for p in after_params]
        else:
            parts.insert(0, ("SET LOCAL synchronous_commit = off", False))
    with connection.cursor() as cursor:
        cursor.execute("; ".join(sql for sql, _ in parts), params)
        raw = cursor.cursor  # psycopg's cursor: one result per statement, walked with nextset()
        for index, (_, kept) in enumerate(parts):
            if index:
                raw.nextset()
            if kept:
                results.append((raw.rowcount, raw.fetchall() if _has_rows(raw) else []))
    return results


def _has_rows(cursor: psycopg.Cursor[Any]) -> bool:
    """Whether the cursor's current result returned rows (a SELECT, a RETURNING): what `cursor.description`
    tells, without building its `Column` objects (one per column, a read of a run and its ticket has ~35)."""
    result = cursor.pgresult
    return result is not None and (result.nfields > 0 or result.status == psycopg.pq.ExecStatus.TUPLES_OK)


def insert_statement(model: type[Model], instances: Sequence[Model], *, suffix: str = "") -> tuple[str, list[Any]]:
    """One INSERT of `instances` (every concrete field but the auto id), for `statements_unflushed`; `suffix`
    is appended (an ON CONFLICT clause).

    The rows go as one JSON parameter, read back into typed columns by `json_to_recordset`, in order. Django's
    own multi-row insert binds one array a column, and preparing and quoting those arrays element by element
    on the client cost more than the rest of a checkpoint's write (about 1 ms for a run's rows); one dump of
    the rows (`rows_json`) costs ~15 µs. Values are prepared as the ORM's insert prepares them
    where it matters: `pre_save` (an `auto_now_add` stamp), JSON fields as JSON, NULL as NULL; dates and
    decimals as their text, which PostgreSQL reads back exactly. As `json`, not `jsonb`: the server then reads
    the text once, for the columns, instead of first building a `jsonb` of the whole document (a run's seven
    checkpoints are ~7 KB; the insert took ~0.52 ms of server time that way and ~0.39 this way).
    """
    fields, stamped, sql = _insert_template(model, suffix)
    rows = []
    for instance in instances:
        for field in stamped:
            field.pre_save(instance, True)
        values = instance.__dict__
        rows.append({column: values[attname] for column, attname in fields})
    return sql, [rows_json(rows)]


def rows_json(rows: Any) -> str:
    """`rows` as JSON text for the server to read back (`insert_statement`): by orjson, ~8x faster than the
    standard library here (a run's seven checkpoints: ~15 against ~120 µs, most of it the stamps through
    `json.dumps`'s `default` hook), its output the same values; the standard library for what orjson refuses
    (an integer beyond 64 bits, a string with a lone surrogate), so that such a value meets the error it
    always met, from the server."""
    try:
        return orjson.dumps(rows, default=_json_scalar, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_json_scalar)


def unsaved[M: Model](model: type[M], /, **values: Any) -> M:
    """`model(**values)`: a new, unsaved instance with `values` and every other field at its default, for the rows
    `insert_statement` writes (a run's checkpoints, its record-only actions). `values` are fields by name, a
    related instance under its field's name (`run=run`, cached as the descriptor caches it) or an id under
    its attribute name (`run_id=7`).

    Not `Model.__init__`, which sets each field through its descriptor and sends `pre_init`/`post_init`: about
    16 microseconds for a checkpoint's nineteen fields, with seven checkpoints and an action a run. This copies
    the defaults (`Field.get_default`, callables called each time, as `__init__` calls them) in about 2. Only
    for models nothing listens to `pre_init`/`post_init` for (checked when a model is first built this way).
    """
    constant, called, related, known = _defaults(model)
    instance = model.__new__(model)
    state = instance._state = ModelState()
    fields = instance.__dict__
    fields.update(constant)
    for attname, default in called:
        fields[attname] = default()
    for name, value in values.items():
        link = related.get(name)
        if link is None:
            if name not in known:
                raise TypeError(f"{model.__name__} has no field {name!r}")
            fields[name] = value
        else:
            fields[link[0]] = None if value is None else getattr(value, link[1])
            state.fields_cache[name] = value
    return instance


@functools.cache
def _defaults(
    model: type[Model],
) -> tuple[dict[str, Any], list[tuple[str, Any]], dict[str, tuple[str, str]], frozenset[str]]:
    """`unsaved`'s view of `model`: the constant defaults, the callable ones, for each related field its
    attribute and the attribute of the related instance it holds (its primary key, unless `to_field` says),
    and every attribute name a value may be given under."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        raise TypeError(f"{model.__name__} has pre_init/post_init receivers: build it with its constructor")
    constant: dict[str, Any] = {}
    called: list[tuple[str, Any]] = []
    related: dict[str, tuple[str, str]] = {}
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            called.append((field.attname, field.default))
        else:
            constant[field.attname] = field.get_default()
        if field.is_relation:
            related[field.name] = (field.attname, cast(Any, field).target_field.attname)
    return constant, called, related, frozenset(constant) | {attname for attname, _ in called}


def _json_scalar(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value insert_statement knows")


@functools.cache
def _insert_template(model: type[Model], suffix: str) -> tuple[list[tuple[str, str]], list[Field[Any, Any]], str]:
    """The INSERT's text, each field's (column, attribute), and the fields whose `pre_save` sets the value
    (`auto_now`, `auto_now_add`): only those are asked, the rest are read as the instance holds them."""
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    stamped = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
    columns = ", ".join(f'"{f.column}"' for f in fields)
    typed = ", ".join(f'"{f.column}" {f.db_type(connection)}' for f in fields)
    sql = f'INSERT INTO "{meta.db_table}" ({columns}) SELECT {columns} FROM json_to_recordset(%s::json) AS r({typed})'
    return [(str(f.column), f.attname) for f in fields], stamped, f"{sql} {suffix}".rstrip()


def update_statement(queryset: QuerySet[Any], **values: Any) -> tuple[str, Sequence[Any]]:
    """`queryset.update(**values)` as SQL and parameters, compiled by the ORM, for `statements_unflushed`."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    query.annotations = {}
    sql, params = query.get_compiler(queryset.db).as_sql()
    return sql, params


# --- Prepared statements --------------------------------------------------------------------------------
#
# Why not psycopg's own: it prepares only statements sent one by one over the extended protocol (server-side
# binding), and the runner's writes go as one multi-statement message in the simple protocol, so that a run
# costs three round trips. Planning its take and close each time cost about a third of a millisecond apiece
# (of a 4.5 ms run), so their statements are prepared by name, once per session, and EXECUTEd in that message.

#: A statement is prepared on its second use in a session (a one-off is not worth the extra round trip).
PREPARE_AFTER = 2
#: Statements prepared at most per session; beyond it, the rest are sent as they are.
PREPARED_MAX = 100
_PLACEHOLDER = re.compile(r"%[s%]")


@dataclass
class _Session:
    """The statements prepared in one database session (one psycopg connection), and how often each SQL
    text was seen: prepared statements live as long as the session, so a new connection starts afresh."""

    raw: Any
    seen: dict[str, int] = dataclasses.field(default_factory=dict)
    names: dict[str, str | None] = dataclasses.field(default_factory=dict)  # None: could not be prepared
    executes: dict[str, str] = dataclasses.field(default_factory=dict)  # the EXECUTE text of each prepared one


def statement_prepared(sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    """`sql` as `EXECUTE name(%s, ...)` of a statement prepared in this session, or as it is.

    For statements sent as text in a multi-statement message (`statements_unflushed`) or by a cursor with
    client-side binding: the parameters are still bound by the client, as EXECUTE's arguments, and the
    server coerces them to the types it inferred when it prepared the statement, so it parses and plans the
    statement once per session instead of every time. A statement whose parameter types the server cannot
    infer is not prepared, and goes as it is. Prepared on its `PREPARE_AFTER`th use, outside a transaction
    (a PREPARE inside a caller's transaction would be lost with it were it rolled back). Off with
    `TRIAGE_PREPARED_STATEMENTS = False`: a pooler in transaction mode (PgBouncer before 1.21) hands each
    transaction a different session, where a statement prepared in another does not exist.
    """
    return statements_prepared([(sql, params)])[0]


def statements_prepared(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[str, Sequence[Any]]]:
    """`statement_prepared` of each of `statements`, the session looked up once for all of them."""
    if not settings.TRIAGE_PREPARED_STATEMENTS:
        return list(statements)
    connection.ensure_connection()  # as the statements' cursor would: the session they are prepared in
    session = _session()
    return [_prepared_in(session, sql, params) for sql, params in statements]


def _prepared_in(session: _Session, sql: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    execute = session.executes.get(sql)
    if execute is not None:
        return execute, params
    name = session.names.get(sql, "")
    if name == "":
        if len(session.seen) >= PREPARED_MAX * 10:  # texts built with values in them are never seen twice
            session.seen.clear()
        seen = session.seen[sql] = session.seen.get(sql, 0) + 1
        if seen < PREPARE_AFTER or connection.in_atomic_block or len(session.names) >= PREPARED_MAX:
            return sql, params
        name = session.names[sql] = _prepare(sql)
    if name is None:
        return sql, params
    # The same text has the same number of parameters every time: its EXECUTE is built once.
    execute = session.executes[sql] = (
        f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    )
    return execute, params


def _session() -> _Session:
    raw = connection.connection
    session: _Session | None = getattr(connection, "_triage_prepared", None)
    if session is None or session.raw is not raw:
        session = _Session(raw=raw)
        connection._triage_prepared = session  # type: ignore[attr-defined]  # kept with the connection it is about
    return session


def _prepare(sql: str) -> str | None:
    """PREPARE `sql` (its `%s` numbered `$1`, `$2`, ...) under a name from its text; None when it cannot be."""
    count = 0

    def numbered(match: re.Match[str]) -> str:
        nonlocal count
        if match.group() == "%%":
            return "%"
        count += 1
        return f"${count}"

    name = "triage_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:20]
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"PREPARE {name} AS {_PLACEHOLDER.sub(numbered, sql)}")  # no parameters: no % escaping
    except db_utils.DatabaseError as exc:
        if connection_lost(exc):
            raise
        logger.debug("not prepared (%s): %s", exc, sql)
        return None
    return name
